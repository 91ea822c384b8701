//! Queue-ID syntax, as Postfix's `mail_queue_id_ok()` checks it.

/// Longest queue ID (and logfile name) Postfix accepts: `VALID_HOSTNAME_LEN`.
pub const MAX_QUEUE_ID_LEN: usize = 255;

/// Checks a queue ID: non-empty, at most 255 bytes, ASCII letters, digits and `_` only.
///
/// The same rule guards logfile names, so a valid ID is always a safe file name.
///
/// # Errors
/// Returns a short reason fit for a `BAD` reply.
///
/// ```
/// use flush_proto::validate_queue_id;
/// assert!(validate_queue_id("3F2A41C0B1").is_ok());
/// assert!(validate_queue_id("../etc").is_err());
/// ```
pub fn validate_queue_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty queue ID");
    }
    if id.len() > MAX_QUEUE_ID_LEN {
        return Err("queue ID longer than 255 bytes");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("queue ID holds a character other than letters, digits and _");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_short_and_long_ids() {
        assert!(validate_queue_id("3F2A41C0B1").is_ok());
        assert!(validate_queue_id("4ZkQ5d1Xq7zBcdF").is_ok());
        assert!(validate_queue_id("relay_test").is_ok());
        assert!(validate_queue_id(&"A".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(validate_queue_id("").is_err());
        assert!(validate_queue_id(&"A".repeat(256)).is_err());
        for bad in ["a.b", "a/b", "../x", "a b", "é", "a-b", "a\0b"] {
            assert!(validate_queue_id(bad).is_err(), "{bad:?}");
        }
    }
}
