//! flushd's log on Postfix's routes, outside master(8): `--postfix-log`
//! sends each record to postlogd's socket when main.cf sets `maillog_file`,
//! formatted as Postfix's daemons format theirs; a bad `syslog_facility`
//! stops it at start-up with a message that names it.
#![allow(clippy::unwrap_used)]

use integration::daemon::{flushd_binary, Flushd, FlushdOptions};
use integration::fixtures::{make_queue_dir, wait_until};
use integration::postfix_client::postfix_request;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Everything waiting on `reader`, one record per datagram.
fn records(reader: &UnixDatagram) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    while let Ok(n) = reader.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[test]
fn postfix_log_sends_postfix_shaped_records_to_postlogd() {
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("queue");
    make_queue_dir(&queue).unwrap();
    let reader = UnixDatagram::bind(queue.join("public/postlog")).unwrap();
    reader.set_nonblocking(true).unwrap();

    let flushd = Flushd::start(
        FlushdOptions::default()
            .queue_dir(&queue)
            .main_cf("maillog_file", "/var/log/unused.log")
            .main_cf("myhostname", "mx7.example.net")
            .main_cf("syslog_name", "postfix-out")
            .arg("--postfix-log")
            .env("RUST_LOG", "info"),
    );
    let tag = format!("mx7 postfix-out/flushd[{}]: ", flushd.pid());
    let mut seen = Vec::new();
    assert!(
        wait_until(WAIT, || {
            seen.extend(records(&reader));
            seen.iter()
                .any(|r| r.ends_with(&format!("{tag}flushd 0.1.0 ready")))
        }),
        "no ready record tagged {tag:?} in {seen:#?}"
    );
    // "Mmm dd hh:mm:ss " comes first, as msg_logger.c writes it.
    let first = &seen[0];
    assert_eq!(first.as_bytes()[15], b' ', "{first}");
    assert_eq!(&first[16..16 + tag.len()], tag, "{first}");

    // A warning carries Postfix's severity word; nothing reached stderr.
    let reply = postfix_request(flushd.postfix_socket(), &[("request", "bogus")]).unwrap();
    assert_ne!(reply.status, 0);
    assert!(
        wait_until(WAIT, || {
            seen.extend(records(&reader));
            seen.iter()
                .any(|r| r.contains(&format!("{tag}warning: session")) && r.contains("bogus"))
        }),
        "no warning record in {seen:#?}"
    );
    assert_eq!(flushd.log(), "", "stderr should stay empty");
}

#[test]
fn an_unknown_syslog_facility_stops_flushd_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("queue");
    make_queue_dir(&queue).unwrap();
    let conf = tmp.path().join("etc");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("main.cf"),
        format!(
            "queue_directory = {}\nsyslog_facility = mial\n",
            queue.display()
        ),
    )
    .unwrap();
    let out = Command::new(flushd_binary())
        .arg("-c")
        .arg(&conf)
        .arg("--postfix-log")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("syslog_facility \"mial\": unknown facility"),
        "{stderr}"
    );
}
