//! Has main.cf, or a file the domain list reads, changed since it was read?
//!
//! flushd's own addition: Postfix daemons re-read their configuration only
//! when `postfix reload` restarts them. A file counts as changed when its
//! device, inode, size or modification time differ, or when it appeared or
//! disappeared.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What `stat` said about one file (`None`: it could not be stat'ed).
type State = Option<(u64, u64, u64, i64, i64)>;

/// The files behind a loaded list, as they were when it was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    files: Vec<(PathBuf, State)>,
    stale: bool,
}

impl Watched {
    /// Stats each path now. A file modified between `loaded_at` (the moment
    /// reading began) and now may have been read half-written, so the set
    /// reports itself changed at the next check, which reloads again. A
    /// modification time in the future (a clock stepped back, a file copied
    /// with its times) is not a write that raced the load: counting it would
    /// reload at every check until the clock caught up.
    pub fn take(paths: impl IntoIterator<Item = PathBuf>, loaded_at: SystemTime) -> Watched {
        let taken_at = SystemTime::now();
        let mut stale = false;
        let files = paths
            .into_iter()
            .map(|path| {
                let meta = std::fs::metadata(&path).ok();
                if let Some(modified) = meta.as_ref().and_then(|m| m.modified().ok()) {
                    stale |= (loaded_at..=taken_at).contains(&modified);
                }
                (path, meta.as_ref().map(state))
            })
            .collect();
        Watched { files, stale }
    }

    /// True when any file differs from what [`Watched::take`] saw.
    pub fn changed(&self) -> bool {
        self.stale
            || self
                .files
                .iter()
                .any(|(path, state)| state_of(path) != *state)
    }

    /// The files watched.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

fn state_of(path: &Path) -> State {
    std::fs::metadata(path).ok().as_ref().map(state)
}

fn state(m: &std::fs::Metadata) -> (u64, u64, u64, i64, i64) {
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn earlier() -> SystemTime {
        SystemTime::now() - Duration::from_secs(3600)
    }

    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    #[test]
    fn sees_edits_replacements_and_appearances() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "one\n").unwrap();
        let w = Watched::take([a.clone(), b.clone()], later());
        assert!(!w.changed());
        assert_eq!(w.paths().count(), 2);

        std::fs::write(&a, "one two\n").unwrap();
        assert!(w.changed(), "size change");

        let w = Watched::take([a.clone(), b.clone()], later());
        std::fs::write(&b, "new\n").unwrap();
        assert!(w.changed(), "file appeared");

        let w = Watched::take([a.clone(), b.clone()], later());
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "one two\n").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert!(w.changed(), "replaced by rename");

        let w = Watched::take([a.clone(), b.clone()], later());
        std::fs::remove_file(&b).unwrap();
        assert!(w.changed(), "file removed");
    }

    #[test]
    fn a_file_written_during_the_load_forces_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "x\n").unwrap();
        assert!(Watched::take([a.clone()], earlier()).changed());
        assert!(!Watched::take([a], later()).changed());
    }

    #[test]
    fn a_modification_time_in_the_future_does_not_reload_forever() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "x\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(later())
            .unwrap();
        assert!(!Watched::take([a], earlier()).changed());
    }
}
