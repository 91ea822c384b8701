//! A bound on the logfiles kept open across all writers.
//!
//! A writer keeps its file open between appends only while it holds a slot;
//! without one it opens, writes and closes (as flush(8) does for every add),
//! so 100,000 active sites never need 100,000 descriptors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Shared count of open logfiles, capped at `max`.
#[derive(Debug)]
pub struct OpenFileBudget {
    max: usize,
    open: AtomicUsize,
}

impl OpenFileBudget {
    /// A budget of `max` simultaneously open logfiles.
    pub fn new(max: usize) -> Arc<OpenFileBudget> {
        Arc::new(OpenFileBudget {
            max,
            open: AtomicUsize::new(0),
        })
    }

    /// Takes a slot if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Option<FileSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| FileSlot(Arc::clone(self)))
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One open-file slot; released when dropped.
#[derive(Debug)]
pub struct FileSlot(Arc<OpenFileBudget>);

impl Drop for FileSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_released() {
        let budget = OpenFileBudget::new(2);
        let a = budget.try_acquire();
        let b = budget.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(budget.try_acquire().is_none());
        drop(a);
        assert_eq!(budget.in_use(), 1);
        assert!(budget.try_acquire().is_some());
    }
}
