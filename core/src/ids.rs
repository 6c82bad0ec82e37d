//! Identities: connections and user names.

use std::fmt;

use crate::error::NameError;

/// A connection, as numbered by the [`Server`](crate::server::Server).
///
/// Ids are never reused within one server: an event that arrives late for a connection the
/// machine has already closed names an id that matches nothing, and is ignored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Builds an id from its parts: a slot index and the slot's generation.
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        Self(((generation as u64) << 32) | index as u64)
    }

    /// The id's slot: small and dense, counted from zero, and reused (with a new
    /// generation) once the connection has closed. A host can keep its per-connection state
    /// in a `Vec` at this index instead of a hash map, comparing the whole id on lookup.
    pub fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id back from [`as_u64`](Self::as_u64) (a shared log names members by it).
    pub(crate) fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The id as a number, for logs and for hosts that key tables by it.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.index())?;
        if self.generation() > 0 {
            write!(f, ".{}", self.generation())?;
        }
        Ok(())
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A user name that satisfies S2.1, with the key that S2.2 compares.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserName {
    display: Box<str>,
    key: Box<str>,
}

/// The longest valid name, in Unicode scalar values (S2.1).
pub const MAX_NAME_CHARS: usize = 32;

impl UserName {
    /// Validates a `User_Agent` value as a name: trims spaces and tabs, then applies S2.1.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let name = raw.trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        let mut count = 0;
        for c in name.chars() {
            count += 1;
            if c.is_whitespace() {
                return Err(NameError::Whitespace(c));
            }
            if c.is_control() {
                return Err(NameError::Control(c));
            }
            if is_format_char(c) {
                return Err(NameError::Format(c));
            }
            if matches!(c, '[' | ']' | ':') {
                return Err(NameError::Reserved(c));
            }
        }
        if count > MAX_NAME_CHARS {
            return Err(NameError::TooLong(count));
        }
        Ok(Self {
            display: name.into(),
            key: name.to_lowercase().into(),
        })
    }

    /// The name as the user wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The key two names are compared by (S2.2): the Unicode lowercase of the name.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.display, f)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Whether `c` is in Unicode's general category Cf (format), as of Unicode 15.1.
///
/// The standard library has no category lookup and the core takes no Unicode-table
/// dependency for one category; the table is short and changes rarely.
pub fn is_format_char(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = c as u32;
    CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_keyed_by_lowercase() {
        let name = UserName::parse(" \tÉmile ").expect("valid");
        assert_eq!(name.as_str(), "Émile");
        assert_eq!(name.key(), "émile");
    }

    #[test]
    fn s2_1_welcomes_cjk_accents_and_single_emoji() {
        for ok in ["小明", "José", "🦀", "a", &"x".repeat(32)] {
            assert!(UserName::parse(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn s2_1_rejects_spoofing_and_reserved_characters() {
        let cases = [
            ("", NameError::Empty),
            ("  ", NameError::Empty),
            ("a b", NameError::Whitespace(' ')),
            ("a\u{3000}b", NameError::Whitespace('\u{3000}')),
            ("a\u{7}", NameError::Control('\u{7}')),
            ("al\u{200B}ice", NameError::Format('\u{200B}')),
            ("\u{202E}ecila", NameError::Format('\u{202E}')),
            ("👩\u{200D}💻", NameError::Format('\u{200D}')),
            ("[admin]", NameError::Reserved('[')),
            ("a:b", NameError::Reserved(':')),
            (&"x".repeat(33), NameError::TooLong(33)),
        ];
        for (raw, expected) in cases {
            assert_eq!(UserName::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn conn_ids_carry_their_generation() {
        let id = ConnId::new(7, 3);
        assert_eq!((id.index(), id.generation()), (7, 3));
        assert_ne!(id, ConnId::new(7, 4));
    }
}
