//! Where things live under `$queue_directory`: queue files in (possibly
//! hashed) queue directories, the flush logs, and the queue manager's trigger.
//!
//! Mirrors Postfix's `mail_queue_dir()` and `mail_queue_path()`
//! (`src/global/mail_queue.c`) with `hash_queue_names` and `hash_queue_depth`.

use super::hash::hash_dirs;
use std::path::{Path, PathBuf};

/// The deferred queue: mail waiting for a retry.
pub const DEFERRED: &str = "deferred";
/// The incoming queue: mail the queue manager picks up next.
pub const INCOMING: &str = "incoming";
/// The fast flush logfiles, one per destination.
pub const FLUSH: &str = "flush";

/// The paths of one queue directory.
#[derive(Debug, Clone)]
pub struct QueueLayout {
    root: PathBuf,
    /// Lower-cased names of the hashed queues.
    hashed: Vec<String>,
    depth: u32,
}

impl QueueLayout {
    /// A layout for the queue directory `root`, hashing the queues named in
    /// `hash_queue_names` (compared case-insensitively, as Postfix does) to
    /// `depth` levels.
    pub fn new(root: impl Into<PathBuf>, hash_queue_names: &[String], depth: u32) -> QueueLayout {
        QueueLayout {
            root: root.into(),
            hashed: hash_queue_names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
            depth,
        }
    }

    /// The queue directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `queue` is hashed into subdirectories.
    pub fn is_hashed(&self, queue: &str) -> bool {
        self.hashed.iter().any(|n| n.eq_ignore_ascii_case(queue))
    }

    /// The directory holding `queue_id` in `queue`, relative to the queue
    /// directory, with a trailing `/`: `deferred/A/` or `incoming/`.
    pub fn relative_dir(&self, queue: &str, queue_id: &str) -> String {
        let mut dir = format!("{queue}/");
        if self.is_hashed(queue) {
            dir.push_str(&hash_dirs(queue_id, self.depth));
        }
        dir
    }

    /// The directory holding `queue_id` in `queue`: `$root/deferred/A`.
    pub fn dir(&self, queue: &str, queue_id: &str) -> PathBuf {
        self.root.join(self.relative_dir(queue, queue_id))
    }

    /// The path of `queue_id` in `queue`, relative to the queue directory:
    /// `deferred/A/ABC123`.
    pub fn relative_path(&self, queue: &str, queue_id: &str) -> String {
        let mut rel = self.relative_dir(queue, queue_id);
        rel.push_str(queue_id);
        rel
    }

    /// The path of `queue_id` in `queue`: `$root/deferred/A/ABC123`.
    pub fn path(&self, queue: &str, queue_id: &str) -> PathBuf {
        self.root.join(self.relative_path(queue, queue_id))
    }

    /// The directory of the flush logs, `$root/flush`: never hashed (the
    /// configuration refuses `flush` in `hash_queue_names`).
    pub fn flush_dir(&self) -> PathBuf {
        self.root.join(FLUSH)
    }

    /// The queue manager's trigger, `$root/public/qmgr` (a FIFO or a socket).
    pub fn qmgr_path(&self) -> PathBuf {
        self.root.join("public").join("qmgr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(names: &[&str], depth: u32) -> QueueLayout {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        QueueLayout::new("/q", &names, depth)
    }

    #[test]
    fn default_layout_hashes_deferred_only() {
        let l = layout(&["deferred", "defer"], 1);
        assert_eq!(
            l.path(DEFERRED, "ABC123"),
            Path::new("/q/deferred/A/ABC123")
        );
        assert_eq!(l.path(INCOMING, "ABC123"), Path::new("/q/incoming/ABC123"));
        assert_eq!(l.dir(DEFERRED, "ABC123"), Path::new("/q/deferred/A/"));
        assert_eq!(l.dir(INCOMING, "ABC123"), Path::new("/q/incoming/"));
        assert_eq!(l.flush_dir(), Path::new("/q/flush"));
        assert_eq!(l.qmgr_path(), Path::new("/q/public/qmgr"));
    }

    #[test]
    fn names_compare_case_insensitively() {
        let l = layout(&[" Deferred", "INCOMING"], 2);
        assert!(l.is_hashed("deferred"));
        assert!(l.is_hashed("Incoming"));
        assert!(!l.is_hashed("hold"));
        assert_eq!(l.relative_dir(INCOMING, "ABC123"), "incoming/A/B/");
        assert_eq!(l.relative_path(INCOMING, "ABC123"), "incoming/A/B/ABC123");
    }

    #[test]
    fn long_ids_use_the_microseconds_directory() {
        let l = layout(&["deferred"], 1);
        // Microseconds "0003" -> 00003 -> directory 0.
        assert_eq!(
            l.path(DEFERRED, "4ZkQ5d0003zBcdF"),
            Path::new("/q/deferred/0/4ZkQ5d0003zBcdF")
        );
    }
}
