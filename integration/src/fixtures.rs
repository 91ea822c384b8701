//! Queue fixtures for end-to-end tests: queue files placed as Postfix's
//! `src/global/mail_queue.c` hashes them (`hash_queue_depth = 1`, short and
//! long queue IDs, with the alphabet of `src/global/safe_ultostr.c`),
//! generators of valid queue IDs, the `public/qmgr` FIFO and a reader for it,
//! and a polling helper.

pub use flush_bin::bench::fixture::{flush_log, queue_ids};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Creates the queue subdirectories flushd works with.
pub fn make_queue_dir(queue: &Path) -> io::Result<()> {
    for sub in ["deferred", "incoming", "flush", "public"] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(queue.join(sub))?;
    }
    Ok(())
}

/// The alphabet of Postfix's long queue IDs (`safe_ultostr.c`): digits and
/// consonants, 52 characters; inode numbers use the first 51 (no `z`).
const SAFE_CHARS: &[u8] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// The hash key of a queue ID, as `mail_queue_dir()` computes it: a short ID
/// is its own key; for a long ID (time, `z`, inode) it is the 4-character
/// base-52 microseconds field before the last `z`, printed as 5 upper-case hex
/// digits (0 if it does not decode).
pub fn hash_key(id: &str) -> String {
    let bytes = id.as_bytes();
    match bytes.iter().rposition(|&b| b == b'z') {
        Some(z) if z >= 10 => {
            let usec = bytes[z - 4..z].iter().try_fold(0u64, |acc, &c| {
                SAFE_CHARS
                    .iter()
                    .position(|&s| s == c)
                    .map(|d| acc * 52 + d as u64)
            });
            format!("{:05X}", usec.unwrap_or(0))
        }
        _ => id.to_string(),
    }
}

/// `<queue>/<queue_name>/<h>/<id>`: the path of a queue file at the default
/// `hash_queue_depth` of 1, for a hashed queue (`deferred`, `defer`).
pub fn hashed_path(queue: &Path, queue_name: &str, id: &str) -> PathBuf {
    let key = hash_key(id);
    let first = key.get(..1).unwrap_or("0");
    queue.join(queue_name).join(first).join(id)
}

/// Creates a complete (mode 0700) queue file `deferred/<h>/<id>`, hashed as
/// Postfix does at `hash_queue_depth = 1`, and returns its path.
/// Panics on file-system errors.
pub fn make_deferred(queue: &Path, id: &str) -> PathBuf {
    let path = hashed_path(queue, "deferred", id);
    make_queue_file(&path, 0o700);
    path
}

/// Creates a queue file at `path` with `mode` (creating its directories).
/// Panics on file-system errors.
pub fn make_queue_file(path: &Path, mode: u32) {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, b"test queue file\n")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Where queue file `id` is now: `Some("deferred")`, `Some("incoming")`, ...
/// (searching deferred, incoming, active, hold, corrupt), or `None`.
pub fn find_queue_file(queue: &Path, id: &str) -> Option<&'static str> {
    ["deferred", "incoming", "active", "hold", "corrupt"]
        .into_iter()
        .find(|name| queue_ids(queue, name).iter().any(|x| x == id))
}

/// A valid short (upper-case hex) queue ID, distinct for each `n`, spread over
/// the 16 hash directories: 5 hex digits of "microseconds" (a bijection of the
/// low 20 bits of `n`) followed by an "inode number" made from the rest.
pub fn short_queue_id(n: u32) -> String {
    // Multiplying by an odd number is a bijection modulo 2^20.
    let usec = n.wrapping_mul(0x0009_E379) & 0x000F_FFFF;
    let inode = (n >> 20) + 0x1A2B;
    format!("{usec:05X}{inode:X}")
}

/// A valid long queue ID (`enable_long_queue_ids`), distinct for each `n`:
/// base-52 seconds (6 characters), base-52 microseconds (4), `z`, base-51 inode.
pub fn long_queue_id(n: u32) -> String {
    fn encode(mut value: u64, base: u64, pad: usize) -> String {
        let mut digits = Vec::new();
        while value > 0 || digits.len() < pad.max(1) {
            digits.push(SAFE_CHARS[(value % base) as usize]);
            value /= base;
        }
        digits.reverse();
        String::from_utf8_lossy(&digits).into_owned()
    }
    let seconds = 1_700_000_000 + u64::from(n / 1_000_000);
    let usec = u64::from(n.wrapping_mul(7919) % 1_000_000);
    let inode = 100_000 + u64::from(n);
    format!(
        "{}{}z{}",
        encode(seconds, 52, 6),
        encode(usec, 52, 4),
        encode(inode, 51, 0)
    )
}

// ---------------------------------------------------------------------------
// The qmgr FIFO

/// Creates a FIFO at `path` (mode 0622, as Postfix's `public/qmgr`).
/// Panics on errors.
pub fn make_fifo(path: &Path) {
    use rustix::fs::{FileType, Mode, CWD};
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o622), 0)
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// A reader kept open on a FIFO, non-blocking, so that a writer opening it
/// non-blocking (as Postfix's triggers do) finds a reader, and the test can
/// collect what was written.
pub struct FifoReader {
    file: fs::File,
    seen: Vec<u8>,
}

impl FifoReader {
    /// Opens `path` for reading without blocking.
    ///
    /// # Errors
    /// The `open(2)` error.
    pub fn open(path: &Path) -> io::Result<FifoReader> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(FifoReader {
            file: fs::File::from(fd),
            seen: Vec::new(),
        })
    }

    /// Creates `<queue>/public/qmgr` as a FIFO and opens a reader on it.
    /// Panics on errors.
    pub fn qmgr(queue: &Path) -> FifoReader {
        let path = queue.join("public/qmgr");
        make_fifo(&path);
        FifoReader::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    /// Reads what is in the FIFO now, appends it to everything seen so far,
    /// and returns the new bytes.
    pub fn read_available(&mut self) -> Vec<u8> {
        let mut new = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.file.read(&mut buf) {
                // 0: no writer has it open right now; nothing more to read.
                Ok(0) => break,
                Ok(n) => new.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: drained
            }
        }
        self.seen.extend_from_slice(&new);
        new
    }

    /// Every byte read so far.
    pub fn seen(&self) -> &[u8] {
        &self.seen
    }

    /// Polls until everything seen so far satisfies `done`, or `timeout`
    /// passes; returns everything seen.
    pub fn collect_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            self.read_available();
            if done(&self.seen) || Instant::now() >= deadline {
                return self.seen.clone();
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---------------------------------------------------------------------------
// Waiting

/// Polls `cond` every 10 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::io::Write;

    #[test]
    fn short_ids_are_valid_distinct_and_spread() {
        let ids: Vec<String> = (0..5000).map(short_queue_id).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert!(id.len() >= 6 && id.len() <= 255, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "{id}"
            );
        }
        let dirs: HashSet<char> = ids.iter().filter_map(|id| id.chars().next()).collect();
        assert_eq!(dirs.len(), 16);
        // Distinct across the 2^20 boundary too.
        assert_ne!(short_queue_id(5), short_queue_id(5 + (1 << 20)));
    }

    #[test]
    fn short_id_hashes_by_first_character() {
        let q = Path::new("/q");
        assert_eq!(
            hashed_path(q, "deferred", "4F2A81B3C"),
            Path::new("/q/deferred/4/4F2A81B3C")
        );
    }

    #[test]
    fn long_id_hashes_by_hex_microseconds() {
        // Microseconds field "bQm" padded to "0bQm": in the base-52 alphabet
        // b = 31, Q = 22, m = 40, so 31 * 52^2 + 22 * 52 + 40 = 85008 = 0x14C10.
        assert_eq!(hash_key("4Vhc7M0bQmzJ3kN"), "14C10");
        assert_eq!(
            hashed_path(Path::new("/q"), "deferred", "4Vhc7M0bQmzJ3kN"),
            Path::new("/q/deferred/1/4Vhc7M0bQmzJ3kN")
        );
        // A 'z' too close to the start is not a long ID: hashed as itself.
        assert_eq!(hash_key("ABCz123"), "ABCz123");
    }

    #[test]
    fn long_ids_round_trip_their_microseconds() {
        for n in [0u32, 1, 77, 123_456, 999_999] {
            let id = long_queue_id(n);
            let z = id.rfind('z').unwrap();
            assert!(z >= 10, "{id}");
            let usec = u64::from(n.wrapping_mul(7919) % 1_000_000);
            assert_eq!(hash_key(&id), format!("{usec:05X}"), "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn fixtures_build_a_queue() {
        let tmp = tempfile::tempdir().unwrap();
        make_queue_dir(tmp.path()).unwrap();
        let id = short_queue_id(42);
        let path = make_deferred(tmp.path(), &id);
        assert!(path.starts_with(tmp.path().join("deferred")));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(queue_ids(tmp.path(), "deferred"), vec![id.clone()]);
        assert_eq!(find_queue_file(tmp.path(), &id), Some("deferred"));
        assert_eq!(find_queue_file(tmp.path(), "ABCDEF"), None);
    }

    #[test]
    fn fifo_reader_collects_what_writers_send() {
        let tmp = tempfile::tempdir().unwrap();
        make_queue_dir(tmp.path()).unwrap();
        let mut reader = FifoReader::qmgr(tmp.path());
        let path = tmp.path().join("public/qmgr");
        // A non-blocking writer succeeds only because the reader is open.
        for byte in [b"F", b"I"] {
            let fd = rustix::fs::open(
                &path,
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            fs::File::from(fd).write_all(byte).unwrap();
        }
        let seen = reader.collect_until(Duration::from_secs(2), |b| b.len() >= 2);
        assert_eq!(seen, b"FI");
    }
}
