//! The hash subdirectory of a queue file: which `X/Y/` a queue ID lives under
//! in a hashed queue such as `deferred/`.
//!
//! Mirrors Postfix's `dir_forest()` (`src/util/dir_forest.c`), the long-ID
//! rule of `mail_queue_dir()` (`src/global/mail_queue.c`, the `MQID_*` macros
//! of `mail_queue.h`) and the base-52 decoder `safe_strtoul()`
//! (`src/global/safe_ultostr.c`). Pure functions: no file system.

use std::borrow::Cow;

/// The "safe" alphabet of long queue IDs: digits, then upper and lower case
/// letters without vowels. A character's value is its index.
const SAFE_ALPHABET: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// Base of the microseconds field of a long queue ID.
const USEC_BASE: u64 = 52;
/// Width of the microseconds field of a long queue ID (exactly four characters).
const USEC_LEN: usize = 4;
/// Minimum width of the time part (six or more characters of seconds, four of
/// microseconds) before the separator.
const TIME_LEN: usize = 10;
/// Separates the time part of a long queue ID from its inode number.
const INODE_SEPARATOR: u8 = b'z';

/// The hash directories of `queue_id` to `depth` levels, each followed by `/`:
/// `hash_dirs("3F2A41C0B1", 2)` is `"3/F/"`.
///
/// A short queue ID (upper-case hex) is hashed by its leading characters; a
/// long one (see [`long_id_separator`]) by its microseconds field converted
/// to five upper-case hex digits, so both forms of the same microsecond land
/// in the same directory. An ID shorter than `depth` is padded with `_`.
///
/// Meant for validated queue IDs. Postfix aborts on a character that is not
/// safe in a path; this function never panics and writes `_` for such a
/// character instead, so the result can never leave the queue directory.
/// A `depth` of 0 (which Postfix refuses) gives the empty string.
pub fn hash_dirs(queue_id: &str, depth: u32) -> String {
    let key = hash_key(queue_id);
    let mut chars = key.chars();
    let mut out = String::with_capacity(2 * depth as usize);
    for _ in 0..depth {
        let c = match chars.next() {
            Some(c) if c.is_ascii_graphic() && c != '.' && c != '/' => c,
            _ => '_',
        };
        out.push(c);
        out.push('/');
    }
    out
}

/// The string whose leading characters name the hash directories.
fn hash_key(queue_id: &str) -> Cow<'_, str> {
    match long_id_separator(queue_id) {
        Some(z) => {
            // The four bytes before the separator; z >= TIME_LEN > USEC_LEN.
            let field = &queue_id.as_bytes()[z - USEC_LEN..z];
            // A field that does not decode counts as 0, as Postfix does.
            let usec = decode_safe(field, USEC_BASE).unwrap_or(0);
            Cow::Owned(format!("{usec:05X}"))
        }
        None => Cow::Borrowed(queue_id),
    }
}

/// Where the `z` separating time and inode sits in a long queue ID, or `None`
/// for a short one: the last `z`, and only if at least ten characters of
/// time precede it.
pub fn long_id_separator(queue_id: &str) -> Option<usize> {
    queue_id
        .bytes()
        .rposition(|b| b == INODE_SEPARATOR)
        .filter(|&z| z >= TIME_LEN)
}

/// Decodes a number written in the safe alphabet in `base` (2..=52).
///
/// Like `safe_strtoul()` as the queue-ID code uses it: leading white space is
/// skipped; every remaining byte must be a digit of `base` (`None` otherwise);
/// no digits at all is 0; overflow is `None`.
fn decode_safe(field: &[u8], base: u64) -> Option<u64> {
    let start = field
        .iter()
        .position(|b| !is_c_space(*b))
        .unwrap_or(field.len());
    let digits = &field[start..];
    if digits.is_empty() {
        // No conversion: Postfix's end pointer stays at the start of the
        // field, so only an empty field passes (as 0); spaces alone fail.
        return if field.is_empty() { Some(0) } else { None };
    }
    digits.iter().try_fold(0u64, |sum, &b| {
        let value = SAFE_ALPHABET.iter().position(|&c| c == b)? as u64;
        if value >= base {
            return None;
        }
        sum.checked_mul(base)?.checked_add(value)
    })
}

/// C's `isspace()` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent base-52 decoder for the expected values: Horner's rule
    /// over the alphabet written out again.
    fn base52(field: &str) -> u64 {
        let alphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
        field.chars().fold(0, |acc, c| {
            let v = alphabet.find(c).expect("test field uses the alphabet") as u64;
            acc * 52 + v
        })
    }

    /// The expected directories for a long ID, computed from its parts.
    fn expected_long(usec_field: &str, depth: usize) -> String {
        let hex = format!("{:05X}", base52(usec_field));
        hex.chars().take(depth).map(|c| format!("{c}/")).collect()
    }

    #[test]
    fn short_ids_hash_by_leading_characters() {
        assert_eq!(hash_dirs("3F2A41C0B1", 1), "3/");
        assert_eq!(hash_dirs("3F2A41C0B1", 2), "3/F/");
        assert_eq!(hash_dirs("ABCDEF", 3), "A/B/C/");
    }

    #[test]
    fn ids_shorter_than_depth_are_padded() {
        assert_eq!(hash_dirs("A", 3), "A/_/_/");
        assert_eq!(hash_dirs("AB", 2), "A/B/");
        assert_eq!(hash_dirs("", 2), "_/_/");
    }

    #[test]
    fn depth_zero_is_no_hashing() {
        assert_eq!(hash_dirs("3F2A41C0B1", 0), "");
    }

    #[test]
    fn long_ids_hash_by_microseconds_in_hex() {
        // Seconds "4ZkQ5d", microseconds "1XqB", then z and the inode.
        let id = "4ZkQ5d1XqBzBcdF";
        let want1 = expected_long("1XqB", 1);
        let want2 = expected_long("1XqB", 2);
        assert_eq!(hash_dirs(id, 1), want1);
        assert_eq!(hash_dirs(id, 2), want2);
        // 1XqB = 1*52^3 + 28*52^2 + 43*52 + 10 = 140608 + 75712 + 2236 + 10.
        assert_eq!(base52("1XqB"), 218_566);
        assert_eq!(format!("{:05X}", 218_566), "355C6");
        assert_eq!(hash_dirs(id, 2), "3/5/");
    }

    #[test]
    fn long_ids_with_small_microseconds_keep_leading_zeros() {
        // "0003" is 3 microseconds: 00003, so the first directory is 0.
        let id = "4ZkQ5d0003zBcdF";
        assert_eq!(hash_dirs(id, 1), "0/");
        assert_eq!(hash_dirs(id, 5), "0/0/0/0/3/");
        assert_eq!(hash_dirs(id, 6), "0/0/0/0/3/_/");
    }

    #[test]
    fn largest_microseconds_field_gives_six_hex_digits() {
        // zzzz = 52^4 - 1 = 7311615 = 0x6F90FF.
        let id = "4ZkQ5dzzzzzBcdF";
        assert_eq!(long_id_separator(id), Some(10));
        assert_eq!(hash_dirs(id, 2), expected_long("zzzz", 2));
        assert_eq!(hash_dirs(id, 2), "6/F/");
    }

    #[test]
    fn long_ids_with_longer_seconds_field() {
        // Seven characters of seconds: the separator is at index 11.
        let id = "14ZkQ5dBcDfzQ";
        assert_eq!(long_id_separator(id), Some(11));
        assert_eq!(hash_dirs(id, 2), expected_long("BcDf", 2));
    }

    #[test]
    fn undecodable_microseconds_count_as_zero() {
        // A vowel is not in the alphabet; '_' neither.
        assert_eq!(hash_dirs("4ZkQ5d1aqBz1", 2), "0/0/");
        assert_eq!(hash_dirs("4ZkQ5d1_qBz1", 1), "0/");
    }

    #[test]
    fn a_z_too_early_is_a_short_id() {
        // z at index 9: not a long ID, hashed by its first characters.
        assert_eq!(long_id_separator("4ZkQ5d1Xqz12"), None);
        assert_eq!(hash_dirs("4ZkQ5d1Xqz12", 2), "4/Z/");
        // The last z counts, even if an earlier one would qualify too.
        assert_eq!(long_id_separator("AAAAAAAAAAzAAAAAz"), Some(16));
    }

    #[test]
    fn decoder_follows_safe_strtoul() {
        assert_eq!(decode_safe(b"", 52), Some(0));
        assert_eq!(decode_safe(b"10", 52), Some(52));
        assert_eq!(decode_safe(b" 10", 52), Some(52));
        assert_eq!(decode_safe(b"  ", 52), None);
        assert_eq!(decode_safe(b"1a", 52), None);
        // z is digit 51: fine in base 52, not in base 51.
        assert_eq!(decode_safe(b"z", 52), Some(51));
        assert_eq!(decode_safe(b"z", 51), None);
        assert_eq!(decode_safe(&[b'z'; 20], 52), None);
    }

    #[test]
    fn unsafe_characters_never_escape() {
        assert_eq!(hash_dirs("../x", 2), "_/_/");
        assert_eq!(hash_dirs("é", 1), "_/");
    }
}
