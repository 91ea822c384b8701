//! Telling the queue manager, without letting a dead one slow us down or
//! flood the log, and sharing one `I` among deliveries that end together.
//!
//! flush(8) sends `F` (`QMGR_REQ_FLUSH_DEAD`) before moving a site's files
//! and `I` (`QMGR_REQ_SCAN_INCOMING`) after every delivery that read a line
//! (`flush_send_path()`, `flush_send_file_service()` in `src/flush/flush.c`).
//! Here `F` is still sent by the worker itself, before its moves; `I` goes
//! through one notifier thread. A worker asks for a scan only after its moves
//! are done, and the notifier sends each `I` after taking the requests it
//! covers, so every `I` follows the moves it stands for and no delivery is
//! left without one.

use super::TriggerStats;
use crate::queue::{send_trigger, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT};
use crate::stats::Counter;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long the notifier waits, after the first scan request, for others to
/// share its `I`. Short next to a delivery; long enough for a burst.
pub const SCAN_COALESCE_WINDOW: Duration = Duration::from_millis(5);
/// Scan requests waiting for the notifier at most; one more is already
/// covered by those.
const SCAN_QUEUE_CAPACITY: usize = 64;
/// At most one warning about an unreachable queue manager per this period.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Lets one warning through per period and counts the ones held back.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimiter {
    pub(crate) fn new(every: Duration) -> WarnLimiter {
        WarnLimiter {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` if a warning may be logged now, `n` being how many were held
    /// back since the last one; `None` to stay quiet.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held) = &mut *state;
        match last {
            Some(t) if now.saturating_duration_since(*t) < self.every => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

/// The queue manager's trigger: sends a request, counts the outcome, and
/// warns (rate-limited) when nobody listens. Never fails the caller.
#[derive(Debug)]
pub(crate) struct Qmgr {
    path: PathBuf,
    stats: Arc<TriggerStats>,
    warnings: WarnLimiter,
}

impl Qmgr {
    pub(crate) fn new(path: PathBuf, stats: Arc<TriggerStats>) -> Qmgr {
        Qmgr {
            path,
            stats,
            warnings: WarnLimiter::new(WARN_EVERY),
        }
    }

    /// Sends `request`; returns whether it went out.
    pub(crate) fn send(&self, request: &[u8]) -> bool {
        match send_trigger(&self.path, request, TRIGGER_TIMEOUT) {
            Ok(()) => {
                self.stats.triggers_sent.incr();
                true
            }
            Err(e) => {
                self.stats.triggers_failed.incr();
                if let Some(held) = self.warnings.allow(Instant::now()) {
                    let quiet = if held > 0 {
                        format!(" ({held} more since the last warning)")
                    } else {
                        String::new()
                    };
                    log::warn!(
                        "cannot send {} to the queue manager at {}: {e}{quiet}",
                        String::from_utf8_lossy(request),
                        self.path.display(),
                    );
                }
                false
            }
        }
    }
}

/// A worker's handle for asking the notifier for an `I`.
#[derive(Debug, Clone)]
pub(crate) struct ScanRequests {
    /// `None` if the notifier thread could not be started.
    tx: Option<Sender<()>>,
    qmgr: Arc<Qmgr>,
}

impl ScanRequests {
    /// Asks for an `I`; call it only once the moves it covers are done.
    pub(crate) fn request(&self) {
        let Some(tx) = &self.tx else {
            self.qmgr.send(TRIGGER_SCAN_INCOMING);
            return;
        };
        match tx.try_send(()) {
            Ok(()) => {}
            // Requests are waiting: the `I` sent after them covers us too.
            Err(TrySendError::Full(())) => self.qmgr.stats.triggers_coalesced.incr(),
            // No notifier any more: send it ourselves rather than lose it.
            Err(TrySendError::Disconnected(())) => {
                self.qmgr.send(TRIGGER_SCAN_INCOMING);
            }
        }
    }
}

/// Starts the notifier thread. It ends when every [`ScanRequests`] is gone.
/// If the thread cannot start, workers send their `I`s themselves.
pub(crate) fn start_notifier(qmgr: Arc<Qmgr>) -> ScanRequests {
    let (tx, rx) = crossbeam_channel::bounded(SCAN_QUEUE_CAPACITY);
    let thread_qmgr = Arc::clone(&qmgr);
    let spawned = thread::Builder::new()
        .name("flushd-qmgr-notify".into())
        .spawn(move || {
            let coalesced = &thread_qmgr.stats.triggers_coalesced;
            run_notifier(&rx, SCAN_COALESCE_WINDOW, coalesced, || {
                thread_qmgr.send(TRIGGER_SCAN_INCOMING);
            });
        });
    match spawned {
        Ok(_) => ScanRequests { tx: Some(tx), qmgr },
        Err(e) => {
            log::error!("cannot start the queue manager notifier thread: {e}; triggering directly");
            ScanRequests { tx: None, qmgr }
        }
    }
}

/// The notifier loop: take a request, gather the others that arrive within
/// `window` (their moves are done too), then `send` once for all of them.
/// Returns when the channel is closed and drained.
fn run_notifier(rx: &Receiver<()>, window: Duration, coalesced: &Counter, mut send: impl FnMut()) {
    while rx.recv().is_ok() {
        let deadline = Instant::now() + window;
        let mut extra = 0u64;
        loop {
            extra += rx.try_iter().count() as u64;
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(()) => extra += 1,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        coalesced.add(extra);
        send();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn limiter_allows_one_warning_per_period() {
        let l = WarnLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(59)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(60)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn queued_requests_share_one_send() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        for _ in 0..5 {
            tx.send(()).unwrap();
        }
        drop(tx);
        let coalesced = Counter::default();
        let mut sends = 0;
        run_notifier(&rx, Duration::from_millis(1), &coalesced, || sends += 1);
        assert_eq!(sends, 1);
        assert_eq!(coalesced.get(), 4);
    }

    #[test]
    fn every_send_follows_the_work_it_covers() {
        // Producers finish a "move", then ask; each send records how many
        // moves were done when it went out. The last send must see them all.
        let (tx, rx) = crossbeam_channel::bounded(4);
        let moves = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..4)
            .map(|_| {
                let tx = tx.clone();
                let moves = Arc::clone(&moves);
                thread::spawn(move || {
                    for _ in 0..250 {
                        moves.fetch_add(1, Ordering::SeqCst);
                        // A full queue means a pending request covers this one.
                        let _ = tx.try_send(());
                    }
                })
            })
            .collect();
        drop(tx);
        let coalesced = Counter::default();
        let mut seen_at_send = Vec::new();
        let notifier_moves = Arc::clone(&moves);
        let notifier = thread::spawn(move || {
            run_notifier(&rx, Duration::from_micros(200), &coalesced, || {
                seen_at_send.push(notifier_moves.load(Ordering::SeqCst));
            });
            seen_at_send
        });
        for p in producers {
            p.join().unwrap();
        }
        let seen = notifier.join().unwrap();
        assert!(!seen.is_empty());
        assert!(seen.len() < 1000, "{} sends for 1000 requests", seen.len());
        assert_eq!(seen.last().copied(), Some(1000));
    }

    #[test]
    fn without_notifier_requests_are_sent_directly() {
        let tmp = tempfile::tempdir().unwrap();
        let stats = Arc::new(TriggerStats::default());
        let qmgr = Arc::new(Qmgr::new(tmp.path().join("qmgr"), Arc::clone(&stats)));
        let scans = ScanRequests { tx: None, qmgr };
        scans.request();
        assert_eq!(stats.triggers_failed.get(), 1);
    }
}
