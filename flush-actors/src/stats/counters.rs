//! Lock-free counters every actor keeps, so that `stats` never waits on a busy actor.

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open files, live writers, connections).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn decr(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Raises the value to `v` if it is lower (a high-water mark).
    pub fn raise_to(&self, v: i64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

/// The counters every actor kind reports: what it handled, what waits in its
/// mailbox, and what went wrong.
///
/// actix does not expose mailbox lengths, so senders call [`Mailbox::queued`]
/// before sending and the handler calls [`Mailbox::handled`] (or
/// [`Mailbox::dropped`] when a message never reaches a handler).
#[derive(Debug, Default)]
pub struct Mailbox {
    handled: Counter,
    waiting: Gauge,
    /// The most that ever waited at once.
    peak: Gauge,
    errors: Counter,
}

impl Mailbox {
    /// A message is on its way to the actor.
    pub fn queued(&self) {
        let waiting = self.waiting.0.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.raise_to(waiting);
    }
    /// The actor took a message out of its mailbox.
    pub fn handled(&self) {
        self.waiting.decr();
        self.handled.incr();
    }
    /// A queued message was lost (mailbox closed or full).
    pub fn dropped(&self) {
        self.waiting.decr();
        self.errors.incr();
    }
    /// Something went wrong while handling a message.
    pub fn error(&self) {
        self.errors.incr();
    }
    /// Messages handled so far.
    pub fn handled_count(&self) -> u64 {
        self.handled.get()
    }
    /// Errors so far.
    pub fn error_count(&self) -> u64 {
        self.errors.get()
    }
    /// The common fields as JSON: `handled`, `mailbox`, `mailbox_peak`,
    /// `errors`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("handled".into(), self.handled.get().into());
        m.insert("mailbox".into(), self.waiting.get().max(0).into());
        m.insert("mailbox_peak".into(), self.peak.get().max(0).into());
        m.insert("errors".into(), self.errors.get().into());
        m
    }
}

/// An actor kind's section of the stats dump.
pub trait Report: Send + Sync {
    /// The section as a JSON object: at least `handled`, `mailbox`, `errors`.
    fn report(&self) -> Value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_tracks_waiting_messages() {
        let m = Mailbox::default();
        m.queued();
        m.queued();
        m.handled();
        m.queued();
        m.dropped();
        let j = m.to_json();
        assert_eq!(j["handled"], 1);
        assert_eq!(j["mailbox"], 1);
        assert_eq!(j["errors"], 1);
    }
}
