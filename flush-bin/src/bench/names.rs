//! The benchmark's destinations and queue IDs.
//!
//! Sites are `s<k>.<domain>`, all under one parent domain listed in
//! `fast_flush_domains` (with `parent_domain_matches_subdomains` on, as by
//! default), so the domain list stays one entry long however many sites a run
//! uses. Queue IDs are Postfix's short form (`src/global/mail_queue.c`,
//! `get_file_id()`): five upper-case hex digits of "microseconds" followed by
//! the hex "inode number", so they spread over the 16 hash directories of
//! `hash_queue_depth = 1` as real ones do.
//!
//! Both are pure functions of a number, so a run's work can be checked
//! afterwards without remembering what was sent.

/// The parent domain of every benchmark site.
pub const DEFAULT_DOMAIN: &str = "bench.test";

/// The `k`-th site under `domain`: `s<k>.<domain>`.
///
/// ```
/// assert_eq!(flush_bin::bench::names::site(7, "bench.test"), "s7.bench.test");
/// ```
pub fn site(k: u64, domain: &str) -> String {
    format!("s{k}.{domain}")
}

/// The logfile name of [`site`]`(k, domain)`: lower-cased, every character
/// that is not a letter or digit replaced by `_` (`flush_site_to_path()`).
pub fn site_path(k: u64, domain: &str) -> String {
    site(k, domain)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The `n`-th queue ID: distinct for every `n` below 2^32 (the low 20 bits
/// go through a bijection into the "microseconds", the rest into the
/// "inode"), valid for Postfix's `mail_queue_id_ok()` and for flushd.
pub fn queue_id(n: u64) -> String {
    // Multiplying by an odd number is a bijection modulo 2^20; it spreads
    // consecutive numbers over the hash directories.
    let usec = (n & 0xF_FFFF).wrapping_mul(0x0009_E379) & 0xF_FFFF;
    let inode = (n >> 20) + 0x1_0000;
    format!("{usec:05X}{inode:X}")
}

/// The hash directory of a short queue ID at `hash_queue_depth = 1`: its
/// first character.
pub fn hash_dir(queue_id: &str) -> &str {
    queue_id.get(..1).unwrap_or("0")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sites_and_their_logfile_names() {
        assert_eq!(site(0, "bench.test"), "s0.bench.test");
        assert_eq!(site_path(12, "Bench.Test"), "s12_bench_test");
    }

    #[test]
    fn queue_ids_are_distinct_valid_and_spread() {
        let ids: Vec<String> = (0..200_000).map(queue_id).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids[..1000] {
            flush_proto::validate_queue_id(id).unwrap();
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        }
        let dirs: HashSet<&str> = ids[..64].iter().map(|id| hash_dir(id)).collect();
        assert_eq!(dirs.len(), 16, "{dirs:?}");
        // Numbers beyond 2^20 differ in the inode part.
        assert_ne!(queue_id(5), queue_id(5 + (1 << 20)));
    }
}
