//! The reference runs: a private Postfix 3.7 with its own flush(8), driven the
//! way the flushd end-to-end tests drive flushd. They prove the harness (lab,
//! SMTP client, attr0 client, master.cf command replacement) against the real
//! thing, and record what Postfix does; the flushd variants copy their shape.

use std::path::Path;
use std::time::Duration;

use integration::daemon::{
    encode_attrs, postfix_raw, postfix_request, postfix_wakeup, short_queue_id,
};
use integration::postfix_lab::{
    etrn_and_wait_for_retry, require_postfix, wait_until, LabOptions, PostfixLab, LAB_DOMAIN,
};

/// `relay.test` as flush(8) names its logfile.
const SITE_PATH: &str = "relay_test";
const WAIT: Duration = Duration::from_secs(15);
/// Postfix's own flush server, run by full path as a replacement would be.
const POSTFIX_FLUSH: &str = "/usr/lib/postfix/sbin/flush";

#[test]
fn postfix_own_flush_serves_etrn_postqueue_and_raw_requests() {
    if !require_postfix() {
        return;
    }
    let mut lab = PostfixLab::new(LabOptions::default()).expect("create lab");
    lab.start().expect("start lab");

    // Mail for an eligible domain is deferred, and the delivery agent's `add`
    // puts its queue ID into the site's logfile.
    let id = lab
        .send_mail("sender@lab.test", &format!("user@{LAB_DOMAIN}"))
        .expect("send mail");
    assert!(
        wait_until(WAIT, || lab.deferred_ids().contains(&id)
            && lab.flush_log(SITE_PATH).contains(&id)),
        "{id} not deferred and logged: deferred {:?}, log {:?}",
        lab.deferred_ids(),
        lab.flush_log(SITE_PATH)
    );
    assert_eq!(lab.deferrals(&id), 1, "maillog:\n{}", lab.maillog());
    assert_eq!(lab.activations(&id), 1, "maillog:\n{}", lab.maillog());

    // ETRN: flush(8) moves the file from deferred/ to incoming/, the queue
    // manager activates it again, the delivery is deferred again and the ID
    // logged again.
    etrn_and_wait_for_retry(&lab, LAB_DOMAIN, &id, WAIT);
    assert!(
        wait_until(WAIT, || lab.deferred_ids().contains(&id)
            && lab.flush_log(SITE_PATH).contains(&id)),
        "{id} not re-deferred: deferred {:?}, log {:?}",
        lab.deferred_ids(),
        lab.flush_log(SITE_PATH)
    );

    // Ineligible destinations: smtpd answers 459; postqueue refuses by itself
    // with EX_UNAVAILABLE.
    let replies = lab
        .smtp_session(&["EHLO lab.test", "ETRN other.invalid", "QUIT"])
        .expect("ETRN session");
    assert!(
        replies[2].starts_with("459 <other.invalid>: service unavailable"),
        "{replies:?}"
    );
    let out = lab.postqueue(&["-s", "other.invalid"]).expect("postqueue");
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Flush service is not configured for destination"),
        "{out:?}"
    );
    let out = lab.postqueue(&["-s", LAB_DOMAIN]).expect("postqueue");
    assert!(out.status.success(), "{out:?}");

    // Raw Postfix-protocol requests through master's public/flush socket.
    let socket = lab.queue_dir().join("public/flush");
    let raw_id = short_queue_id(7);
    let exchange = postfix_request(
        &socket,
        &[
            ("request", "add"),
            ("site", LAB_DOMAIN),
            ("queue_id", &raw_id),
        ],
    )
    .expect("raw add");
    assert_eq!(exchange.status, 0);
    assert_eq!(exchange.reply, b"status\x000\x00\x00");
    assert!(
        lab.flush_log(SITE_PATH).contains(&raw_id),
        "{:?}",
        lab.flush_log(SITE_PATH)
    );

    // A bad queue ID is BAD (3), an ineligible site DENY (4), a wakeup OK.
    let bad = [
        ("request", "add"),
        ("site", LAB_DOMAIN),
        ("queue_id", "no/such"),
    ];
    assert_eq!(postfix_request(&socket, &bad).expect("bad add").status, 3);
    let deny = [
        ("request", "add"),
        ("site", "other.invalid"),
        ("queue_id", &raw_id),
    ];
    assert_eq!(postfix_request(&socket, &deny).expect("deny add").status, 4);
    assert_eq!(postfix_wakeup(&socket).expect("wakeup").status, 0);
    // An unknown request: flush(8) closes without a reply (flushd answers 3).
    let reply = postfix_raw(&socket, &encode_attrs(&[("request", "bogus")])).expect("bogus");
    assert!(reply.is_empty(), "{reply:?}");

    // Shown with --nocapture: the whole story as Postfix logged it.
    eprintln!("maillog:\n{}", lab.maillog());
    lab.stop().expect("stop lab");
    assert!(lab.processes().is_empty());
}

#[test]
fn replacement_flush_command_runs_with_masters_sockets_and_wakeups() {
    if !require_postfix() || !Path::new(POSTFIX_FLUSH).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{POSTFIX_FLUSH} missing in CI"
        );
        return;
    }
    // Postfix's flush by full path stands in for flushd: it only works if the
    // private daemon_directory and the wrapper pass master's file descriptors,
    // arguments and environment through.
    // Wakeups every 2 s with a 1 s refresh time make a refresh observable.
    let opts = LabOptions {
        flush_command: Some(POSTFIX_FLUSH.into()),
        flush_wakeup: Some("2".to_string()),
        main_cf: vec![("fast_flush_refresh_time".to_string(), "1s".to_string())],
        ..LabOptions::default()
    };
    let mut lab = PostfixLab::new(opts).expect("create lab");
    let master_cf = std::fs::read_to_string(lab.config_dir().join("master.cf")).expect("master.cf");
    assert!(
        master_cf.contains("\nflush unix n - n 2 0 flush\n"),
        "{master_cf}"
    );
    let main_cf = std::fs::read_to_string(lab.config_dir().join("main.cf")).expect("main.cf");
    assert!(main_cf.contains("\ndaemon_directory = "), "{main_cf}");
    lab.start().expect("start lab");

    // A queue ID that is not in the queue: a refresh reads it, finds no
    // file, and leaves the logfile empty.
    let socket = lab.queue_dir().join("public/flush");
    let id = short_queue_id(99);
    let add = [("request", "add"), ("site", LAB_DOMAIN), ("queue_id", &id)];
    assert_eq!(postfix_request(&socket, &add).expect("add").status, 0);
    assert_eq!(lab.flush_log(SITE_PATH), vec![id.clone()]);
    assert!(
        wait_until(WAIT, || lab.flush_log(SITE_PATH).is_empty()),
        "no refresh by master's wakeup; log {:?}; maillog:\n{}",
        lab.flush_log(SITE_PATH),
        lab.maillog()
    );
    // The log file itself stays (it is purged only after fast_flush_purge_time).
    assert!(lab.queue_dir().join("flush").join(SITE_PATH).exists());

    // ETRN reaches the replacement too.
    let replies = lab
        .smtp_session(&["EHLO lab.test", &format!("ETRN {LAB_DOMAIN}"), "QUIT"])
        .expect("ETRN session");
    assert!(replies[2].starts_with("250 Queuing started"), "{replies:?}");

    // Mail submitted with sendmail to the ineligible domain is deferred
    // without a logfile; `postqueue -i` (send_file) delivers it once more.
    let message = b"From: <sender@lab.test>\nTo: <user@slow.test>\nSubject: slow\n\nbody\n";
    let out = lab
        .sendmail(&["-f", "sender@lab.test", "user@slow.test"], message)
        .expect("sendmail");
    assert!(out.status.success(), "{out:?}");
    let mut slow_id = String::new();
    assert!(
        wait_until(WAIT, || {
            match lab
                .deferred_ids()
                .into_iter()
                .find(|id| lab.deferrals(id) == 1)
            {
                Some(id) => {
                    slow_id = id;
                    true
                }
                None => false,
            }
        }),
        "sendmail's message not deferred; maillog:\n{}",
        lab.maillog()
    );
    assert!(lab.flush_log("slow_test").is_empty());
    let out = lab.postqueue(&["-i", &slow_id]).expect("postqueue -i");
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(WAIT, || lab.deferrals(&slow_id) == 2),
        "postqueue -i did not requeue {slow_id}; maillog:\n{}",
        lab.maillog()
    );

    lab.stop().expect("stop lab");
    assert!(lab.processes().is_empty());
}
