//! Postfix time values: a number with an optional unit.
//!
//! Mirrors `conv_time()` (`src/global/conv_time.c`): units `s`, `m`, `h`,
//! `d`, `w`, the parameter's default unit when there is none, and at most
//! `INT_MAX` seconds. Stricter than Postfix on one point: Postfix ignores
//! anything after the unit letter (`12hours` is 12h there); here it is an
//! error, so a typo does not pass silently.

use super::ConfigError;
use std::time::Duration;

/// The largest time value, in seconds (Postfix keeps times in an `int`).
pub const MAX_TIME_SECS: u64 = i32::MAX as u64;

/// Parses `value` (already expanded) of parameter `name`; `default_unit` is
/// used when the number has no unit (`s` for every parameter flushd reads).
///
/// # Errors
/// [`ConfigError::Time`] for an empty value, a sign, a missing number, an
/// unknown unit, anything after the unit, or more than [`MAX_TIME_SECS`].
pub fn parse_time(name: &str, value: &str, default_unit: char) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::Time {
        name: name.to_string(),
        value: value.to_string(),
    };
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let number: u64 = value[..digits].parse().map_err(|_| bad())?;
    let mut rest = value[digits..].chars();
    let unit = rest.next().unwrap_or(default_unit);
    if rest.next().is_some() {
        return Err(bad());
    }
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    match number.checked_mul(scale) {
        Some(secs) if secs <= MAX_TIME_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secs(v: &str) -> u64 {
        parse_time("t", v, 's').unwrap().as_secs()
    }

    #[test]
    fn units() {
        assert_eq!(secs("0"), 0);
        assert_eq!(secs("100"), 100);
        assert_eq!(secs("100s"), 100);
        assert_eq!(secs("5m"), 300);
        assert_eq!(secs("12h"), 43_200);
        assert_eq!(secs("7d"), 604_800);
        assert_eq!(secs("2w"), 1_209_600);
        assert_eq!(parse_time("t", "3", 'h').unwrap().as_secs(), 10_800);
    }

    #[test]
    fn garbage_is_an_error_naming_the_parameter() {
        for v in [
            "", "h", "-1", "+1", " 1", "1 ", "1x", "1hours", "1.5h", "1hh", "ten",
        ] {
            let err = parse_time("fast_flush_purge_time", v, 's').unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("fast_flush_purge_time"), "{v:?}: {msg}");
        }
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(secs("2147483647"), MAX_TIME_SECS);
        assert!(parse_time("t", "2147483648", 's').is_err());
        assert!(parse_time("t", "4000w", 's').is_err());
        assert!(parse_time("t", "99999999999999999999999", 's').is_err());
    }
}
