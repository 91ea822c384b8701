//! flushd as the `flush` service of a real Postfix 3.7 (issue 3): master(8)
//! starts it from master.cf with its socket on descriptor 6 and its status
//! pipe on 5, and Postfix's own programs (smtpd's ETRN, postqueue, the
//! delivery agents' `add`, master's wakeups) talk to it unchanged.
//!
//! The shape of each check follows `postfix_reference.rs`, which runs the
//! same story against Postfix's own flush(8). A failing test prints the
//! lab's maillog and flushd's stderr (the lab does it when dropped during a
//! panic).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use integration::daemon::{
    flushd_binary, postfix_request, postfix_wakeup, short_queue_id, LineClient,
};
use integration::postfix_lab::{
    etrn_and_wait_for_retry, postfix_ids, require_postfix, wait_until, LabOptions, PostfixLab,
    LAB_DOMAIN,
};

/// `relay.test` as a logfile name.
const SITE_PATH: &str = "relay_test";
/// A relay domain that is not eligible for fast flush.
const SLOW_DOMAIN: &str = "slow.test";
const WAIT: Duration = Duration::from_secs(15);

/// The lab's processes that run the flushd binary.
fn flushd_pids(lab: &PostfixLab) -> Vec<i32> {
    let binary = fs::canonicalize(flushd_binary()).unwrap();
    lab.processes()
        .into_iter()
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&binary))
        .collect()
}

/// The real user ID of a process.
fn process_uid(pid: i32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The only flushd of the lab (waits for it to appear). Panics if there is
/// more than one.
fn the_flushd(lab: &PostfixLab) -> i32 {
    assert!(
        wait_until(WAIT, || !flushd_pids(lab).is_empty()),
        "no flushd process; flushd log:\n{}",
        lab.flush_messages()
    );
    let pids = flushd_pids(lab);
    assert_eq!(pids.len(), 1, "more than one flushd: {pids:?}");
    pids[0]
}

/// Master's warnings about a flush service process that exited badly.
fn bad_exits(lab: &PostfixLab) -> Vec<String> {
    lab.maillog()
        .lines()
        .filter(|l| {
            l.contains("flushd")
                && (l.contains("exit status")
                    || l.contains("killed by signal")
                    || l.contains("throttling"))
        })
        .map(str::to_string)
        .collect()
}

/// Waits until `id` is in deferred/ and in the relay.test logfile.
fn wait_deferred_and_logged(lab: &PostfixLab, id: &str) {
    assert!(
        wait_until(WAIT, || lab.deferred_ids().contains(&id.to_string())
            && lab.flush_log(SITE_PATH).contains(&id.to_string())),
        "{id} not deferred and logged: deferred {:?}, log {:?}",
        lab.deferred_ids(),
        lab.flush_log(SITE_PATH)
    );
}

#[test]
fn postfix_programs_use_flushd_as_their_flush_service() {
    if !require_postfix() {
        return;
    }
    let opts = LabOptions {
        domains: vec![LAB_DOMAIN.to_string(), SLOW_DOMAIN.to_string()],
        flush_command: Some(flushd_binary()),
        main_cf: vec![("fast_flush_domains".to_string(), LAB_DOMAIN.to_string())],
        // As master.cf tags a service's log (the parameter flushd defines).
        flush_args: vec![
            "-o".to_string(),
            "syslog_name=postfix/$service_name".to_string(),
        ],
        ..LabOptions::default()
    };
    let mut lab = PostfixLab::new(opts).expect("create lab");
    // The stock line, but for the command: unpriv `-` (flushd drops to
    // mail_owner itself), chroot n, process limit 0.
    let master_cf = fs::read_to_string(lab.config_dir().join("master.cf")).unwrap();
    assert!(
        master_cf
            .contains("\nflush unix n - n 1000? 0 flushd -o syslog_name=postfix/$service_name\n"),
        "{master_cf}"
    );
    lab.start().expect("start lab");

    // SMTP mail to an eligible domain is deferred, and the delivery agent's
    // own `add` (through flushd) puts its queue ID into the logfile.
    let id = lab
        .send_mail("sender@lab.test", &format!("user@{LAB_DOMAIN}"))
        .expect("send mail");
    wait_deferred_and_logged(&lab, &id);
    assert_eq!(lab.deferrals(&id), 1, "maillog:\n{}", lab.maillog());
    assert_eq!(lab.activations(&id), 1, "maillog:\n{}", lab.maillog());

    // master started flushd as mail_owner (the -u it passes for unpriv `-`),
    // so the logfile belongs to postfix, mode 0600, as flush(8) makes it.
    let pid = the_flushd(&lab);
    let (postfix_uid, _) = postfix_ids().expect("postfix account");
    assert_eq!(process_uid(pid), postfix_uid);
    let meta = fs::metadata(lab.queue_dir().join("flush").join(SITE_PATH)).unwrap();
    assert_eq!(meta.uid(), postfix_uid);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // flushd logs where Postfix's daemons do: through postlogd to the
    // maillog, tagged like one of them (syslog_name, then the program).
    let maillog = lab.maillog();
    let started = format!("lab postfix/flush/flushd[{pid}]: started by master(8): service flush");
    assert!(maillog.contains(&started), "{started:?} not in:\n{maillog}");
    assert!(!Path::new(&lab.queue_dir().join("public/flush.line")).exists());

    // ETRN: flushd moves the file to incoming/, the queue manager tries it
    // again, it is deferred and logged again.
    etrn_and_wait_for_retry(&lab, LAB_DOMAIN, &id, WAIT);
    wait_deferred_and_logged(&lab, &id);

    // ETRN for an ineligible destination: 459 from flushd's DENY.
    let replies = lab
        .smtp_session(&["EHLO lab.test", &format!("ETRN {SLOW_DOMAIN}"), "QUIT"])
        .expect("ETRN session");
    assert!(
        replies[2].starts_with(&format!("459 <{SLOW_DOMAIN}>: service unavailable")),
        "{replies:?}"
    );

    // postqueue -s: the eligible site is flushed (a third attempt); another
    // is refused by postqueue itself.
    let out = lab.postqueue(&["-s", LAB_DOMAIN]).expect("postqueue");
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(WAIT, || lab.activations(&id) == 3
            && lab.deferrals(&id) == 3),
        "no new delivery attempt after postqueue -s; maillog:\n{}",
        lab.maillog()
    );
    let out = lab.postqueue(&["-s", "other.invalid"]).expect("postqueue");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Flush service is not configured for destination"),
        "{out:?}"
    );

    // postqueue -i requeues exactly that message (send_file): mail for the
    // ineligible domain has no logfile, only this way out.
    let slow = lab
        .send_mail("sender@lab.test", &format!("user@{SLOW_DOMAIN}"))
        .expect("send slow mail");
    assert!(
        wait_until(WAIT, || lab.deferrals(&slow) == 1
            && lab.deferred_ids().contains(&slow)),
        "slow mail not deferred; maillog:\n{}",
        lab.maillog()
    );
    assert!(lab.flush_log("slow_test").is_empty());
    wait_deferred_and_logged(&lab, &id);
    let relay_attempts = lab.activations(&id);
    let out = lab.postqueue(&["-i", &slow]).expect("postqueue -i");
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(WAIT, || lab.deferrals(&slow) == 2),
        "postqueue -i did not requeue {slow}; maillog:\n{}",
        lab.maillog()
    );
    assert_eq!(
        lab.activations(&id),
        relay_attempts,
        "postqueue -i moved other mail"
    );

    // All of it was one flushd, and nothing made master complain.
    assert_eq!(the_flushd(&lab), pid);
    assert!(bad_exits(&lab).is_empty(), "{:?}", bad_exits(&lab));

    // postfix stop: master's SIGTERM ends flushd with the rest.
    lab.stop().expect("stop lab");
    assert!(lab.processes().is_empty());
    assert!(
        lab.flush_messages().contains("all logs closed"),
        "{}",
        lab.flush_messages()
    );
}

#[test]
fn wakeups_concurrency_reload_and_idle_exit_under_master() {
    if !require_postfix() {
        return;
    }
    // flushd's own line socket, named in master.cf with a long option, for
    // `stats`; in a directory the postfix user may create it in.
    let extra = tempfile::tempdir().unwrap();
    fs::set_permissions(extra.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let line_socket: PathBuf = extra.path().join("flushd.line");
    // Wakeups every 2 s and a 1 s refresh time make the janitor's work
    // observable; max_idle is given the way master passes it (-o).
    let opts = LabOptions {
        flush_command: Some(flushd_binary()),
        flush_args: vec![
            format!("--listen=unix:{}", line_socket.display()),
            "-o".to_string(),
            "max_idle=3s".to_string(),
        ],
        flush_wakeup: Some("2".to_string()),
        main_cf: vec![("fast_flush_refresh_time".to_string(), "1s".to_string())],
        ..LabOptions::default()
    };
    let mut lab = PostfixLab::new(opts).expect("create lab");
    lab.start().expect("start lab");
    let socket = lab.queue_dir().join("public/flush");

    // The wakeup refresh: a logged ID whose file is not in the queue is read
    // and dropped once the log is older than the refresh time.
    let gone = short_queue_id(99);
    let add = [
        ("request", "add"),
        ("site", LAB_DOMAIN),
        ("queue_id", gone.as_str()),
    ];
    assert_eq!(postfix_request(&socket, &add).expect("add").status, 0);
    assert_eq!(lab.flush_log(SITE_PATH), vec![gone.clone()]);
    let first = the_flushd(&lab);
    assert!(
        wait_until(WAIT, || lab.flush_log(SITE_PATH).is_empty()),
        "no refresh by master's wakeup; log {:?}",
        lab.flush_log(SITE_PATH)
    );
    let stats = LineClient::connect(&line_socket)
        .expect("line socket")
        .stats();
    assert!(
        stats["janitor"]["wakeups"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["janitor"]["logs_refreshed"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    // No connection waits for a process: 50 clients at once are all
    // answered promptly, by the same single flushd.
    let started = Instant::now();
    let clients: Vec<_> = (0..50)
        .map(|n| {
            let socket = socket.clone();
            thread::spawn(move || {
                let id = short_queue_id(1000 + n);
                let add = [
                    ("request", "add"),
                    ("site", LAB_DOMAIN),
                    ("queue_id", id.as_str()),
                ];
                let t = Instant::now();
                let status = postfix_request(&socket, &add).map(|e| e.status);
                (status, t.elapsed())
            })
        })
        .collect();
    for client in clients {
        let (status, took) = client.join().unwrap();
        assert_eq!(status.unwrap(), 0);
        assert!(took < Duration::from_secs(2), "a client waited {took:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let postqueues: Vec<_> = (0..10)
        .map(|_| {
            let config = lab.config_dir().to_path_buf();
            thread::spawn(move || {
                std::process::Command::new(integration::postfix_lab::POSTQUEUE)
                    .arg("-c")
                    .arg(config)
                    .args(["-s", LAB_DOMAIN])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for pq in postqueues {
        let out = pq.join().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(the_flushd(&lab), first, "master started another flushd");

    // postfix reload closes the status pipe: flushd leaves (status 0, so
    // master does not complain), and the next request starts a new one.
    // The reload also turns the wakeups off, so that max_idle can pass.
    let master_cf = fs::read_to_string(lab.config_dir().join("master.cf")).unwrap();
    let no_wakeup = master_cf.replace(
        "\nflush unix n - n 2 0 flushd",
        "\nflush unix n - n 0 0 flushd",
    );
    assert_ne!(master_cf, no_wakeup);
    fs::write(lab.config_dir().join("master.cf"), no_wakeup).unwrap();
    let out = lab.postfix(&["reload"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(WAIT, || flushd_pids(&lab).is_empty()),
        "flushd still runs after postfix reload: {:?}",
        flushd_pids(&lab)
    );
    assert!(
        lab.flush_messages()
            .contains("leaving master(8)'s service: master(8) closed the status pipe"),
        "{}",
        lab.flush_messages()
    );
    let id = short_queue_id(2000);
    let add = [
        ("request", "add"),
        ("site", LAB_DOMAIN),
        ("queue_id", id.as_str()),
    ];
    assert_eq!(
        postfix_request(&socket, &add)
            .expect("add after reload")
            .status,
        0
    );
    let second = the_flushd(&lab);
    assert_ne!(second, first);
    assert!(lab.flush_log(SITE_PATH).contains(&id));

    // Idle for max_idle (3 s) with no connection: it leaves, and master
    // starts another for the next client.
    let idle_since = Instant::now();
    assert!(
        wait_until(WAIT, || flushd_pids(&lab).is_empty()),
        "flushd did not leave after max_idle"
    );
    assert!(idle_since.elapsed() >= Duration::from_secs(2));
    assert!(
        lab.flush_messages().contains("idle for max_idle (3s)"),
        "{}",
        lab.flush_messages()
    );
    assert_eq!(postfix_wakeup(&socket).expect("wakeup").status, 0);
    let third = the_flushd(&lab);
    assert!(third != first && third != second);
    assert!(bad_exits(&lab).is_empty(), "{:?}", bad_exits(&lab));

    // Shown with --nocapture: three flushd lives as they logged them.
    eprintln!("flushd log:\n{}", lab.flush_messages());
    lab.stop().expect("stop lab");
    assert!(lab.processes().is_empty());
}

#[test]
fn a_flushd_that_cannot_start_says_why_in_the_maillog() {
    if !require_postfix() {
        return;
    }
    let opts = LabOptions {
        flush_command: Some(flushd_binary()),
        flush_args: vec!["--no-such-option".to_string()],
        ..LabOptions::default()
    };
    let mut lab = PostfixLab::new(opts).expect("create lab");
    lab.start().expect("start lab");
    // master starts flushd for this client, and flushd refuses its command
    // line: the client gets no answer, the operator gets the reason where
    // Postfix's daemons put theirs (stderr is /dev/null under master).
    let _client = std::os::unix::net::UnixStream::connect(lab.queue_dir().join("public/flush"))
        .expect("connect to the flush service");
    assert_flushd_error_logged(&lab, "unexpected argument '--no-such-option'");
    lab.stop().expect("stop lab");
}

/// Waits for a maillog record of flushd's, at error level, holding `text`.
fn assert_flushd_error_logged(lab: &PostfixLab, text: &str) {
    let logged = |maillog: &str| {
        maillog.lines().any(|line| {
            line.contains(" postfix/flushd[") && line.contains("]: error: ") && line.contains(text)
        })
    };
    assert!(
        wait_until(WAIT, || logged(&lab.maillog())),
        "no flushd error with {text:?} in the maillog:\n{}",
        lab.maillog()
    );
}

/// Run by master(8) as an `inet` service, flushd refuses (it serves a
/// `unix` service only), and the reason reaches the maillog, not master's
/// /dev/null.
#[test]
fn a_flushd_run_as_an_inet_service_says_why_it_refuses_in_the_maillog() {
    if !require_postfix() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let opts = LabOptions {
        flush_command: Some(flushd_binary()),
        master_cf: vec![format!("127.0.0.1:{port} inet n - n - - flushd")],
        ..LabOptions::default()
    };
    let mut lab = PostfixLab::new(opts).expect("create lab");
    lab.start().expect("start lab");
    let connected = wait_until(WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(connected, "master does not listen on 127.0.0.1:{port}");
    assert_flushd_error_logged(&lab, "serves a `unix` service only");
    lab.stop().expect("stop lab");
}
