//! The log is the room: entries are sequenced, then applied, by one `apply` in both modes.
//!
//! # Theory of operation
//!
//! A join, a message or a leave of a local connection is validated against the applied
//! state, then appended to the log as a [`LogEntry`], and nothing changes yet. Only
//! *applying* an entry changes membership or delivers chat, and entries are applied in log
//! order, so every member sees one order (S7). The machine runs in one of two modes, and
//! the only difference is where the log is:
//!
//! * **One process** ([`Server::new`](super::Server::new)): the log is a queue inside the
//!   machine that loops straight back. The `handle_*` call that appended an entry applies
//!   it before it returns.
//! * **Shared** ([`Server::new_shared`](super::Server::new_shared)): entries come out of
//!   [`Server::poll_append`](super::Server::poll_append); the host appends them to a shared,
//!   ordered log, reads the log back, and feeds every entry, its own and other
//!   nodes', to [`Server::handle_log_entry`](super::Server::handle_log_entry) in log order.
//!   Every node applies the same entries in the same order.
//!
//! `GET` answers from the applied [`Roster`], which lists members of every node in join
//! order (S4). Members are named by a [`MemberRef`]: the node that holds the connection and
//! a number that node chose (this machine uses [`ConnId::as_u64`]). A member of this node is
//! also in the local [`Room`](super::Room), the list of connections broadcasts go to.
//!
//! # Bounded work per call
//!
//! One input can append many entries: a broadcast that cuts thousands of slow readers (S8)
//! appends a leave for each, and applying a leave builds its notice's recipient list. So a
//! `handle_*` call applies at most [`CHANGES_PER_CALL`] membership changes (joins and
//! leaves) from the in-process log; messages are applied whenever they reach the front.
//! While entries wait, [`Server::poll_timeout`](super::Server::poll_timeout) returns a
//! deadline at or before the current time, so the host calls
//! [`Server::handle_timeout`](super::Server::handle_timeout) again, after the outputs of
//! the last slice are carried out and freed. [`Server::poll_output`](super::Server::poll_output)
//! only hands out what the `handle_*` calls decided.
//!
//! # Ordering rules
//!
//! * **Joins**: two joins of one name can both be valid when validated; the first applied
//!   wins and the other gets `401` (S2.2). In shared mode the log also claims names across
//!   nodes: the host either appends the join or reports it refused with
//!   [`Server::handle_append_refused`](super::Server::handle_append_refused)
//!   ([`AppendRefusal::NameTaken`] becomes the same `401`).
//! * **Leaves** of local members (`DELETE`, hang-up, cut) take effect locally at once (the
//!   connection gets nothing more, its name is free for the next `ADD` here) and are
//!   appended; the member stays in the roster, marked leaving, and the others see the leave
//!   notice, when the leave entry is applied. A join whose connection closed before it was
//!   applied is applied (the log has it) and then left.
//! * **A leave of a local member that this node did not ask for** means other nodes took this
//!   node for dead and reaped its members: the member is told and disconnected.
//! * **A gap or a reset** of the shared log (entries trimmed before this node read them, or
//!   the log lost) is [`Server::handle_log_reset`](super::Server::handle_log_reset): local
//!   members get [`RESYNC_NOTICE`], the roster is rebuilt from the host's snapshot of who is
//!   claimed, and local members the snapshot lacks are claimed again ([`LogKind::Rejoin`],
//!   applied without a join notice). Nothing missed is ever skipped silently.
//! * **Log down** ([`Server::handle_log_down`](super::Server::handle_log_down)): joins and
//!   messages get `503` with the reason until the host reports the log back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::phase::Phase;
use super::{CloseMode, Event, LeaveCause, Output, Server, refusal};
use crate::ids::{ConnId, UserName};
use crate::limits::ServerConfig;
use crate::names::NameIndex;
use crate::time::Timestamp;
use crate::wire::{Frame, Status, body};

/// The body sent to local members after a gap or reset of the shared log.
pub const RESYNC_NOTICE: &str = "Notice: this server missed part of the chat (the shared log was trimmed or reset); \
     some messages may be lost. GET lists who is in now.\n";

/// The most membership changes (joins and leaves) one `handle_*` call applies from the
/// in-process log. Each builds a new recipient list for its notice; in slices of this size a
/// wave of thousands of leaves holds a few lists at a time, not thousands, and other input is
/// handled between slices. See the module docs.
pub const CHANGES_PER_CALL: usize = 32;

/// A member of the shared room: the node that holds its connection, and that node's number
/// for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberRef {
    /// The node (server process) id.
    pub node: Arc<str>,
    /// The node's number for the member, unique within the node's life.
    pub member: u64,
}

/// What a log entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogKind {
    /// The member joins as this name (claimed in the log), with a join notice.
    Join(UserName),
    /// The member, already in, is claimed again after a log reset: no notice.
    Rejoin(UserName),
    /// The member says this (one trailing newline dropped, never empty).
    Say(String),
    /// The member leaves.
    Leave,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Whose entry it is.
    pub author: MemberRef,
    /// What it does.
    pub kind: LogKind,
    /// A message's number among the room's chat lines, as the shared log gave it (E5): its
    /// id is `EPOCH.LINE` on every node. `None` in entries this machine appends (the log
    /// numbers them) and in a single-process room, which numbers its lines itself.
    pub line: Option<u64>,
}

/// Why the host could not append an entry of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendRefusal {
    /// A join's name is claimed by another member (S2.2, `401`).
    NameTaken,
    /// The author is no longer a member in the log (its node was reaped as dead).
    NotMember,
    /// The log cannot be reached; the text says why (`503`).
    Unavailable(String),
}

/// Why this node appended the leave of one of its own roster entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// A member here left for this cause; [`Event::Left`] is logged when the leave is applied.
    Member(LeaveCause),
    /// Its join was applied after its connection had closed: it never was a member here.
    Orphan,
}

#[derive(Debug)]
struct RosterEntry {
    member: MemberRef,
    name: UserName,
    /// Set once this node has appended the member's leave: its name is free here already.
    leaving: Option<Leaving>,
}

/// Every member of the room, in join (log) order, with names unique by S2.2 key.
#[derive(Debug, Default)]
pub struct Roster {
    by_order: BTreeMap<u64, RosterEntry>,
    order_of: HashMap<MemberRef, u64>,
    names: NameIndex<MemberRef>,
    next: u64,
}

impl Roster {
    /// Members in join order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&MemberRef, &UserName)> {
        self.by_order.values().map(|e| (&e.member, &e.name))
    }

    /// The member's name, if it is in.
    pub fn name_of(&self, member: &MemberRef) -> Option<&UserName> {
        self.entry(member).map(|e| &e.name)
    }

    /// The member whose name `name` collides with (S2.2), if any.
    pub fn holder(&self, name: &UserName) -> Option<&MemberRef> {
        self.names.collision(name)
    }

    /// Whether `member` is in.
    pub fn contains(&self, member: &MemberRef) -> bool {
        self.order_of.contains_key(member)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.by_order.len()
    }

    /// Whether nobody is in.
    pub fn is_empty(&self) -> bool {
        self.by_order.is_empty()
    }

    fn entry(&self, member: &MemberRef) -> Option<&RosterEntry> {
        self.by_order.get(self.order_of.get(member)?)
    }

    /// The name of the member `name` collides with, unless this node has appended its leave.
    fn held_by(&self, name: &UserName) -> Option<&UserName> {
        self.holder(name)
            .and_then(|holder| self.entry(holder))
            .filter(|e| e.leaving.is_none())
            .map(|e| &e.name)
    }

    fn leaving(&self, member: &MemberRef) -> Option<Leaving> {
        self.entry(member).and_then(|e| e.leaving)
    }

    /// Marks `member` as leaving; false if it is not in.
    fn set_leaving(&mut self, member: &MemberRef, leaving: Leaving) -> bool {
        let Some(order) = self.order_of.get(member) else {
            return false;
        };
        match self.by_order.get_mut(order) {
            Some(entry) => {
                entry.leaving = Some(leaving);
                true
            }
            None => false,
        }
    }

    /// Adds `member` last; false (and nothing changes) if it is in or its name is taken.
    fn insert(&mut self, member: MemberRef, name: UserName) -> bool {
        if self.order_of.contains_key(&member) || !self.names.insert(&name, member.clone()) {
            return false;
        }
        self.next += 1;
        self.order_of.insert(member.clone(), self.next);
        let entry = RosterEntry {
            member,
            name,
            leaving: None,
        };
        self.by_order.insert(self.next, entry);
        true
    }

    fn remove(&mut self, member: &MemberRef) -> Option<(UserName, Option<Leaving>)> {
        let order = self.order_of.remove(member)?;
        let entry = self.by_order.remove(&order)?;
        self.names.remove(&entry.name);
        Some((entry.name, entry.leaving))
    }

    pub(crate) fn clear(&mut self) {
        self.by_order.clear();
        self.order_of.clear();
        self.names.clear();
    }
}

/// Where this machine's entries are sequenced.
#[derive(Debug)]
pub(crate) enum Log {
    /// One process: the log loops straight back; entries wait here to be applied.
    Local { queue: VecDeque<LogEntry> },
    /// A log shared with other nodes, through the host.
    Shared {
        /// `Some(reason)` while the log cannot be reached (or before the first snapshot).
        down: Option<String>,
        /// Entries for the host to append, in order.
        appends: VecDeque<LogEntry>,
        /// This node's joins and messages handed out and not yet applied or refused (K1).
        /// Leaves and rejoins are not counted: they are never refused for being many, and
        /// one may come back as nothing (a leave of a member already reaped, a rejoin of a
        /// member whose claim the log still holds).
        in_flight: usize,
    },
}

/// The most entries of one node that may be on their way through the shared log at once
/// (K1): past it, joins and messages get `503` ([`SLOW`]) until some are applied, so that
/// what waits for a slow log (here, in the host's queue, in Redis's pipeline) stays bounded,
/// at most this many bodies of `max_body_bytes`. Leaves are never refused.
pub const MAX_ENTRIES_IN_FLIGHT: usize = 1024;

/// The most messages one member may have on their way through the shared log at once (K1):
/// its next ones wait behind them, held and counted against its `max_output_bytes` (S8).
pub const MAX_SAYS_IN_FLIGHT: usize = 32;

/// Why a join or message is refused while [`MAX_ENTRIES_IN_FLIGHT`] are on their way.
pub const SLOW: &str = "the shared log is slow, try again";

impl Log {
    pub(crate) fn local() -> Self {
        Log::Local {
            queue: VecDeque::new(),
        }
    }

    /// Why entries cannot be appended now, if they cannot.
    pub(crate) fn down(&self) -> Option<&str> {
        match self {
            Log::Local { .. } => None,
            Log::Shared {
                down, in_flight, ..
            } => down
                .as_deref()
                .or((*in_flight >= MAX_ENTRIES_IN_FLIGHT).then_some(SLOW)),
        }
    }

    /// Whether entries wait in the in-process log.
    pub(crate) fn is_waiting(&self) -> bool {
        matches!(self, Log::Local { queue } if !queue.is_empty())
    }
}

impl Server {
    /// A server in shared-log mode, as node `node` of a room shared through a log (see
    /// [`log`](self)). Until the first [`handle_log_reset`](Self::handle_log_reset)
    /// gives it the room as the log has it, joins and messages get `503`.
    pub fn new_shared(config: ServerConfig, now: Timestamp, node: &str) -> Self {
        let mut server = Self::new(config, now);
        server.node = node.into();
        // A shared room's ids come from the shared log (E5): history is off until the host
        // hands in the log's history with `reset_history`.
        server.history = super::History::new(super::history::HistoryConfig::off());
        server.log = Log::Shared {
            down: Some("the shared log has not been read yet".into()),
            appends: VecDeque::new(),
            in_flight: 0,
        };
        server
    }

    /// Every member of the shared room in join order; `None` for a single-process room,
    /// whose members are all in [`room`](Self::room).
    pub fn roster(&self) -> Option<&Roster> {
        match self.log {
            Log::Local { .. } => None,
            Log::Shared { .. } => Some(&self.roster),
        }
    }

    /// The next entry to append to the shared log, in order; `None` when there is none (and
    /// always in a single-process room). Drain it, like [`poll_output`](Self::poll_output),
    /// after every input.
    #[must_use]
    pub fn poll_append(&mut self) -> Option<LogEntry> {
        match &mut self.log {
            Log::Local { .. } => None,
            Log::Shared { appends, .. } => appends.pop_front(),
        }
    }

    /// Applies the next entry of the shared log, this node's or another's. Feed every entry
    /// exactly once, in log order. Ignored in a single-process room.
    pub fn handle_log_entry(&mut self, now: Timestamp, entry: LogEntry) {
        self.begin(now);
        if let Log::Shared { .. } = self.log {
            if *entry.author.node == *self.node {
                self.landed(&entry.kind);
            }
            self.apply(entry);
        }
        self.settle();
    }

    /// The room's history as the shared log has it (E5), with a
    /// [`handle_log_reset`](Self::handle_log_reset): `epoch` names the log's life, `last` is
    /// the number of the last line it gave up to the snapshot, `lines` the kept ones before
    /// it, oldest first. It replaces what this node held, so every node replays the same
    /// lines under the same ids; entries that follow number their lines on. Ignored in a
    /// single-process room and with `--history 0`.
    pub fn reset_history(
        &mut self,
        epoch: super::history::Epoch,
        last: u64,
        lines: Vec<super::history::Line>,
    ) {
        if matches!(self.log, Log::Local { .. }) || self.config.history.lines == 0 {
            return;
        }
        let config = super::history::HistoryConfig::in_memory(self.config.history.lines, epoch);
        self.history = super::History::new(config);
        self.history.restore(last, lines);
    }

    /// The host could not append `entry` (one this machine gave it): the joiner gets `401`
    /// or `503`, the speaker `503`; a member whose claim was lost in a reset is told and
    /// disconnected.
    pub fn handle_append_refused(
        &mut self,
        now: Timestamp,
        entry: LogEntry,
        refusal: AppendRefusal,
    ) {
        self.begin(now);
        self.append_refused(entry, refusal);
        self.settle();
    }

    fn append_refused(&mut self, entry: LogEntry, refusal: AppendRefusal) {
        if let Log::Local { .. } = self.log {
            return;
        }
        self.landed(&entry.kind);
        let Some(conn) = self.local(&entry.author) else {
            return;
        };
        let why = match &refusal {
            AppendRefusal::NameTaken => "the name is taken".to_owned(),
            AppendRefusal::NotMember => {
                "this server was taken for dead by the others and lost its members".to_owned()
            }
            AppendRefusal::Unavailable(reason) => reason.clone(),
        };
        match entry.kind {
            LogKind::Join(name) => {
                let Some(phase @ Phase::Joining { .. }) = self.phase_mut(conn) else {
                    return;
                };
                *phase = Phase::Guest;
                let (status, reason) = match refusal {
                    // The log knows the name is claimed, not by whom.
                    AppendRefusal::NameTaken => refusal::name_taken(&name, &name),
                    _ => refusal::unavailable("cannot join now", &why),
                };
                self.refuse(conn, status, reason);
                self.release_held(conn);
            }
            LogKind::Rejoin(name) => {
                if let Some(Phase::Member { rejoining, .. }) = self.phase_mut(conn) {
                    *rejoining = false;
                }
                if matches!(refusal, AppendRefusal::Unavailable(_)) {
                    // Claimed again at the next reset, once the log is back.
                    return;
                }
                let text = format!(
                    "You are no longer in the room: your name {name} was lost while the shared \
                     log was down ({why}). Reconnect to join again.\n"
                );
                self.drop_local_member(conn, &text);
            }
            LogKind::Say(_) => {
                if let Some(Phase::Member { says, .. }) = self.phase_mut(conn) {
                    *says = says.saturating_sub(1);
                }
                let (status, reason) = refusal::unavailable("message not delivered", &why);
                self.refuse(conn, status, reason);
                self.release_held(conn);
            }
            // The host retries leaves; a refused one was reaped already, and that leave
            // entry is on its way.
            LogKind::Leave => {}
        }
    }

    /// The log cannot be reached: joins and messages get `503` with `reason` until the next
    /// [`handle_log_reset`](Self::handle_log_reset). Members stay connected.
    pub fn handle_log_down(&mut self, now: Timestamp, reason: String) {
        self.begin(now);
        if let Log::Shared { down, .. } = &mut self.log {
            *down = Some(reason);
        }
        self.settle();
    }

    /// The log is reachable again and this node missed nothing: it goes on reading where it
    /// stopped, and joins and messages are accepted again.
    pub fn handle_log_up(&mut self, now: Timestamp) {
        self.begin(now);
        if let Log::Shared { down, .. } = &mut self.log {
            *down = None;
        }
        self.settle();
    }

    /// The log is readable again from a consistent point: `members` is everyone it has
    /// claimed, in join order, and the next [`handle_log_entry`](Self::handle_log_entry)
    /// follows it. Call it at start, and after every reconnection. `missed` says entries
    /// were lost to this node (a trimmed gap, or the log itself was reset): local members
    /// are then told ([`RESYNC_NOTICE`]) and messages in flight are given up.
    ///
    /// Local members the log lacks are claimed again ([`LogKind::Rejoin`]).
    pub fn handle_log_reset(
        &mut self,
        now: Timestamp,
        members: Vec<(MemberRef, UserName)>,
        missed: bool,
    ) {
        self.begin(now);
        self.log_reset(members, missed);
        self.settle();
    }

    fn log_reset(&mut self, members: Vec<(MemberRef, UserName)>, missed: bool) {
        let Log::Shared {
            down, in_flight, ..
        } = &mut self.log
        else {
            return;
        };
        *down = None;
        if missed {
            // This node's entries in flight may be lost with the log; those that were not
            // are counted off as they come (never below zero).
            *in_flight = 0;
        }
        // Leaves this node appended keep their cause across the rebuild.
        let leaving: HashMap<MemberRef, Leaving> = self
            .roster
            .by_order
            .values()
            .filter_map(|e| Some((e.member.clone(), e.leaving?)))
            .collect();
        self.roster.clear();
        for (member, name) in members {
            self.roster.insert(member, name);
        }
        let locals: Vec<(ConnId, UserName)> = self
            .room
            .members()
            .map(|(conn, name)| (conn, name.clone()))
            .collect();
        for (conn, name) in locals {
            if self.roster.contains(&self.me(conn)) {
                continue;
            }
            if let Some(Phase::Member { rejoining, .. }) = self.phase_mut(conn)
                && !std::mem::replace(rejoining, true)
            {
                self.append(conn, LogKind::Rejoin(name));
            }
        }
        for conn in self.open_conns() {
            let Some(Phase::Joining { name, .. }) = self.phase_mut(conn) else {
                continue;
            };
            let name = name.clone();
            if self.roster.contains(&self.me(conn)) {
                self.become_member(conn, name, false);
            } else if missed {
                if let Some(phase) = self.phase_mut(conn) {
                    *phase = Phase::Guest;
                }
                let reason = "the shared log was reset; try again";
                let (status, reason) = refusal::unavailable("cannot join now", reason);
                self.refuse(conn, status, reason);
            }
        }
        // Local entries of the log whose connection is no member here leave (again; a
        // leave of a member the log lacks does nothing).
        let gone: Vec<MemberRef> = self
            .roster
            .members()
            .map(|(member, _)| member)
            .filter(|member| {
                self.local(member)
                    .is_some_and(|conn| self.room.name_of(conn).is_none())
            })
            .cloned()
            .collect();
        for member in gone {
            let why = leaving.get(&member).copied().unwrap_or(Leaving::Orphan);
            self.roster.set_leaving(&member, why);
            self.append(ConnId::from_u64(member.member), LogKind::Leave);
        }
        if missed {
            let everyone = self.room.recipients();
            let frame = self.response(Status::OK, RESYNC_NOTICE.as_bytes());
            self.broadcast(everyone, frame);
        }
        for conn in self.open_conns() {
            if missed && let Some(Phase::Member { says, .. }) = self.phase_mut(conn) {
                *says = 0;
            }
            self.release_held(conn);
        }
    }

    // ----- sequencing and applying ---------------------------------------------------------

    /// The author name of `conn`'s entries.
    pub(crate) fn me(&self, conn: ConnId) -> MemberRef {
        MemberRef {
            node: self.node.clone(),
            member: conn.as_u64(),
        }
    }

    /// The local connection of `member`, if it is this node's.
    fn local(&self, member: &MemberRef) -> Option<ConnId> {
        (*member.node == *self.node).then(|| ConnId::from_u64(member.member))
    }

    /// Appends an entry of `conn` to the log.
    pub(crate) fn append(&mut self, conn: ConnId, kind: LogKind) {
        let entry = LogEntry {
            author: self.me(conn),
            kind,
            line: None,
        };
        match &mut self.log {
            Log::Local { queue } => queue.push_back(entry),
            Log::Shared {
                appends, in_flight, ..
            } => {
                *in_flight += usize::from(counts_in_flight(&entry.kind));
                appends.push_back(entry);
            }
        }
    }

    /// One of this node's entries came back from the shared log, applied or refused.
    fn landed(&mut self, kind: &LogKind) {
        if let Log::Shared { in_flight, .. } = &mut self.log
            && counts_in_flight(kind)
        {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Applies entries waiting in the in-process log, in order, until it is empty or this
    /// call's membership changes are spent.
    pub(crate) fn run_log(&mut self) {
        loop {
            let Log::Local { queue } = &mut self.log else {
                return;
            };
            let Some(entry) = queue.pop_front() else {
                return;
            };
            if !matches!(entry.kind, LogKind::Say(_)) {
                if self.changes_left == 0 {
                    queue.push_front(entry);
                    return;
                }
                self.changes_left -= 1;
            }
            self.apply(entry);
        }
    }

    /// Applies one entry of the log: the only place membership changes and chat is
    /// delivered, in both modes.
    fn apply(&mut self, entry: LogEntry) {
        let local = self.local(&entry.author);
        match entry.kind {
            LogKind::Join(name) => self.apply_join(entry.author, local, name, true),
            LogKind::Rejoin(name) => self.apply_join(entry.author, local, name, false),
            LogKind::Say(text) => self.apply_say(&entry.author, local, &text, entry.line),
            LogKind::Leave => self.apply_leave(&entry.author, local),
        }
    }

    fn apply_join(
        &mut self,
        author: MemberRef,
        local: Option<ConnId>,
        name: UserName,
        announce: bool,
    ) {
        if let Some(Phase::Member { rejoining, .. }) = local.and_then(|c| self.phase_mut(c)) {
            *rejoining = false;
        }
        if self.roster.contains(&author) {
            return;
        }
        if !self.roster.insert(author.clone(), name.clone()) {
            // Validated while the name was free, then another join of it was applied first
            // (or the shared log was reset under us): the joiner is refused.
            if let Some(conn) = local
                && let Some(phase @ Phase::Joining { .. }) = self.phase_mut(conn)
            {
                *phase = Phase::Guest;
                let holder = self
                    .roster
                    .holder(&name)
                    .and_then(|h| self.roster.name_of(h));
                let (status, reason) = refusal::name_taken(&name, holder.unwrap_or(&name));
                self.refuse(conn, status, reason);
                self.release_held(conn);
                // A shared log claims names by comparison form only, so it can have claimed
                // a look-alike of a member's name: a leave frees that claim (K4).
                if matches!(self.log, Log::Shared { .. }) {
                    self.append(conn, LogKind::Leave);
                }
            } else if let Some(conn) = local
                && let Some(Phase::Member { .. }) = self.phase(conn)
            {
                // A member claimed again after a reset, whose name a look-alike took meanwhile:
                // it cannot stay in the room without a name in the roster.
                let text = format!(
                    "You are no longer in the room: while the shared log was reset, {name} \
                     became too close to another member's name. Reconnect to join again.\n"
                );
                self.drop_local_member(conn, &text);
                self.append(conn, LogKind::Leave);
            }
            return;
        }
        let Some(conn) = local else {
            if announce {
                self.announce_join(&name);
            }
            self.outputs.push_back(Output::Event(Event::RemoteJoined {
                member: author,
                name,
            }));
            return;
        };
        match self.phase_mut(conn) {
            Some(Phase::Joining { .. }) => {
                self.become_member(conn, name, announce);
                self.release_held(conn);
            }
            Some(Phase::Member { .. }) => {}
            Some(Phase::Guest) | None => {
                // The joiner closed (or its join was given up) before the join was applied:
                // it is in the room for everyone now, so it leaves the same way.
                if announce {
                    self.announce_join(&name);
                }
                self.roster.set_leaving(&author, Leaving::Orphan);
                self.append(conn, LogKind::Leave);
            }
        }
    }

    fn announce_join(&mut self, name: &UserName) {
        let notice = self.notice(body::write_joined, name);
        let everyone = self.room.recipients();
        self.broadcast(everyone, notice);
    }

    /// A join or leave notice (S2.3, S5) about `name`, encoded once for every recipient.
    fn notice(&mut self, write: fn(&mut Vec<u8>, &str), name: &UserName) -> Frame {
        let mut body = Vec::new();
        write(&mut body, name.as_str());
        self.response(Status::OK, &body)
    }

    /// A joiner of this node becomes a member: welcomed, and announced to the others unless
    /// it was already in before a log reset; a history-aware joiner's replay starts (E3),
    /// taken here, at the point in the log where it joins.
    fn become_member(&mut self, conn: ConnId, name: UserName, announce: bool) {
        let ask = match self.phase_mut(conn) {
            Some(Phase::Joining { ask, .. }) => ask.take(),
            _ => None,
        };
        let others = self.room.recipients();
        self.room.insert(conn, name.clone(), ask.is_some());
        if let Some(phase) = self.phase_mut(conn) {
            *phase = Phase::Member {
                says: 0,
                rejoining: false,
            };
        }
        self.refresh_deadline(conn);
        let welcome = self.response(Status::OK, format!("Welcome, {name}!\n").as_bytes());
        self.send(conn, welcome);
        if announce {
            let notice = self.notice(body::write_joined, &name);
            self.broadcast(others, notice);
        }
        self.outputs
            .push_back(Output::Event(Event::Joined { conn, name }));
        if let Some(ask) = ask {
            let replay = self.history.replay(&ask);
            self.start_replay(conn, replay);
        }
    }

    /// `line` is the number a shared log gave the message (E5); a single-process room
    /// numbers its lines itself.
    fn apply_say(
        &mut self,
        author: &MemberRef,
        local: Option<ConnId>,
        text: &str,
        line: Option<u64>,
    ) {
        if let Some(Phase::Member { says, .. }) = local.and_then(|c| self.phase_mut(c)) {
            *says = says.saturating_sub(1);
        }
        if let Some(name) = self.roster.name_of(author) {
            self.said += 1;
            let seq = match (&self.log, line) {
                (Log::Local { .. }, _) => Some(self.history.append(self.now, name, text)),
                (Log::Shared { .. }, Some(line)) => {
                    self.history.append_at(line, self.now, name, text)
                }
                // An entry of a node that does not number lines: no id to give.
                (Log::Shared { .. }, None) => None,
            };
            // E4: the host records it first; what follows waits for it (see `emit`).
            if let Some(line) = seq.and_then(|seq| self.history.hand_out(seq, self.now)) {
                self.outputs.push_back(Output::Record(line));
            }
            let mut body = Vec::new();
            body::write_chat(&mut body, name.as_str(), text);
            if let Some(seq) = seq.filter(|_| self.history.is_on()) {
                let to = self.room.chat_recipients();
                if !to.plain.is_empty() {
                    let frame = self.response(Status::OK, &body);
                    self.broadcast_only(to.plain, frame);
                }
                // Encoded with its id only when some member is history-aware (E2).
                if !to.aware.is_empty() || !self.room.replaying().is_empty() {
                    let id = self.history.id(seq);
                    let frame = self.response_at(Status::OK, &body, self.now, Some(&id));
                    self.broadcast(to.aware, frame);
                }
            } else {
                // No id to give (history off, or turned off by a failed record, E4).
                let frame = self.response(Status::OK, &body);
                let everyone = self.room.recipients();
                self.broadcast(everyone, frame);
            }
        }
        if let Some(conn) = local {
            self.release_held(conn);
        }
    }

    fn apply_leave(&mut self, author: &MemberRef, local: Option<ConnId>) {
        let Some((name, leaving)) = self.roster.remove(author) else {
            return;
        };
        if let (Some(conn), None) = (local, leaving) {
            // Other nodes took this one for dead and reaped its members.
            let text = "You are no longer in the room: the other servers took this one for \
                        dead and announced your leave. Reconnect to join again.\n";
            self.drop_local_member(conn, text);
        }
        let notice = self.notice(body::write_left, &name);
        let others = self.room.recipients();
        self.broadcast(others, notice);
        let event = match (local, leaving) {
            (None, _) => Event::RemoteLeft {
                member: author.clone(),
                name,
            },
            (Some(conn), Some(Leaving::Member(cause))) => Event::Left { conn, name, cause },
            (Some(_), _) => return,
        };
        self.outputs.push_back(Output::Event(event));
    }

    /// A member of this node leaves (S5, S6): it gets nothing more from now on, its name is
    /// free here, and its leave is appended; the others see it when the leave is applied.
    pub(crate) fn leave(&mut self, conn: ConnId, cause: LeaveCause) {
        let Some(name) = self.room.remove(conn) else {
            return;
        };
        if !self
            .roster
            .set_leaving(&self.me(conn), Leaving::Member(cause))
        {
            // Its claim was lost in a reset and not made again: nobody else has it.
            self.outputs
                .push_back(Output::Event(Event::Left { conn, name, cause }));
        }
        self.append(conn, LogKind::Leave);
    }

    /// Disconnects a local member the log no longer has, with `text` as a `503`.
    fn drop_local_member(&mut self, conn: ConnId, text: &str) {
        let Some(name) = self.room.remove(conn) else {
            return;
        };
        if let Some(phase) = self.phase_mut(conn) {
            *phase = Phase::Guest;
        }
        let frame = self.response(Status::SERVICE_UNAVAILABLE, text.as_bytes());
        self.send(conn, frame);
        let cause = LeaveCause::ConnectionError;
        self.close(conn, Some(CloseMode::AfterFlush), cause);
        self.outputs
            .push_back(Output::Event(Event::Left { conn, name, cause }));
    }

    /// The member `name` collides with (S2.2): a member of this node, or a member of the
    /// roster whose leave this node has not appended.
    pub(crate) fn taken_by(&self, name: &UserName) -> Option<&UserName> {
        self.room
            .taken_by(name)
            .or_else(|| self.roster.held_by(name))
    }

    /// The log's half of [`check_invariants`](Self::check_invariants): the roster's names are
    /// unique; every local member is in the roster (or being claimed again) and not leaving;
    /// every local entry of the roster is a member here or leaving.
    pub(crate) fn check_log(&self) -> Result<(), String> {
        let mut names = NameIndex::default();
        for (member, name) in self.roster.members() {
            if !names.insert(name, ()) {
                return Err(format!("roster member {name} collides with another"));
            }
            if let Some(conn) = self.local(member) {
                let here = self.room.name_of(conn) == Some(name);
                if !here && self.roster.leaving(member).is_none() {
                    return Err(format!("roster member {name} ({conn:?}) is not here"));
                }
            }
        }
        for (conn, name) in self.room.members() {
            let me = self.me(conn);
            let rejoining = matches!(
                self.phase(conn),
                Some(Phase::Member {
                    rejoining: true,
                    ..
                })
            );
            if !self.roster.contains(&me) && !rejoining {
                return Err(format!(
                    "local member {name} ({conn:?}) is not in the roster"
                ));
            }
            if self.roster.leaving(&me).is_some() {
                return Err(format!("local member {name} ({conn:?}) is also leaving"));
            }
        }
        Ok(())
    }
}

/// Whether an entry of this kind counts against [`MAX_ENTRIES_IN_FLIGHT`] (K1): joins and
/// messages, the entries that always come back, applied or refused.
fn counts_in_flight(kind: &LogKind) -> bool {
    matches!(kind, LogKind::Join(_) | LogKind::Say(_))
}
