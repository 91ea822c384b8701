//! What the janitor does with one log in `flush/`: remove it, deliver it, or
//! leave it alone, from its size and time stamps.
//!
//! Mirrors the decisions of `flush_refresh_service()` in Postfix's
//! `src/flush/flush.c`, including its whole-second `time_t` arithmetic and
//! its strict comparisons. Pure functions: no file system.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The janitor's verdict on one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JanitorAction {
    /// Leave it alone.
    Skip,
    /// Empty and unchanged for longer than the purge time: remove it.
    Remove,
    /// Not empty and not read for longer than the refresh age: deliver it.
    Deliver,
}

/// Decides the fate of a log of `size` bytes.
///
/// An empty log is removed when `mtime + purge_age < now`, else skipped. A
/// non-empty log is delivered when `atime + refresh_age < now`, else
/// skipped. `refresh` passes `fast_flush_refresh_time` as `refresh_age`;
/// `purge` passes zero, which delivers every non-empty log read before the
/// current second, but not one read in this very second (`atime == now`),
/// exactly as flush(8) does. All times count in whole seconds.
pub fn decide(
    size: u64,
    atime: SystemTime,
    mtime: SystemTime,
    now: SystemTime,
    refresh_age: Duration,
    purge_age: Duration,
) -> JanitorAction {
    let now = unix_secs(now);
    if size == 0 {
        if unix_secs(mtime).saturating_add(secs(purge_age)) < now {
            JanitorAction::Remove
        } else {
            JanitorAction::Skip
        }
    } else if unix_secs(atime).saturating_add(secs(refresh_age)) < now {
        JanitorAction::Deliver
    } else {
        JanitorAction::Skip
    }
}

/// Whole seconds since the epoch, floored as `time_t` (negative before it).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before = e.duration();
            let s = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() > 0 {
                -s - 1
            } else {
                -s
            }
        }
    }
}

/// A configured age in whole seconds.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const DAY: u64 = 86400;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    const NOW: u64 = 1_700_000_000;

    fn refresh(size: u64, atime: SystemTime, mtime: SystemTime) -> JanitorAction {
        decide(
            size,
            atime,
            mtime,
            at(NOW, 500_000_000),
            Duration::from_secs(12 * HOUR),
            Duration::from_secs(7 * DAY),
        )
    }

    fn purge(size: u64, atime: SystemTime) -> JanitorAction {
        decide(
            size,
            atime,
            atime,
            at(NOW, 500_000_000),
            Duration::ZERO,
            Duration::from_secs(7 * DAY),
        )
    }

    #[test]
    fn empty_logs_are_removed_after_the_purge_time() {
        let old = at(NOW - 7 * DAY - 1, 0);
        assert_eq!(refresh(0, old, old), JanitorAction::Remove);
        // Exactly at the limit: mtime + purge == now is not older.
        let edge = at(NOW - 7 * DAY, 999_999_999);
        assert_eq!(refresh(0, edge, edge), JanitorAction::Skip);
        let recent = at(NOW - HOUR, 0);
        assert_eq!(refresh(0, recent, recent), JanitorAction::Skip);
        // An old atime does not matter for an empty log, only mtime.
        assert_eq!(refresh(0, old, recent), JanitorAction::Skip);
    }

    #[test]
    fn non_empty_logs_are_delivered_after_the_refresh_age() {
        let fresh = at(NOW, 0);
        let stale = at(NOW - 12 * HOUR - 1, 0);
        assert_eq!(refresh(10, stale, fresh), JanitorAction::Deliver);
        assert_eq!(
            refresh(10, at(NOW - 12 * HOUR, 0), fresh),
            JanitorAction::Skip
        );
        assert_eq!(refresh(10, at(NOW - HOUR, 0), fresh), JanitorAction::Skip);
        // A non-empty log is never removed, however old.
        let ancient = at(NOW - 365 * DAY, 0);
        assert_eq!(refresh(10, ancient, ancient), JanitorAction::Deliver);
    }

    #[test]
    fn purge_delivers_every_log_read_before_this_second() {
        assert_eq!(purge(10, at(NOW - 1, 999_999_999)), JanitorAction::Deliver);
        assert_eq!(purge(10, at(NOW - 3 * DAY, 0)), JanitorAction::Deliver);
        // Read in this very second: atime + 0 < now is false.
        assert_eq!(purge(10, at(NOW, 0)), JanitorAction::Skip);
        assert_eq!(purge(10, at(NOW, 900_000_000)), JanitorAction::Skip);
        // Time stamps in the future (clock stepped back) are skipped.
        assert_eq!(purge(10, at(NOW + 60, 0)), JanitorAction::Skip);
    }

    #[test]
    fn whole_seconds_decide() {
        // mtime a fraction of a second past the limit still counts as the
        // earlier second: only whole seconds are compared.
        let now = at(NOW, 999_999_999);
        let purge_age = Duration::from_secs(DAY);
        let m = at(NOW - DAY - 1, 999_999_999);
        assert_eq!(
            decide(0, m, m, now, Duration::ZERO, purge_age),
            JanitorAction::Remove
        );
        let m = at(NOW - DAY, 0);
        assert_eq!(
            decide(0, m, m, now, Duration::ZERO, purge_age),
            JanitorAction::Skip
        );
    }

    #[test]
    fn huge_ages_do_not_overflow() {
        let t = at(NOW, 0);
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(decide(0, t, t, t, huge, huge), JanitorAction::Skip);
        assert_eq!(decide(1, t, t, t, huge, huge), JanitorAction::Skip);
        let before_epoch = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(unix_secs(before_epoch), -1);
        assert_eq!(
            decide(1, before_epoch, before_epoch, t, Duration::ZERO, huge),
            JanitorAction::Deliver
        );
    }
}
