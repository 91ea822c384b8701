//! The janitor's sweeps on a temporary queue directory, through real writers
//! and a real queue trigger.
#![allow(clippy::unwrap_used)]

mod common;

use actix::prelude::*;
use flush_actors::janitor::{Janitor, JanitorSettings, JanitorStats, StartSweep, Sweep};
use flush_actors::queue::layout::{DEFERRED, INCOMING};
use flush_actors::queue::QueueLayout;
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);

struct Fixture {
    dir: tempfile::TempDir,
    layout: QueueLayout,
    janitor: Addr<Janitor>,
    stats: Arc<JanitorStats>,
    _arbiter: Arbiter,
}

fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::queue_layout(dir.path());
    let (registry, arbiter) = common::registry(&layout);
    let stats = Arc::new(JanitorStats::default());
    let janitor = Janitor::new(
        JanitorSettings {
            flush_dir: layout.flush_dir(),
            refresh_time: Duration::from_secs(12 * 3600),
            purge_time: 7 * DAY,
            refresh_interval: Duration::ZERO,
        },
        registry,
        Arc::clone(&stats),
    )
    .start();
    Fixture {
        dir,
        layout,
        janitor,
        stats,
        _arbiter: arbiter,
    }
}

/// A logfile listing `ids`, with its access and modification times `age` ago.
fn log(dir: &Path, name: &str, ids: &[&str], age: Duration) {
    let path = dir.join("flush").join(name);
    let body: String = ids.iter().map(|id| format!("{id}\n")).collect();
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let then = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(then).set_modified(then))
        .unwrap();
}

fn defer(layout: &QueueLayout, id: &str) {
    let path = layout.path(DEFERRED, id);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"queue file").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
}

async fn sweep_and_wait(f: &Fixture, sweep: Sweep) {
    let runs = f.stats.runs.get();
    f.janitor
        .send(StartSweep {
            sweep,
            cause: "request",
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.stats.runs.get() == runs && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f.stats.runs.get() > runs, "sweep did not finish");
}

fn size(dir: &Path, name: &str) -> Option<u64> {
    fs::metadata(dir.join("flush").join(name))
        .ok()
        .map(|m| m.len())
}

#[actix::test]
async fn refresh_delivers_old_logs_and_removes_stale_empty_ones() {
    let f = start();
    defer(&f.layout, "A1");
    defer(&f.layout, "B1");
    log(f.dir.path(), "old_test", &["A1"], DAY);
    log(f.dir.path(), "fresh_test", &["B1"], Duration::from_secs(60));
    log(f.dir.path(), "stale_empty", &[], 8 * DAY);
    log(f.dir.path(), "young_empty", &[], DAY);
    sweep_and_wait(&f, Sweep::Refresh).await;
    assert_eq!(size(f.dir.path(), "old_test"), Some(0));
    assert!(f.layout.path(INCOMING, "A1").exists());
    assert_eq!(size(f.dir.path(), "fresh_test"), Some(3));
    assert!(f.layout.path(DEFERRED, "B1").exists());
    assert_eq!(size(f.dir.path(), "stale_empty"), None);
    assert_eq!(size(f.dir.path(), "young_empty"), Some(0));
    assert_eq!(f.stats.logs_refreshed.get(), 1);
    assert_eq!(f.stats.logs_purged.get(), 1);
}

#[actix::test]
async fn purge_delivers_every_non_empty_log() {
    let f = start();
    defer(&f.layout, "C1");
    log(f.dir.path(), "fresh_test", &["C1"], Duration::from_secs(60));
    sweep_and_wait(&f, Sweep::Purge).await;
    assert_eq!(size(f.dir.path(), "fresh_test"), Some(0));
    assert!(f.layout.path(INCOMING, "C1").exists());
}

/// flush(8) refreshes any name `mail_queue_id_ok()` accepts; flushd never
/// makes an upper-case one, but one found there is delivered too, not
/// skipped (while its stale empty twin would have been removed).
#[actix::test]
async fn refresh_delivers_a_log_named_in_upper_case() {
    let f = start();
    defer(&f.layout, "D1");
    log(f.dir.path(), "Old_Test", &["D1"], DAY);
    sweep_and_wait(&f, Sweep::Refresh).await;
    assert_eq!(size(f.dir.path(), "Old_Test"), Some(0));
    assert!(f.layout.path(INCOMING, "D1").exists());
    assert_eq!(f.stats.logs_refreshed.get(), 1);
}

#[actix::test]
async fn requests_during_a_sweep_do_not_start_a_second_one_at_once() {
    let f = start();
    for i in 0..200 {
        log(f.dir.path(), &format!("s{i}_test"), &["X1"], DAY);
    }
    for _ in 0..5 {
        f.janitor
            .send(StartSweep {
                sweep: Sweep::Refresh,
                cause: "request",
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (f.stats.running.get() > 0 || f.stats.runs.get() < 2) && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // The first runs; the four others coalesce into one queued sweep.
    assert_eq!(f.stats.coalesced.get(), 4);
    assert_eq!(f.stats.runs.get(), 2);
}
