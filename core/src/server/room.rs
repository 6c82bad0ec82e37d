//! This node's members: the connections broadcasts go to, in join order.
//!
//! The room's whole membership, every node's members included, is the
//! [`Roster`](super::Roster); it changes only when a log entry is applied (see [`log`](super::log)).
//! The [`Room`] is the part of it that lives on this machine's connections: a member enters it
//! when its join is applied, and leaves it as soon as its connection closes, so nothing is
//! ever sent to a closed connection while its leave waits to be applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ids::{ConnId, UserName};
use crate::names::NameIndex;

/// Why a member left (or a connection closed). Logged by hosts; the leave notice is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaveCause {
    /// The member sent `DELETE` (S5).
    Delete,
    /// The peer closed the connection (end of stream, S6).
    PeerClosed,
    /// Reading or writing failed: a reset, or keepalive found the peer gone (S6).
    ConnectionError,
    /// A guest sent nothing for the idle timeout (S9).
    IdleTimeout,
    /// A request was not completed within the request timeout (S9).
    RequestTimeout,
    /// The connection's unsent output passed the limit (S8).
    SlowReader,
    /// The connection sent something that cannot be framed (W8).
    BadRequest,
    /// The server is shutting down (S11).
    Shutdown,
    /// The connection collected `--flood-kick` refusals within a minute (S12).
    Flood,
}

/// This node's members, in join order.
#[derive(Debug, Default)]
pub struct Room {
    /// Members by the order they entered: iteration is join order.
    by_seq: BTreeMap<u64, (ConnId, UserName)>,
    /// Entry numbers by connection.
    seq_of: HashMap<ConnId, u64>,
    /// Names in use, by every key S2.2 compares them by.
    names: NameIndex<ConnId>,
    /// Every member's connection, rebuilt after a membership change: a broadcast hands the
    /// same list to the host each time instead of building one per message.
    recipients: Option<Arc<[ConnId]>>,
    /// The last member's entry number.
    next_seq: u64,
}

impl Room {
    /// The member whose name `name` collides with (S2.2), if any.
    pub fn taken_by(&self, name: &UserName) -> Option<&UserName> {
        self.names
            .collision(name)
            .and_then(|&conn| self.name_of(conn))
    }

    /// The member's name, if `conn` is a member.
    pub fn name_of(&self, conn: ConnId) -> Option<&UserName> {
        self.seq_of
            .get(&conn)
            .and_then(|seq| self.by_seq.get(seq))
            .map(|(_, name)| name)
    }

    /// Members in join order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (ConnId, &UserName)> {
        self.by_seq.values().map(|(conn, name)| (*conn, name))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Whether nobody is in.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Every member's connection, in join order, shared.
    pub fn recipients(&mut self) -> Arc<[ConnId]> {
        let by_seq = &self.by_seq;
        self.recipients
            .get_or_insert_with(|| by_seq.values().map(|(conn, _)| *conn).collect())
            .clone()
    }

    /// Adds `conn` last.
    pub(crate) fn insert(&mut self, conn: ConnId, name: UserName) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let free = self.names.insert(&name, conn);
        debug_assert!(
            free,
            "a joiner's name is checked against the room before it enters"
        );
        self.seq_of.insert(conn, seq);
        self.by_seq.insert(seq, (conn, name));
        self.recipients = None;
    }

    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<UserName> {
        let seq = self.seq_of.remove(&conn)?;
        let (_, name) = self.by_seq.remove(&seq)?;
        self.names.remove(&name);
        self.recipients = None;
        Some(name)
    }

    pub(crate) fn clear(&mut self) {
        self.by_seq.clear();
        self.seq_of.clear();
        self.names.clear();
        self.recipients = None;
    }
}
