//! The room: who is in, in join order, and the log that changes it.
//!
//! # The log is the room
//!
//! A change to the room is first *validated* (by the [`Server`](super::Server), against the
//! applied state), then *sequenced* as an [`Entry`] with the next sequence number, then
//! *applied*: only applying an entry changes membership or delivers anything. In one process
//! an entry is applied as soon as it is sequenced. The split is the seam for several servers
//! sharing one room: put a shared, ordered log (a Redis Stream) between sequencing and
//! applying, and every node applies the same entries in the same order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ids::{ConnId, UserName};

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
}

/// One change to the room, in the order the room applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// `conn` joins as `name`.
    Join {
        /// The joining connection.
        conn: ConnId,
        /// Its validated name, free at validation time.
        name: UserName,
    },
    /// `conn` says `text` (one trailing newline already dropped, never empty).
    Say {
        /// The speaking member.
        conn: ConnId,
        /// What it said.
        text: &'a str,
    },
    /// `conn` leaves.
    Leave {
        /// The leaving member.
        conn: ConnId,
        /// Why.
        cause: LeaveCause,
    },
}

/// The applied membership, in join order.
#[derive(Debug, Default)]
pub struct Room {
    /// Members by the sequence number of their join entry: iteration is join order.
    by_seq: BTreeMap<u64, (ConnId, UserName)>,
    /// Join sequence numbers by connection.
    seq_of: HashMap<ConnId, u64>,
    /// Names in use, by their S2.2 key.
    names: HashMap<Box<str>, ConnId>,
    /// Every member's connection, rebuilt after a membership change: a broadcast hands the
    /// same list to the host each time instead of building one per message.
    recipients: Option<Arc<[ConnId]>>,
    /// The next entry's sequence number.
    next_seq: u64,
}

impl Room {
    /// Whether a member already uses `name`, compared as S2.2 says.
    pub fn is_taken(&self, name: &UserName) -> bool {
        self.names.contains_key(name.key())
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

    /// Gives the next sequence number to an entry about to be applied.
    pub(crate) fn sequence(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub(crate) fn insert(&mut self, seq: u64, conn: ConnId, name: UserName) {
        self.names.insert(name.key().into(), conn);
        self.seq_of.insert(conn, seq);
        self.by_seq.insert(seq, (conn, name));
        self.recipients = None;
    }

    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<UserName> {
        let seq = self.seq_of.remove(&conn)?;
        let (_, name) = self.by_seq.remove(&seq)?;
        self.names.remove(name.key());
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
