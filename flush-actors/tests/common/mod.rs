//! Set-up shared by the actor tests: a queue directory and the writer side
//! (a real queue trigger, a registry, its writer threads).

use actix::prelude::*;
use flush_actors::queue::QueueLayout;
use flush_actors::stats::Tracked;
use flush_actors::trigger::{self, TriggerStats};
use flush_actors::writer::{OpenFileBudget, WriterLimits, WriterRegistry, WriterStats};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Creates the queue directories under `queue` and returns its layout
/// (deferred/ hashed one level deep, as Postfix's default).
pub fn queue_layout(queue: &Path) -> QueueLayout {
    for d in ["deferred", "incoming", "flush", "public"] {
        fs::create_dir_all(queue.join(d)).unwrap();
    }
    QueueLayout::new(queue, &["deferred".to_string()], 1)
}

/// A registry over `layout` with a real queue trigger and one writer
/// thread (kept alive by the returned arbiter): 10 open logs, 100
/// writers, max_idle 100 s.
pub fn registry(layout: &QueueLayout) -> (Tracked<WriterRegistry, WriterStats>, Arbiter) {
    let trigger_stats = Arc::new(TriggerStats::default());
    let trigger = Tracked::new(
        trigger::start(layout.clone(), Arc::clone(&trigger_stats)).unwrap(),
        trigger_stats,
        |s: &TriggerStats| &s.mailbox,
    );
    let arbiter = Arbiter::new();
    let writer_stats = Arc::new(WriterStats::default());
    let registry = WriterRegistry::new(
        layout.flush_dir(),
        vec![arbiter.handle()],
        trigger,
        OpenFileBudget::new(10),
        WriterLimits {
            max_idle: Duration::from_secs(100),
            max_writers: 100,
        },
        Arc::clone(&writer_stats),
    )
    .start();
    let registry = Tracked::new(registry, writer_stats, |s: &WriterStats| &s.registry);
    (registry, arbiter)
}
