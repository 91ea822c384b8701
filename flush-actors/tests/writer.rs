//! The log writers and their registry, with a real queue trigger, on a
//! temporary queue directory: appends, de-duplication, deliveries racing
//! appends, idle retirement and shutdown.
#![allow(clippy::unwrap_used)]

use actix::prelude::*;
use flush_actors::domains::SitePath;
use flush_actors::queue::layout::{DEFERRED, INCOMING};
use flush_actors::queue::QueueLayout;
use flush_actors::stats::Tracked;
use flush_actors::trigger::{self, TriggerStats};
use flush_actors::writer::{
    AppendBatch, AppendFor, CloseAll, DeliverFor, DeliverHow, OpenFileBudget, WriterLimits,
    WriterRegistry, WriterStats, DEFAULT_MAX_WRITERS,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fixture {
    dir: tempfile::TempDir,
    layout: QueueLayout,
    registry: Addr<WriterRegistry>,
    stats: Arc<WriterStats>,
    _arbiters: Vec<Arbiter>,
}

fn start(max_idle: Duration, max_open: usize) -> Fixture {
    let limits = WriterLimits {
        max_idle,
        max_writers: DEFAULT_MAX_WRITERS,
    };
    start_with(limits, max_open)
}

/// A registry that keeps at most four writers alive.
fn start_with_four_writers() -> Fixture {
    let limits = WriterLimits {
        max_idle: Duration::from_secs(100),
        max_writers: 4,
    };
    start_with(limits, 10)
}

fn start_with(limits: WriterLimits, max_open: usize) -> Fixture {
    start_with_threads(limits, max_open, 2)
}

/// A registry whose writers all run on one thread.
fn start_on_one_thread() -> Fixture {
    let limits = WriterLimits {
        max_idle: Duration::from_secs(100),
        max_writers: DEFAULT_MAX_WRITERS,
    };
    start_with_threads(limits, 10, 1)
}

fn start_with_threads(limits: WriterLimits, max_open: usize, threads: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for d in ["deferred", "incoming", "flush", "public"] {
        fs::create_dir(dir.path().join(d)).unwrap();
    }
    let names = vec!["deferred".to_string()];
    let layout = QueueLayout::new(dir.path(), &names, 1);
    let trigger_stats = Arc::new(TriggerStats::default());
    let trigger = Tracked::new(
        trigger::start(layout.clone(), Arc::clone(&trigger_stats)).unwrap(),
        trigger_stats,
        |s: &TriggerStats| &s.mailbox,
    );
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let stats = Arc::new(WriterStats::default());
    let registry = WriterRegistry::new(
        layout.flush_dir(),
        arbiters.iter().map(Arbiter::handle).collect(),
        trigger,
        OpenFileBudget::new(max_open),
        limits,
        Arc::clone(&stats),
    )
    .start();
    Fixture {
        dir,
        layout,
        registry,
        stats,
        _arbiters: arbiters,
    }
}

fn site(name: &str) -> SitePath {
    SitePath::from_file_name(name).unwrap()
}

fn log_lines(dir: &Path, site: &str) -> Vec<String> {
    fs::read_to_string(dir.join("flush").join(site))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn defer(layout: &QueueLayout, id: &str) {
    let path = layout.path(DEFERRED, id);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"queue file").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
}

/// Makes a deferred queue file for each of `ids` and appends them, one by
/// one, to `name`'s log.
async fn defer_and_log(f: &Fixture, name: &str, ids: &[&str]) {
    for id in ids {
        defer(&f.layout, id);
        f.registry
            .send(AppendFor::new(site(name), *id))
            .await
            .unwrap()
            .unwrap();
    }
}

#[actix::test]
async fn appends_land_in_the_log_once() {
    let f = start(Duration::from_secs(100), 10);
    let mut pending = Vec::new();
    for id in ["A1", "A2", "A1", "A3", "A2"] {
        pending.push(f.registry.send(AppendFor::new(site("relay_test"), id)));
    }
    for request in pending {
        request.await.unwrap().unwrap();
    }
    assert_eq!(log_lines(f.dir.path(), "relay_test"), ["A1", "A2", "A3"]);
    assert_eq!(f.stats.appends.get(), 3);
    assert_eq!(f.stats.duplicates_skipped.get(), 2);
    let mode = fs::metadata(f.dir.path().join("flush/relay_test"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[actix::test]
async fn a_batch_of_appends_to_one_site_is_one_write() {
    let f = start(Duration::from_secs(100), 10);
    // What a gateway collects in one turn: many IDs, two sites, interleaved.
    let entries: Vec<(SitePath, String)> = (0..500)
        .map(|i| {
            let name = if i % 2 == 0 {
                "burst_test"
            } else {
                "other_test"
            };
            (site(name), format!("B{i:X}"))
        })
        .collect();
    let results = f.registry.send(AppendBatch::new(entries)).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(log_lines(f.dir.path(), "burst_test").len(), 250);
    assert_eq!(log_lines(f.dir.path(), "other_test").len(), 250);
    assert_eq!(f.stats.write_batches.get(), 2, "one write per site");
}

#[actix::test]
async fn appends_that_queue_behind_a_locked_log_are_written_together() {
    let f = start(Duration::from_secs(100), 10);
    let first = f.registry.send(AppendFor::new(site("queued_test"), "Q0"));
    first.await.unwrap().unwrap();
    // Someone else (a Postfix flush(8)) holds the log: the writer's next
    // append waits for the lock, and everything sent meanwhile queues up.
    let log = fs::File::open(f.dir.path().join("flush/queued_test")).unwrap();
    rustix::fs::flock(&log, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let pending: Vec<_> = (1..=200)
        .map(|i| {
            let append = AppendFor::new(site("queued_test"), format!("Q{i:X}"));
            f.registry.send(append)
        })
        .collect();
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    rustix::fs::flock(&log, rustix::fs::FlockOperation::Unlock).unwrap();
    for request in pending {
        request.await.unwrap().unwrap();
    }
    assert_eq!(log_lines(f.dir.path(), "queued_test").len(), 201);
    // One write for Q0, one that waited for the lock, and the queue in a
    // few more (3 or 4 when measured); one write each would be 201.
    let writes = f.stats.write_batches.get();
    assert!(writes <= 20, "{writes} writes for 201 appends");
}

#[actix::test]
async fn delivery_moves_files_and_truncates_and_later_appends_survive() {
    let f = start(Duration::from_secs(100), 10);
    defer_and_log(&f, "d_test", &["C1", "C2", "C3"]).await;
    // Queue a delivery and, right behind it, appends that must not be lost.
    let delivery = f
        .registry
        .send(DeliverFor::new(site("d_test"), DeliverHow::SendSite));
    let late: Vec<_> = ["C4", "C5"]
        .iter()
        .map(|id| f.registry.send(AppendFor::new(site("d_test"), *id)))
        .collect();
    let report = delivery.await.unwrap().unwrap();
    for request in late {
        request.await.unwrap().unwrap();
    }
    assert_eq!(report.moved, 3);
    for id in ["C1", "C2", "C3"] {
        assert!(
            f.layout.path(INCOMING, id).exists(),
            "{id} not in incoming/"
        );
        assert!(!f.layout.path(DEFERRED, id).exists(), "{id} still deferred");
    }
    assert_eq!(log_lines(f.dir.path(), "d_test"), ["C4", "C5"]);
}

#[actix::test]
async fn delivering_a_site_without_a_log_creates_nothing() {
    let f = start(Duration::from_secs(100), 10);
    let report = f
        .registry
        .send(DeliverFor::new(site("nobody_test"), DeliverHow::SendSite))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.moved, 0);
    assert!(!f.dir.path().join("flush/nobody_test").exists());
}

#[actix::test]
async fn writers_beyond_the_open_file_budget_still_write() {
    let f = start(Duration::from_secs(100), 2);
    for i in 0..6 {
        f.registry
            .send(AppendFor::new(site(&format!("s{i}_test")), "E1"))
            .await
            .unwrap()
            .unwrap();
    }
    for i in 0..6 {
        assert_eq!(log_lines(f.dir.path(), &format!("s{i}_test")), ["E1"]);
    }
    assert!(
        f.stats.open_files.get() <= 2,
        "open files {}",
        f.stats.open_files.get()
    );
}

#[actix::test]
async fn idle_writers_retire_and_new_work_starts_a_new_writer() {
    let f = start(Duration::from_millis(200), 10);
    for i in 0..3 {
        f.registry
            .send(AppendFor::new(site(&format!("idle{i}_test")), "F1"))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(f.stats.live_writers.get(), 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.stats.live_writers.get() > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.stats.live_writers.get(), 0);
    assert_eq!(f.stats.open_files.get(), 0);
    f.registry
        .send(AppendFor::new(site("idle0_test"), "F2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log_lines(f.dir.path(), "idle0_test"), ["F1", "F2"]);
    assert_eq!(f.stats.writers_started.get(), 4);
}

#[actix::test]
async fn past_max_writers_the_least_recently_used_retire_and_nothing_is_lost() {
    let f = start_with_four_writers();
    // Two rounds over ten sites, each append awaited: at four writers, a
    // new site retires the two least recently used (the quarter's boundary
    // included), so the second round finds every site's writer gone.
    for round in 0..2 {
        for i in 0..10 {
            f.registry
                .send(AppendFor::new(
                    site(&format!("many{i}_test")),
                    format!("G{round}{i}"),
                ))
                .await
                .unwrap()
                .unwrap();
        }
    }
    // Retired writers stop on their own threads, soon after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.stats.live_writers.get() > 4 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.stats.live_writers.get(), 4);
    for i in 0..10 {
        assert_eq!(
            log_lines(f.dir.path(), &format!("many{i}_test")),
            [format!("G0{i}"), format!("G1{i}")]
        );
    }
    assert_eq!(f.stats.writers_started.get(), 20);
    assert_eq!(f.stats.writers_evicted.get(), 16);
}

#[actix::test]
async fn one_batch_with_more_sites_than_max_writers_is_written_whole() {
    let f = start_with_four_writers();
    // Writers started for this very batch are never the ones retired to make
    // room for its later sites.
    let entries: Vec<(SitePath, String)> = (0..12)
        .map(|i| (site(&format!("wide{i}_test")), format!("W{i}")))
        .collect();
    let results = f.registry.send(AppendBatch::new(entries)).await.unwrap();
    assert_eq!(results.len(), 12);
    for (i, result) in results.into_iter().enumerate() {
        assert!(result.is_ok(), "entry {i}: {result:?}");
        assert_eq!(
            log_lines(f.dir.path(), &format!("wide{i}_test")),
            [format!("W{i}")]
        );
    }
    assert_eq!(f.stats.writers_started.get(), 12);
}

#[actix::test]
async fn close_all_writes_everything_and_stops_the_writers() {
    let f = start(Duration::from_secs(100), 10);
    let requests: Vec<_> = (0..50)
        .map(|i| {
            f.registry
                .send(AppendFor::new(site("close_test"), format!("G{i}")))
        })
        .collect();
    for request in requests {
        request.await.unwrap().unwrap();
    }
    f.registry.send(CloseAll).await.unwrap();
    assert_eq!(f.stats.live_writers.get(), 0);
    assert_eq!(log_lines(f.dir.path(), "close_test").len(), 50);
}

#[actix::test]
async fn a_writer_in_the_middle_of_a_delivery_is_not_retired_under_it() {
    let f = start_with_four_writers();
    // Enough queue files that the delivery is still moving them (and its
    // writer still holds the log's lock) when the appends below arrive.
    let ids: Vec<String> = (0..3000).map(|i| format!("D{i:04X}")).collect();
    for id in &ids {
        defer(&f.layout, id);
    }
    let entries = ids
        .iter()
        .map(|id| (site("busy_test"), id.clone()))
        .collect();
    let written = f.registry.send(AppendBatch::new(entries)).await.unwrap();
    assert!(written.iter().all(Result::is_ok));
    let delivery = f
        .registry
        .send(DeliverFor::new(site("busy_test"), DeliverHow::SendSite));
    // Four new sites: at four writers, the least recently used one, the
    // delivering writer, would be the one to make room.
    let others: Vec<_> = (0..4)
        .map(|i| {
            f.registry
                .send(AppendFor::new(site(&format!("other{i}_test")), "O1"))
        })
        .collect();
    // A writer of the same log beside the delivering one would wait for
    // its lock on the thread the delivery needs to finish.
    let late = f.registry.send(AppendFor::new(site("busy_test"), "L1"));
    let limit = Duration::from_secs(20);
    let report = actix_rt::time::timeout(limit, delivery)
        .await
        .expect("the delivery finished")
        .unwrap()
        .unwrap();
    actix_rt::time::timeout(limit, late)
        .await
        .expect("the late append finished")
        .unwrap()
        .unwrap();
    for other in others {
        other.await.unwrap().unwrap();
    }
    assert_eq!(report.moved, 3000);
    assert_eq!(log_lines(f.dir.path(), "busy_test"), ["L1"]);
}

/// Takes `site`'s log's lock the way a Postfix flush(8) would.
fn lock_elsewhere(dir: &Path, site: &str) -> fs::File {
    let log = fs::File::open(dir.join("flush").join(site)).unwrap();
    rustix::fs::flock(&log, rustix::fs::FlockOperation::LockExclusive).unwrap();
    log
}

/// Appends `first` to `name`'s log, locks the log elsewhere and sends an
/// append of `then`, which waits for the lock: the lock and that append.
async fn append_held_by_a_lock(
    f: &Fixture,
    name: &str,
    first: &str,
    then: &str,
) -> (fs::File, Request<WriterRegistry, AppendFor>) {
    f.registry
        .send(AppendFor::new(site(name), first))
        .await
        .unwrap()
        .unwrap();
    let log = lock_elsewhere(f.dir.path(), name);
    (log, f.registry.send(AppendFor::new(site(name), then)))
}

#[actix::test]
async fn a_log_locked_elsewhere_holds_up_only_its_own_work() {
    let f = start_on_one_thread();
    let (log, held) = append_held_by_a_lock(&f, "held_test", "H0", "H1").await;
    // The only writer thread does not wait for that lock: another log's
    // append, sent after, is written meanwhile.
    let free = f.registry.send(AppendFor::new(site("free_test"), "F1"));
    actix_rt::time::timeout(Duration::from_secs(5), free)
        .await
        .expect("another log's append was not held up")
        .unwrap()
        .unwrap();
    assert_eq!(log_lines(f.dir.path(), "free_test"), ["F1"]);
    assert_eq!(log_lines(f.dir.path(), "held_test"), ["H0"]);
    assert_eq!(f.stats.locked_elsewhere.get(), 1);
    rustix::fs::flock(&log, rustix::fs::FlockOperation::Unlock).unwrap();
    actix_rt::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held append was written once the lock was free")
        .unwrap()
        .unwrap();
    assert_eq!(log_lines(f.dir.path(), "held_test"), ["H0", "H1"]);
}

#[actix::test]
async fn a_delivery_of_a_log_locked_elsewhere_runs_once_it_is_free() {
    let f = start_on_one_thread();
    defer_and_log(&f, "later_test", &["K1", "K2"]).await;
    let log = lock_elsewhere(f.dir.path(), "later_test");
    let mut delivery = Box::pin(
        f.registry
            .send(DeliverFor::new(site("later_test"), DeliverHow::SendSite)),
    );
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert!(futures_util::poll!(&mut delivery).is_pending());
    assert!(f.layout.path(DEFERRED, "K1").exists());
    rustix::fs::flock(&log, rustix::fs::FlockOperation::Unlock).unwrap();
    let report = actix_rt::time::timeout(Duration::from_secs(5), delivery)
        .await
        .expect("the delivery ran once the lock was free")
        .unwrap()
        .unwrap();
    assert_eq!(report.moved, 2);
    assert!(log_lines(f.dir.path(), "later_test").is_empty());
}

#[actix::test]
async fn closing_gives_up_soon_on_a_log_locked_elsewhere() {
    let f = start_on_one_thread();
    let (log, held) = append_held_by_a_lock(&f, "stuck_test", "S0", "S1").await;
    let other = f.registry.send(AppendFor::new(site("other_test"), "O1"));
    other.await.unwrap().unwrap();
    // Shutdown does not wait the 30 s an append would: about a second,
    // then the waiting append is answered with an error.
    let began = Instant::now();
    actix_rt::time::timeout(Duration::from_secs(5), f.registry.send(CloseAll))
        .await
        .expect("closing waited too long for a log locked elsewhere")
        .unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "{:?}",
        began.elapsed()
    );
    let answer = actix_rt::time::timeout(Duration::from_secs(1), held)
        .await
        .expect("the held append was answered")
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(log_lines(f.dir.path(), "stuck_test"), ["S0"]);
    assert_eq!(log_lines(f.dir.path(), "other_test"), ["O1"]);
    drop(log);
}
