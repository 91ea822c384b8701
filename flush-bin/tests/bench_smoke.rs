//! Smoke test of flush-bench against a flushd it starts: fixtures are built,
//! found undelivered, delivered through flushd and then verified; small load
//! runs over both protocols get only OK replies and put every ID in its log.

#![allow(clippy::unwrap_used)]

use flush_bin::bench::adds::verify_adds;
use flush_bin::bench::flushd::FlushdProcess;
use flush_bin::bench::qmgr::{QmgrKind, QmgrSink};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flush-bench"))
        .args(args)
        .output()
        .expect("run flush-bench")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `flush-bench load ... --json` and returns its report.
fn load(args: &[&str]) -> Value {
    let mut all = vec!["load", "--json"];
    all.extend_from_slice(args);
    let out = bench(&all);
    assert!(
        out.status.success(),
        "{all:?}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

fn assert_all_ok(report: &Value, requests: u64) {
    assert_eq!(report["statuses"]["OK"], requests, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["answered"], requests, "{report}");
    assert!(report["requests_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["latency"]["p99_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

fn verify(queue: &Path, kind: &str, count: &str) -> Output {
    bench(&[
        "verify",
        "--queue",
        queue.to_str().unwrap(),
        "--kind",
        kind,
        "-k",
        count,
    ])
}

#[test]
fn fixtures_and_load_against_flushd() {
    let tmp = tempfile::tempdir().unwrap();
    let queue = FlushdProcess::prepare_queue(tmp.path()).unwrap();
    let sink = QmgrSink::start(&queue, QmgrKind::Unix).unwrap();
    let daemon = FlushdProcess::start(
        Path::new(env!("CARGO_BIN_EXE_flushd")),
        tmp.path(),
        "bench.test",
        &[],
    )
    .unwrap();
    let q = queue.to_str().unwrap();
    let line = daemon.line_address();
    let postfix = daemon.postfix_socket();
    let postfix = postfix.to_str().unwrap();

    // send_site: built, not delivered yet, delivered by one request.
    let out = bench(&["fixture", "--queue", q, "--kind", "send-site", "-k", "200"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let before = verify(&queue, "send-site", "200");
    assert!(!before.status.success(), "{}", stdout(&before));
    assert!(
        stdout(&before).contains("200 still deferred"),
        "{}",
        stdout(&before)
    );
    let report = load(&[
        "--line",
        &line,
        "--mix",
        "send_site=1",
        "-n",
        "1",
        "-c",
        "1",
        "-s",
        "1",
    ]);
    assert_all_ok(&report, 1);
    let after = verify(&queue, "send-site", "200");
    assert!(after.status.success(), "{}", stdout(&after));
    assert!(sink.seen().contains(&b'I'), "qmgr was told");

    // purge over the Postfix protocol: answered at once, delivered soon after.
    let q2 = tempfile::tempdir().unwrap();
    drop(daemon);
    let daemon = {
        let queue2 = FlushdProcess::prepare_queue(q2.path()).unwrap();
        let out = bench(&[
            "fixture",
            "--queue",
            queue2.to_str().unwrap(),
            "--kind",
            "purge",
            "-k",
            "100",
        ]);
        assert!(out.status.success(), "{}", stdout(&out));
        FlushdProcess::start(
            Path::new(env!("CARGO_BIN_EXE_flushd")),
            q2.path(),
            "bench.test",
            &[],
        )
        .unwrap()
    };
    let postfix2 = daemon.postfix_socket();
    let report = load(&[
        "--postfix-socket",
        postfix2.to_str().unwrap(),
        "--mix",
        "purge",
        "-n",
        "1",
        "-c",
        "1",
    ]);
    assert_all_ok(&report, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !verify(daemon.queue(), "purge", "100").status.success() {
        assert!(
            Instant::now() < deadline,
            "{}",
            stdout(&verify(daemon.queue(), "purge", "100"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(daemon);

    // Adds over both protocols to the first queue, with memory sampling.
    let daemon = FlushdProcess::start(
        Path::new(env!("CARGO_BIN_EXE_flushd")),
        tmp.path(),
        "bench.test",
        &[],
    )
    .unwrap();
    let pid = daemon.pid().to_string();
    let report = load(&[
        "--line",
        &line,
        "-n",
        "2000",
        "-c",
        "4",
        "-w",
        "8",
        "-s",
        "50",
        "--server-pid",
        &pid,
    ]);
    assert_all_ok(&report, 2000);
    assert!(
        report["memory"]["hwm_kib"].as_u64().unwrap() > 0,
        "{report}"
    );
    verify_adds(&queue, 2000, 50, "bench.test").unwrap();

    // Sites under a sub-domain (still eligible by parent matching), so
    // their logs are apart from the line run's.
    let report = load(&[
        "--postfix-socket",
        postfix,
        "-n",
        "300",
        "-c",
        "4",
        "-s",
        "7",
        "--domain",
        "pf.bench.test",
    ]);
    assert_all_ok(&report, 300);
    verify_adds(&queue, 300, 7, "pf.bench.test").unwrap();

    // A domain that is not eligible gets DENY, and load says so by status.
    let report = load(&[
        "--line",
        &line,
        "-n",
        "5",
        "-c",
        "1",
        "--domain",
        "other.test",
    ]);
    assert_eq!(report["statuses"]["DENY"], 5, "{report}");
    daemon.stop().unwrap();
}
