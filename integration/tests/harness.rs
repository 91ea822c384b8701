//! Self-test of the flushd harness (`integration::daemon`): the binaries are
//! built, `Flushd` starts the daemon on a fresh queue directory, both clients
//! get answers, and SIGTERM stops it. The end-to-end tests proper are the
//! `e2e_*.rs` files.

use std::time::Duration;

use integration::daemon::{
    flush_log, flushctl_binary, flushd_binary, postfix_request, short_queue_id, Flushd,
    FlushdOptions, TEST_DOMAIN,
};

#[test]
fn binaries_are_built() {
    assert!(flushd_binary().is_file(), "{}", flushd_binary().display());
    assert!(
        flushctl_binary().is_file(),
        "{}",
        flushctl_binary().display()
    );
}

#[test]
fn flushd_runs_under_the_harness() {
    let mut daemon = Flushd::start(FlushdOptions::default());
    let site_path = "relay_test";

    let id = short_queue_id(1);
    let reply = daemon.client().request(&format!("add {TEST_DOMAIN} {id}"));
    assert!(reply == "OK" || reply.starts_with("OK "), "{reply}");
    assert_eq!(flush_log(daemon.queue_dir(), site_path), vec![id.clone()]);

    let id2 = short_queue_id(2);
    let exchange = postfix_request(
        daemon.postfix_socket(),
        &[
            ("request", "add"),
            ("site", TEST_DOMAIN),
            ("queue_id", &id2),
        ],
    )
    .expect("postfix add");
    assert_eq!(exchange.reply, b"status\x000\x00\x00");
    assert_eq!(flush_log(daemon.queue_dir(), site_path), vec![id, id2]);

    let status = daemon
        .terminate(Duration::from_secs(10))
        .expect("flushd did not exit after SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", daemon.log());
    assert!(!daemon.line_socket().exists());
}
