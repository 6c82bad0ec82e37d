//! Identities: connections, and (from [`names`](crate::names)) user names.

use std::fmt;

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

pub use crate::names::{MAX_NAME_CHARS, UserName};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_ids_carry_their_generation() {
        let id = ConnId::new(7, 3);
        assert_eq!((id.index(), id.generation()), (7, 3));
        assert_ne!(id, ConnId::new(7, 4));
    }
}
