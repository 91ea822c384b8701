//! The gateway's batcher with a real matcher, registry and queue trigger:
//! a burst longer than one batch still reaches the actors in order.
#![allow(clippy::unwrap_used)]

mod common;

use actix::prelude::*;
use flush_actors::config::Config;
use flush_actors::gateway::{AddBatcher, MAX_BATCH};
use flush_actors::matcher::{DomainMatcher, MatcherStats};
use flush_actors::queue::layout::{DEFERRED, INCOMING};
use flush_actors::stats::Tracked;
use flush_proto::Status;
use futures_util::future::join_all;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// An add pipelined before a send_site of the same site is delivered by
/// it, also when the add fills a batch and the send_site starts the next
/// one in the same turn of the thread.
#[actix::test]
async fn a_send_site_after_a_full_batch_delivers_its_adds() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let layout = common::queue_layout(&queue);
    fs::write(
        dir.path().join("main.cf"),
        format!(
            "queue_directory = {}\nrelay_domains = relay.test\n",
            queue.display()
        ),
    )
    .unwrap();
    let config = Config::load(dir.path(), &[]).unwrap();
    let matcher_stats = Arc::new(MatcherStats::default());
    let matcher = Tracked::new(
        DomainMatcher::new(&config, Arc::clone(&matcher_stats))
            .unwrap()
            .start(),
        matcher_stats,
        |s: &MatcherStats| &s.mailbox,
    );
    let (registry, _arbiter) = common::registry(&layout);
    let batcher = AddBatcher::new(matcher, registry);

    // The batch's last add is the one queue file of s.relay.test.
    let deferred = layout.path(DEFERRED, "LAST1");
    fs::create_dir_all(deferred.parent().unwrap()).unwrap();
    fs::write(&deferred, b"queue file").unwrap();
    fs::set_permissions(&deferred, fs::Permissions::from_mode(0o700)).unwrap();
    let mut adds: Vec<_> = (1..MAX_BATCH)
        .map(|n| batcher.add("other.relay.test".into(), format!("ID{n}")))
        .collect();
    adds.push(batcher.add("s.relay.test".into(), "LAST1".into()));
    // All queued in one turn: the first poll of each queues it.
    let (added, sent) =
        futures_util::join!(join_all(adds), batcher.send_site("s.relay.test".into()));
    assert!(added.iter().all(|reply| reply.status == Status::Ok));
    assert_eq!(sent.status, Status::Ok, "{sent:?}");
    assert_eq!(sent.detail, "1 queued", "{sent:?}");
    assert!(layout.path(INCOMING, "LAST1").exists());
}
