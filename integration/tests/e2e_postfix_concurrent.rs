//! flushd and Postfix 3.7's own flush(8) serving one queue directory at once
//! (issue 3: a migration runs both for a while). Both append to the same
//! logfiles under the same `flock` (`src/flush/flush.c` locks each logfile
//! around every access), so concurrent `add`s from both must lose no queue
//! ID and tear no line.
//!
//! flush(8) runs under the lab's master(8) on `public/flush`; flushd runs
//! beside it as the postfix user (as flush(8) does, so that each can open
//! the logfiles the other created) on `public/flushd`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use integration::daemon::{postfix_request, short_queue_id, Flushd, FlushdOptions};
use integration::postfix_lab::{postfix_ids, require_postfix, LabOptions, PostfixLab};

/// The destinations both servers log for.
const SITES: [&str; 3] = ["a.test", "b.test", "c.test"];
/// Client threads per server.
const THREADS: u32 = 4;
/// `add` requests per thread.
const ADDS: u32 = 500;

/// What one client thread sent: site -> queue IDs, all answered OK.
type Sent = BTreeMap<&'static str, BTreeSet<String>>;

/// Sends `ADDS` adds to `socket`, queue IDs numbered from `first`, spread
/// over the sites; panics on any status but OK.
fn add_load(socket: PathBuf, first: u32, start: Arc<Barrier>) -> Sent {
    let mut sent = Sent::new();
    start.wait();
    for n in first..first + ADDS {
        let site = SITES[(n % 3) as usize];
        let id = short_queue_id(n);
        let add = [
            ("request", "add"),
            ("site", site),
            ("queue_id", id.as_str()),
        ];
        let exchange = postfix_request(&socket, &add)
            .unwrap_or_else(|e| panic!("add {site} {id} via {}: {e}", socket.display()));
        assert_eq!(
            exchange.status,
            0,
            "add {site} {id} via {}",
            socket.display()
        );
        sent.entry(site).or_default().insert(id);
    }
    sent
}

/// The lines of `flush/<site_path>` in the lab's queue.
fn log_lines(queue: &Path, site_path: &str) -> Vec<String> {
    fs::read_to_string(queue.join("flush").join(site_path))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn flushd_and_postfix_flush_share_logfiles_without_losing_ids() {
    if !require_postfix() {
        return;
    }
    let (uid, gid) = postfix_ids().expect("postfix account");
    let opts = LabOptions {
        domains: SITES.iter().map(|s| s.to_string()).collect(),
        ..LabOptions::default()
    };
    let mut lab = PostfixLab::new(opts).expect("create lab");
    lab.start().expect("start lab");
    let queue = lab.queue_dir().to_path_buf();

    // flushd's lock file lives in pid/, which is root's: give it one.
    let lock = queue.join("pid/flushd.pid");
    fs::write(&lock, b"").unwrap();
    chown(&lock, Some(uid), Some(gid)).unwrap();
    let flushd_socket = queue.join("public/flushd");
    let flushd = Flushd::start(
        FlushdOptions::default()
            .queue_dir(&queue)
            .domains(&SITES.join(", "))
            .postfix_socket(&flushd_socket)
            .user(uid, gid),
    );

    // Both servers at once, the same sites, distinct queue IDs.
    let start = Arc::new(Barrier::new(2 * THREADS as usize));
    let began = Instant::now();
    let mut clients = Vec::new();
    for t in 0..THREADS {
        for (socket, base) in [
            (queue.join("public/flush"), 0),
            (flushd_socket.clone(), THREADS * ADDS),
        ] {
            let start = Arc::clone(&start);
            let first = base + t * ADDS;
            clients.push(thread::spawn(move || add_load(socket, first, start)));
        }
    }
    let mut sent = Sent::new();
    for client in clients {
        for (site, ids) in client.join().unwrap() {
            sent.entry(site).or_default().extend(ids);
        }
    }
    let took = began.elapsed();
    let total: usize = sent.values().map(BTreeSet::len).sum();
    assert_eq!(total, (2 * THREADS * ADDS) as usize);
    assert!(took < Duration::from_secs(60), "{total} adds took {took:?}");

    // Every acknowledged ID is in its site's logfile; every line is a whole
    // ID that was sent there (no torn or interleaved appends).
    for site in SITES {
        let site_path = site.replace('.', "_");
        let lines = log_lines(&queue, &site_path);
        let logged: BTreeSet<String> = lines.iter().cloned().collect();
        let expected = &sent[site];
        let lost: Vec<&String> = expected.difference(&logged).collect();
        assert!(
            lost.is_empty(),
            "{site}: {} IDs lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        let strange: Vec<&String> = logged.difference(expected).collect();
        assert!(
            strange.is_empty(),
            "{site}: lines that are no sent ID: {strange:?}"
        );
        // Both servers wrote into the one file, which stays the postfix user's.
        let meta = fs::metadata(queue.join("flush").join(&site_path)).unwrap();
        assert_eq!(meta.uid(), uid);
    }
    eprintln!("{total} adds from {} clients in {took:?}", 2 * THREADS);

    drop(flushd);
    lab.stop().expect("stop lab");
}
