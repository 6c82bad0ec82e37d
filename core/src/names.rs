//! User names: which are valid (S2.1), and when two collide (S2.2).
//!
//! # Theory of operation
//!
//! A `User_Agent` value becomes a name in three forms, all computed once, at [`UserName::parse`]:
//!
//! * the **enforced** form: the value trimmed of spaces and tabs, checked for what chat
//!   reserves (whitespace, `[ ] :`, controls, bidi controls, a leading combining mark), then
//!   put through the PRECIS Nickname profile (RFC 8266), which maps it to NFKC and refuses
//!   what the FreeformClass disallows (default-ignorable and unassigned code points, old
//!   Hangul jamo, join controls outside CONTEXTJ). This is the member's name everywhere.
//! * the **comparison** form: the profile's comparison rules (Unicode lowercase, then NFKC)
//!   applied to the enforced form, so `Alice`, `ALICE` and `ａｌｉｃｅ` compare equal.
//! * two **confusable keys**: the UTS #39 skeletons of the enforced and of the comparison
//!   form, each lowercased. The confusables data is case-sensitive (it maps `0` to `O` and
//!   `I` to `l`), so taking both skeletons catches `b0b`/`bob` as well as `aIice`/`alice`.
//!
//! Two names **collide** when their comparison forms are equal or they share a confusable
//! key. [`NameIndex`] holds the keys of the names in use and answers, for a candidate,
//! which holder it collides with.
//!
//! The tables are those of the crates: PRECIS derived properties from `precis-core`
//! ([`PRECIS_UNICODE_VERSION`]); confusables from `unicode-security`
//! ([`CONFUSABLES_UNICODE_VERSION`]). A symbol newer than the PRECIS tables (a recent emoji)
//! is admitted, as newer tables would admit it; any other code point the tables do not know
//! is refused as unassigned.

use std::collections::HashMap;
use std::fmt;

use precis_core::profile::{PrecisFastInvocation, Rules};
use precis_core::{DerivedPropertyValue, Error as PrecisError};
use precis_profiles::Nickname;
use unicode_normalization::UnicodeNormalization;
use unicode_security::confusable_detection::skeleton;

use crate::error::NameError;

/// The longest valid name, in Unicode scalar values after enforcement (S2.1).
pub const MAX_NAME_CHARS: usize = 32;

/// The Unicode version of the PRECIS tables names are enforced with.
pub const PRECIS_UNICODE_VERSION: &str = "6.3.0";

/// The Unicode version of the UTS #39 confusables data names are compared with.
pub const CONFUSABLES_UNICODE_VERSION: (u64, u64, u64) = unicode_security::UNICODE_VERSION;

/// A valid user name (S2.1), with the keys it is compared by (S2.2).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserName {
    enforced: Box<str>,
    comparison: Box<str>,
    confusable: [Box<str>; 2],
}

impl UserName {
    /// Validates a `User_Agent` value as a name: trims spaces and tabs, then applies S2.1.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let value = raw.trim_matches([' ', '\t']);
        if value.is_empty() {
            return Err(NameError::Empty);
        }
        // Enforcement can only shrink a name so far (NFKC composes a few scalars into one):
        // a value far past the limit is refused before the profile's work is spent on it.
        let received = value.chars().count();
        if received > MAX_NAME_CHARS * 8 {
            return Err(NameError::TooLong(received));
        }
        // Checked on the value as received: the profile would map some of these away.
        for c in value.chars() {
            if c.is_whitespace() {
                return Err(NameError::Whitespace(c));
            }
            if c.is_control() {
                return Err(NameError::Control(c));
            }
            if is_bidi_control(c) {
                return Err(NameError::Format(c));
            }
            if matches!(c, '[' | ']' | ':') {
                return Err(NameError::Reserved(c));
            }
        }
        let enforced = enforce(value)?;
        let count = enforced.chars().count();
        if count > MAX_NAME_CHARS {
            return Err(NameError::TooLong(count));
        }
        if let Some(first) = enforced.chars().next()
            && unicode_normalization::char::is_combining_mark(first)
        {
            return Err(NameError::LeadingMark(first));
        }
        // The enforced form is stable under the profile, so its comparison rules cannot fail.
        let comparison = comparison_form(&enforced).map_err(|e| refusal(value, e))?;
        let confusable = [confusable_key(&enforced), confusable_key(&comparison)];
        Ok(Self {
            enforced: enforced.into(),
            comparison: comparison.into(),
            confusable,
        })
    }

    /// The name: the enforced form, as every member sees it.
    pub fn as_str(&self) -> &str {
        &self.enforced
    }

    /// The RFC 8266 comparison form: two names with the same one are the same name.
    pub fn key(&self) -> &str {
        &self.comparison
    }

    /// The two UTS #39 confusable keys (they may be equal).
    pub fn confusable_keys(&self) -> [&str; 2] {
        [&self.confusable[0], &self.confusable[1]]
    }

    /// Whether `self` and `other` collide (S2.2).
    pub fn collides_with(&self, other: &UserName) -> bool {
        self.comparison == other.comparison
            || self
                .confusable_keys()
                .iter()
                .any(|k| other.confusable_keys().contains(k))
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.enforced, f)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.enforced)
    }
}

/// The names in use, by every key they are compared by, each with its holder.
///
/// Names admitted through [`insert`](Self::insert) never collide, so each key has one holder.
#[derive(Debug)]
pub struct NameIndex<H> {
    by_key: HashMap<Box<str>, H>,
    by_confusable: HashMap<Box<str>, H>,
}

impl<H> Default for NameIndex<H> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            by_confusable: HashMap::new(),
        }
    }
}

impl<H: Clone> NameIndex<H> {
    /// The holder of a name in use that `name` collides with, if any.
    pub fn collision(&self, name: &UserName) -> Option<&H> {
        self.by_key.get(name.key()).or_else(|| {
            name.confusable_keys()
                .into_iter()
                .find_map(|k| self.by_confusable.get(k))
        })
    }

    /// Puts `name` in use by `holder`; false, and nothing changes, if it collides.
    pub fn insert(&mut self, name: &UserName, holder: H) -> bool {
        if self.collision(name).is_some() {
            return false;
        }
        self.by_key.insert(name.key().into(), holder.clone());
        for key in name.confusable_keys() {
            self.by_confusable.insert(key.into(), holder.clone());
        }
        true
    }

    /// Frees `name`.
    pub fn remove(&mut self, name: &UserName) {
        self.by_key.remove(name.key());
        for key in name.confusable_keys() {
            self.by_confusable.remove(key);
        }
    }

    /// Frees every name.
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.by_confusable.clear();
    }

    /// How many names are in use.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no name is in use.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The Nickname profile's enforcement, with one allowance: a symbol (an emoji, for one) that
/// is newer than the PRECIS tables is kept as it is instead of refused as unassigned. The
/// FreeformClass admits symbols, so that is the property newer tables would derive; the text
/// between such symbols is enforced as usual.
fn enforce(value: &str) -> Result<String, NameError> {
    if !value.chars().any(is_newer_symbol) {
        return Nickname::enforce(value)
            .map(|e| e.into_owned())
            .map_err(|e| refusal(value, e));
    }
    let mut out = String::with_capacity(value.len());
    let mut segment = String::new();
    let flush = |segment: &mut String, out: &mut String| -> Result<(), NameError> {
        if !segment.is_empty() {
            let enforced = Nickname::enforce(segment.as_str()).map_err(|e| refusal(segment, e))?;
            out.push_str(&enforced);
            segment.clear();
        }
        Ok(())
    };
    for c in value.chars() {
        if is_newer_symbol(c) {
            flush(&mut segment, &mut out)?;
            out.push(c);
        } else {
            segment.push(c);
        }
    }
    flush(&mut segment, &mut out)?;
    Ok(out.nfkc().collect())
}

/// A symbol that Unicode assigned after the PRECIS tables' version.
fn is_newer_symbol(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    matches!(
        get_general_category(c),
        G::OtherSymbol | G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol
    ) && matches!(
        Nickname::enforce(c.encode_utf8(&mut [0; 4]) as &str),
        Err(PrecisError::BadCodepoint(info)) if info.property == DerivedPropertyValue::Unassigned
    )
}

/// RFC 8266's comparison rules on an enforced name, repeated until stable as the profile's
/// own comparison does.
fn comparison_form(enforced: &str) -> Result<String, PrecisError> {
    let profile = Nickname::new();
    let mut form = enforced.to_owned();
    // NFKC of a lowercase string can hold new uppercase only in contrived cases; two rounds
    // reach the fixed point for every name the profile admits.
    for _ in 0..4 {
        let lowered = profile.case_mapping_rule(form.as_str())?;
        let next = profile.normalization_rule(lowered)?.into_owned();
        if next == form {
            break;
        }
        form = next;
    }
    Ok(form)
}

fn confusable_key(form: &str) -> Box<str> {
    skeleton(form).collect::<String>().to_lowercase().into()
}

/// Bidi controls (S2.1): they reorder how a line reads, so a name could make chat lines lie.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Names the code point the profile refused, and why.
fn refusal(value: &str, error: PrecisError) -> NameError {
    match error {
        PrecisError::BadCodepoint(info) => {
            let c = char::from_u32(info.cp).unwrap_or(char::REPLACEMENT_CHARACTER);
            match info.property {
                DerivedPropertyValue::Unassigned => NameError::Unassigned(c),
                _ => NameError::Disallowed(c),
            }
        }
        PrecisError::Invalid | PrecisError::Unexpected(_) if value.is_empty() => NameError::Empty,
        PrecisError::Invalid | PrecisError::Unexpected(_) => NameError::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> UserName {
        UserName::parse(raw).unwrap_or_else(|e| panic!("{raw:?} should be valid: {e}"))
    }

    #[test]
    fn s2_1_enforced_form_is_nfkc_and_trimmed() {
        assert_eq!(name(" \tÉmile ").as_str(), "Émile");
        assert_eq!(name("ｂｏｂ").as_str(), "bob");
        assert_eq!(name("\u{212A}elvin").as_str(), "Kelvin");
        assert_eq!(name("Alice").key(), "alice");
    }

    #[test]
    fn s2_1_welcomes_cjk_accents_and_single_emoji() {
        for ok in [
            "小明",
            "José",
            "😀",
            "🦀",
            "小明🦀",
            "🥰x🦀",
            "a",
            "ß",
            &"x".repeat(32),
        ] {
            assert!(UserName::parse(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn s2_1_refusals_name_the_code_point() {
        let cases = [
            ("", NameError::Empty),
            ("  ", NameError::Empty),
            ("a b", NameError::Whitespace(' ')),
            ("a\u{3000}b", NameError::Whitespace('\u{3000}')),
            ("a\u{a0}b", NameError::Whitespace('\u{a0}')),
            ("a\u{7}", NameError::Control('\u{7}')),
            ("\u{202E}ecila", NameError::Format('\u{202E}')),
            ("a\u{2066}b", NameError::Format('\u{2066}')),
            ("al\u{200B}ice", NameError::Disallowed('\u{200B}')),
            ("alice\u{3164}", NameError::Disallowed('\u{3164}')),
            ("alice\u{115F}", NameError::Disallowed('\u{115F}')),
            ("alice\u{FFA0}", NameError::Disallowed('\u{FFA0}')),
            ("alice\u{34F}", NameError::Disallowed('\u{34F}')),
            ("alice\u{FE0F}", NameError::Disallowed('\u{FE0F}')),
            ("alice\u{17B4}", NameError::Disallowed('\u{17B4}')),
            ("alice\u{180B}", NameError::Disallowed('\u{180B}')),
            ("👩\u{200D}💻", NameError::Disallowed('\u{200D}')),
            ("\u{301}a", NameError::LeadingMark('\u{301}')),
            ("[admin]", NameError::Reserved('[')),
            ("a:b", NameError::Reserved(':')),
            (&"x".repeat(33), NameError::TooLong(33)),
        ];
        for (raw, expected) in cases {
            assert_eq!(UserName::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn s2_2_look_alikes_collide() {
        let pairs = [
            ("alice", "Alice"),
            ("émile", "Émile"),
            ("ｂｏｂ", "Bob"),
            ("alice", "\u{430}lice"),
            ("alice", "\u{430}LICE"),
            ("alice", "aIice"),
            ("bob", "b0b"),
            ("paypal", "paypa1"),
            ("moe", "rnoe"),
        ];
        for (a, b) in pairs {
            assert!(
                name(a).collides_with(&name(b)),
                "{a:?} and {b:?} should collide"
            );
            assert!(
                name(b).collides_with(&name(a)),
                "{b:?} and {a:?} should collide"
            );
        }
    }

    #[test]
    fn s2_2_different_names_do_not_collide() {
        for (a, b) in [
            ("alice", "bob"),
            ("ß", "SS"),
            ("小明", "小红"),
            ("ann", "anne"),
        ] {
            assert!(!name(a).collides_with(&name(b)), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn s2_2_the_index_names_the_holder_and_frees_every_key() {
        let mut index = NameIndex::default();
        assert!(index.insert(&name("alice"), 1));
        assert!(!index.insert(&name("\u{430}lice"), 2));
        assert_eq!(index.collision(&name("ALICE")), Some(&1));
        assert_eq!(index.collision(&name("aIice")), Some(&1));
        index.remove(&name("alice"));
        assert!(index.is_empty());
        assert!(index.insert(&name("aIice"), 3));
    }
}
