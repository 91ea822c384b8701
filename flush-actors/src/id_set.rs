//! `IdSet`: the queue IDs a logfile holds, in 16 bytes each.
//!
//! A log writer remembers the IDs its log holds so that a repeated `add`
//! (qmgr defers the same message again and again) is not written twice. With
//! a thousand live logs of fifty IDs each, that memory is most of what a
//! destination costs, so it is kept compact, and exact: a false "already
//! there" would leave a deferred message out of its site's next flush.
//!
//! Queue IDs are letters, digits and `_`: 63 symbols, numbered 1 to 63, so
//! an ID of up to [`PACKED_LEN`] of them is a base-64 numeral without the
//! digit 0, which no two IDs share, and it fits a `u128`. Postfix's short
//! and long IDs are well under that length; anything else is kept as a
//! string.

use foldhash::HashSet;

/// The longest ID kept as a number: 21 symbols of 6 bits.
pub const PACKED_LEN: usize = 21;

/// A set of queue IDs.
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    packed: HashSet<u128>,
    other: HashSet<Box<str>>,
}

impl IdSet {
    /// An empty set (no allocation until the first insert).
    pub fn new() -> IdSet {
        IdSet::default()
    }

    /// How many IDs the set holds.
    pub fn len(&self) -> usize {
        self.packed.len() + self.other.len()
    }

    /// Whether the set holds no ID.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `id`; false if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        match pack(id) {
            Some(key) => self.packed.insert(key),
            None if self.other.contains(id) => false,
            None => self.other.insert(id.into()),
        }
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: &str) -> bool {
        match pack(id) {
            Some(key) => self.packed.contains(&key),
            None => self.other.contains(id),
        }
    }

    /// Forgets every ID, keeping the room.
    pub fn clear(&mut self) {
        self.packed.clear();
        self.other.clear();
    }
}

/// `id` as a number, if it is 1 to [`PACKED_LEN`] symbols long.
fn pack(id: &str) -> Option<u128> {
    if id.is_empty() || id.len() > PACKED_LEN {
        return None;
    }
    id.bytes().try_fold(0u128, |key, byte| {
        Some(key << 6 | u128::from(symbol(byte)?))
    })
}

/// A queue-ID byte's number, 1 to 63.
fn symbol(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0' + 1),
        b'A'..=b'Z' => Some(byte - b'A' + 11),
        b'a'..=b'z' => Some(byte - b'a' + 37),
        b'_' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_symbol_has_its_own_number() {
        let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_";
        let numbers: Vec<u8> = alphabet.bytes().map(|b| symbol(b).unwrap()).collect();
        assert_eq!(numbers, (1..=63).collect::<Vec<u8>>());
        for other in [b'-', b'.', b'/', b' ', 0, b'\n', 0xc3] {
            assert_eq!(symbol(other), None);
        }
    }

    #[test]
    fn ids_that_differ_only_in_length_or_leading_zeros_differ() {
        let mut set = IdSet::new();
        for id in ["0", "00", "000", "A", "0A", "00A", "A0"] {
            assert!(set.insert(id), "{id}");
        }
        assert_eq!(set.len(), 7);
        assert!(!set.insert("0A"));
        assert!(set.contains("00"));
        assert!(!set.contains("0000"));
    }

    #[test]
    fn long_and_odd_ids_are_kept_as_strings() {
        let longest = "Z".repeat(PACKED_LEN);
        let longer = "Z".repeat(PACKED_LEN + 1);
        assert!(pack(&longest).is_some());
        assert_eq!(pack(&longer), None);
        assert_eq!(pack(""), None);
        let mut set = IdSet::new();
        assert!(set.insert(&longest));
        assert!(set.insert(&longer));
        assert!(!set.insert(&longer));
        assert!(set.insert("not-an-id"));
        assert!(set.contains("not-an-id") && set.contains(&longer));
        assert_eq!(set.len(), 3);
        set.clear();
        assert!(set.is_empty() && !set.contains(&longest));
    }

    #[test]
    fn postfix_ids_are_packed() {
        for id in ["3F2A41C0B1", "4ZkQ5d1Xq7zBcdF", "4ZkQ5d1Xq7zBcdFgh"] {
            assert!(pack(id).is_some(), "{id}");
        }
    }

    proptest! {
        /// The set answers as a set of strings would.
        #[test]
        fn behaves_as_a_set_of_strings(
            ids in prop::collection::vec("[0-9A-Za-z_]{1,24}|[a-z.-]{1,4}", 0..60)
        ) {
            let mut set = IdSet::new();
            let mut reference = std::collections::HashSet::new();
            for id in &ids {
                prop_assert_eq!(set.contains(id), reference.contains(id));
                prop_assert_eq!(set.insert(id), reference.insert(id.clone()));
                prop_assert_eq!(set.len(), reference.len());
            }
        }

        /// Packing never maps two IDs to one number.
        #[test]
        fn packing_is_one_to_one(a in "[0-9A-Za-z_]{1,21}", b in "[0-9A-Za-z_]{1,21}") {
            prop_assert_eq!(pack(&a) == pack(&b), a == b);
        }
    }
}
