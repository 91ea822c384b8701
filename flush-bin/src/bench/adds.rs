//! The check of an `add` run: every ID sent is in its site's logfile, once,
//! and nothing else is.
//!
//! An `add` is answered OK only once its ID is in the file (flush(8)'s
//! `flush_add_path()` appends and closes before replying), so right after a
//! run the logs must hold exactly what [`Mix::request`](super::mix::Mix::request)
//! generated: request `i` put [`names::queue_id`]`(i)` in the log of site
//! `i mod S`.

use super::fixture::flush_log;
use super::names;
use std::collections::HashSet;
use std::path::Path;

/// Checks the logs under `queue` after `requests` adds over `sites` sites of
/// `domain`, starting from empty logs.
///
/// # Errors
/// The first log whose lines differ from what was sent, described.
pub fn verify_adds(queue: &Path, requests: u64, sites: u64, domain: &str) -> Result<(), String> {
    let sites = sites.max(1);
    let step = usize::try_from(sites).map_err(|_| "too many sites".to_string())?;
    for k in 0..sites.min(requests) {
        let site_path = names::site_path(k, domain);
        let mut expected: HashSet<String> =
            (k..requests).step_by(step).map(names::queue_id).collect();
        let lines = flush_log(queue, &site_path);
        if lines.len() != expected.len() {
            return Err(format!(
                "flush/{site_path}: {} lines, {} adds sent",
                lines.len(),
                expected.len()
            ));
        }
        for line in lines {
            if !expected.remove(&line) {
                return Err(format!(
                    "flush/{site_path}: unexpected or repeated line {line:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn accepts_exactly_what_was_sent() {
        let tmp = tempfile::tempdir().unwrap();
        let flush = tmp.path().join("flush");
        fs::create_dir(&flush).unwrap();
        // 7 adds over 3 sites: s0 gets 0, 3, 6; s1 gets 1, 4; s2 gets 2, 5.
        let mut logs = vec![String::new(); 3];
        for i in (0..7u64).rev() {
            logs[(i % 3) as usize] += &format!("{}\n", names::queue_id(i));
        }
        for (k, text) in logs.iter().enumerate() {
            fs::write(flush.join(names::site_path(k as u64, "b.test")), text).unwrap();
        }
        verify_adds(tmp.path(), 7, 3, "b.test").unwrap();
        // One more request than was logged: s0 misses one.
        assert!(verify_adds(tmp.path(), 10, 3, "b.test").is_err());
        // A repeated line instead of a missing one.
        let wrong = format!("{0}\n{0}\n", names::queue_id(1));
        fs::write(flush.join(names::site_path(1, "b.test")), wrong).unwrap();
        let err = verify_adds(tmp.path(), 7, 3, "b.test").unwrap_err();
        assert!(err.contains("s1_b_test"), "{err}");
    }
}
