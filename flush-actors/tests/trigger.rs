//! The QueueTrigger actor on a temporary queue directory: deferred files in
//! hashed directories, and a FIFO at public/qmgr read by a test thread, as
//! the queue manager would read it.
#![allow(clippy::unwrap_used)]

use actix::Addr;
use flush_actors::queue::layout::{DEFERRED, INCOMING};
use flush_actors::queue::QueueLayout;
use flush_actors::stats::Report;
use flush_actors::trigger::{
    self, MoveReport, MoveToIncoming, QueueTrigger, SendOneFile, TriggerStats, SCAN_COALESCE_WINDOW,
};
use rustix::fs::{Mode, OFlags, CWD};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A queue directory with deferred/ (hashed, depth 1), incoming/ and public/.
struct TestQueue {
    dir: tempfile::TempDir,
    layout: QueueLayout,
}

impl TestQueue {
    fn new() -> TestQueue {
        let dir = tempfile::tempdir().unwrap();
        for d in ["deferred", "incoming", "public"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let names = vec!["deferred".to_string(), "defer".to_string()];
        let layout = QueueLayout::new(dir.path(), &names, 1);
        TestQueue { dir, layout }
    }

    /// A deferred queue file with the given mode, times far in the past.
    fn defer(&self, id: &str, mode: u32) {
        let path = self.layout.path(DEFERRED, id);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"queue file").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(old).set_modified(old))
            .unwrap();
    }

    fn incoming(&self, id: &str) -> std::path::PathBuf {
        self.layout.path(INCOMING, id)
    }

    fn deferred(&self, id: &str) -> std::path::PathBuf {
        self.layout.path(DEFERRED, id)
    }

    fn start(&self) -> (Addr<QueueTrigger>, Arc<TriggerStats>) {
        let stats = Arc::new(TriggerStats::default());
        let addr = trigger::start(self.layout.clone(), Arc::clone(&stats)).unwrap();
        (addr, stats)
    }
}

/// Reads the FIFO at public/qmgr on a thread of its own, as qmgr does.
struct QmgrFifo {
    bytes: mpsc::Receiver<u8>,
    got: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl QmgrFifo {
    fn new(queue_dir: &Path) -> QmgrFifo {
        let path = queue_dir.join("public/qmgr");
        rustix::fs::mkfifoat(CWD, &path, Mode::from_raw_mode(0o622)).unwrap();
        // Open before returning, so that writers find a reader at once.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let mut fifo = File::from(rustix::fs::openat(CWD, &path, flags, Mode::empty()).unwrap());
        let (tx, bytes) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stopped.load(Ordering::Relaxed) {
                match fifo.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        for &b in &buf[..n] {
                            let _ = tx.send(b);
                        }
                    }
                    // 0: no writer right now; WouldBlock: nothing written yet.
                    Ok(_) => thread::sleep(Duration::from_millis(1)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("read qmgr fifo: {e}"),
                }
            }
        });
        QmgrFifo {
            bytes,
            got: Vec::new(),
            stop,
        }
    }

    /// Everything read so far, after waiting until `done` holds of it (or
    /// five seconds have passed).
    async fn wait_for(&mut self, done: impl Fn(&[u8]) -> bool) -> &[u8] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.got.extend(self.bytes.try_iter());
            if done(&self.got) || Instant::now() > deadline {
                return &self.got;
            }
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Everything read after a quiet while (to check that nothing more came).
    async fn settle(&mut self) -> &[u8] {
        actix_rt::time::sleep(SCAN_COALESCE_WINDOW * 10 + Duration::from_millis(50)).await;
        self.got.extend(self.bytes.try_iter());
        &self.got
    }
}

impl Drop for QmgrFifo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn wait_until(what: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !what() && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends as every sender does: mark the message queued first.
async fn move_to_incoming(
    addr: &Addr<QueueTrigger>,
    stats: &TriggerStats,
    msg: MoveToIncoming,
) -> MoveReport {
    stats.mailbox.queued();
    addr.send(msg).await.unwrap().unwrap()
}

async fn send_file(addr: &Addr<QueueTrigger>, stats: &TriggerStats, id: &str) -> MoveReport {
    stats.mailbox.queued();
    let msg = SendOneFile {
        queue_id: id.to_string(),
    };
    addr.send(msg).await.unwrap().unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[actix::test]
async fn move_to_incoming_moves_files_then_triggers_f_and_i() {
    let q = TestQueue::new();
    let mut fifo = QmgrFifo::new(q.dir.path());
    let ids = ["3F2A41C0B1", "A0B1C2D3E4", "4ZkQ5d1XqBzBcdF"];
    for id in ids {
        q.defer(id, 0o700);
    }
    // The long ID hashes by its microseconds, 1XqB = 0x355C6: directory 3.
    let long_path = q.dir.path().join("deferred/3/4ZkQ5d1XqBzBcdF");
    assert!(long_path.exists());
    let (addr, stats) = q.start();

    let before = unix_now();
    let mut msg_ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    msg_ids.push("B0000000000".into());
    let report = move_to_incoming(
        &addr,
        &stats,
        MoveToIncoming {
            ids: msg_ids,
            lines_read: 4,
            unthrottle_first: true,
        },
    )
    .await;
    let after = unix_now();

    assert_eq!(
        report,
        MoveReport {
            moved: 3,
            missing: 1,
            ..MoveReport::default()
        }
    );
    for id in ids {
        assert!(!q.deferred(id).exists(), "{id} still deferred");
        let meta = fs::metadata(q.incoming(id)).unwrap();
        assert!((before..=after).contains(&meta.mtime()), "{id} mtime");
        assert!((before..=after).contains(&meta.atime()), "{id} atime");
        assert_eq!(meta.mtime_nsec(), 0, "{id}: whole seconds");
        assert_eq!(meta.atime_nsec(), 0, "{id}: whole seconds");
    }
    assert!(!long_path.exists());

    assert_eq!(fifo.wait_for(|b| b.contains(&b'I')).await, b"FI");
    assert_eq!(fifo.settle().await, b"FI");
    assert_eq!(stats.files_moved.get(), 3);
    assert_eq!(stats.files_missing.get(), 1);
    assert_eq!(stats.triggers_sent.get(), 2);
    assert_eq!(stats.triggers_failed.get(), 0);
    let report = stats.report();
    assert_eq!(report["handled"], 1);
    assert_eq!(report["mailbox"], 0);
    assert_eq!(report["files_moved"], 3);
}

#[actix::test]
async fn missing_ids_are_skipped_and_nothing_read_means_no_trigger() {
    let q = TestQueue::new();
    let mut fifo = QmgrFifo::new(q.dir.path());
    let (addr, stats) = q.start();

    // A log with no line: no move, no trigger at all.
    let empty = MoveToIncoming {
        ids: Vec::new(),
        lines_read: 0,
        unthrottle_first: false,
    };
    assert_eq!(
        move_to_incoming(&addr, &stats, empty).await,
        MoveReport::default()
    );
    assert_eq!(fifo.settle().await, b"");

    // Lines were read but every file is gone: still an I, as flush(8) does.
    let gone = MoveToIncoming {
        ids: vec!["AAAA1".into(), "BBBB2".into()],
        lines_read: 3,
        unthrottle_first: false,
    };
    let report = move_to_incoming(&addr, &stats, gone).await;
    assert_eq!(report.missing, 2);
    assert_eq!(report.queued(), 0);
    assert_eq!(fifo.wait_for(|b| !b.is_empty()).await, b"I");

    // Only bad lines were read: no IDs, still an I.
    let bad_lines = MoveToIncoming {
        ids: Vec::new(),
        lines_read: 1,
        unthrottle_first: false,
    };
    move_to_incoming(&addr, &stats, bad_lines).await;
    assert_eq!(fifo.wait_for(|b| b.len() >= 2).await, b"II");
    assert_eq!(stats.files_missing.get(), 2);
    assert_eq!(stats.move_errors.get(), 0);
}

#[actix::test]
async fn send_one_file_unthrottles_ready_files_and_leaves_others() {
    let q = TestQueue::new();
    let mut fifo = QmgrFifo::new(q.dir.path());
    q.defer("ABCDEF1", 0o700);
    q.defer("ABCDEF2", 0o600);
    let (addr, stats) = q.start();

    let report = send_file(&addr, &stats, "ABCDEF1").await;
    assert_eq!(report.moved, 1);
    let mode = fs::metadata(q.incoming("ABCDEF1")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o740);
    assert_eq!(fifo.wait_for(|b| !b.is_empty()).await, b"I");

    let report = send_file(&addr, &stats, "ABCDEF2").await;
    assert_eq!(report.not_ready, 1);
    let mode = fs::metadata(q.deferred("ABCDEF2")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    assert!(!q.incoming("ABCDEF2").exists());

    // A missing file: OK, nothing moved, no trigger.
    let report = send_file(&addr, &stats, "ABCDEF3").await;
    assert_eq!(report.missing, 1);
    assert_eq!(fifo.settle().await, b"I");
    assert_eq!(stats.files_not_ready.get(), 1);
    assert_eq!(stats.report()["handled"], 3);
}

#[actix::test]
async fn no_queue_manager_is_not_a_failure() {
    let q = TestQueue::new();
    q.defer("ABCDEF1", 0o700);
    let (addr, stats) = q.start();
    let msg = MoveToIncoming {
        ids: vec!["ABCDEF1".into()],
        lines_read: 1,
        unthrottle_first: true,
    };
    let report = move_to_incoming(&addr, &stats, msg).await;
    assert_eq!(report.moved, 1);
    assert!(q.incoming("ABCDEF1").exists());
    // F failed at once; I fails on the notifier thread a moment later.
    wait_until(|| stats.triggers_failed.get() == 2).await;
    assert_eq!(stats.triggers_failed.get(), 2);
    assert_eq!(stats.triggers_sent.get(), 0);

    // A FIFO nobody reads (a dead qmgr): the same.
    rustix::fs::mkfifoat(CWD, q.layout.qmgr_path(), Mode::from_raw_mode(0o622)).unwrap();
    q.defer("ABCDEF2", 0o700);
    let report = send_file(&addr, &stats, "ABCDEF2").await;
    assert_eq!(report.moved, 1);
    wait_until(|| stats.triggers_failed.get() == 3).await;
    assert_eq!(stats.triggers_failed.get(), 3);
    assert_eq!(stats.report()["errors"], 0);
}

#[actix::test]
async fn a_burst_of_deliveries_shares_i_triggers() {
    const N: usize = 60;
    let q = TestQueue::new();
    let mut fifo = QmgrFifo::new(q.dir.path());
    let ids: Vec<String> = (0..N).map(|i| format!("{:X}{i:05X}", i % 16)).collect();
    for id in &ids {
        q.defer(id, 0o700);
    }
    let (addr, stats) = q.start();

    let sends = ids.iter().map(|id| {
        stats.mailbox.queued();
        addr.send(MoveToIncoming {
            ids: vec![id.clone()],
            lines_read: 1,
            unthrottle_first: false,
        })
    });
    let replies = futures_util::future::join_all(sends).await;
    for reply in replies {
        assert_eq!(reply.unwrap().unwrap().moved, 1);
    }
    for id in &ids {
        assert!(q.incoming(id).exists());
    }

    // Every request is answered by its own I or covered by another's.
    wait_until(|| stats.triggers_sent.get() + stats.triggers_coalesced.get() == N as u64).await;
    let sent = stats.triggers_sent.get() as usize;
    assert_eq!(sent + stats.triggers_coalesced.get() as usize, N);
    let got = fifo.wait_for(|b| b.len() >= sent).await.to_vec();
    assert!(!got.is_empty(), "no I at all");
    assert!(got.iter().all(|&b| b == b'I'));
    assert_eq!(got.len(), sent);
    assert!(sent < N, "{sent} I triggers for {N} deliveries");

    // One more delivery after the burst still gets an I of its own.
    q.defer("FFFFF1", 0o700);
    send_file(&addr, &stats, "FFFFF1").await;
    let more = fifo.wait_for(|b| b.len() > sent).await;
    assert_eq!(more.len(), sent + 1);
    assert_eq!(stats.report()["handled"], N as u64 + 1);
}
