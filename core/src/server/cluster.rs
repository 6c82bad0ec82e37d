//! Shared-log mode: one room served by several server processes.
//!
//! # Theory of operation
//!
//! In the single-process room an [`Entry`](super::Entry) is applied the moment it is
//! sequenced. In shared-log mode ([`Server::new_shared`](super::Server::new_shared)) the
//! machine stops at the seam: a validated join, message or leave of a local connection comes
//! out of [`Server::poll_append`](super::Server::poll_append) as a [`LogEntry`], and nothing
//! changes yet. The host appends it to the shared log (a Redis Stream), reads the log back
//! and feeds every entry, its own and other nodes', to
//! [`Server::handle_log_entry`](super::Server::handle_log_entry) in log order. Only applying
//! an entry changes membership or delivers chat, so every node applies the same changes in
//! the same order (S7), and `GET` answers from the applied [`Roster`], which lists members
//! of every node in join order (S4).
//!
//! Members are named by a [`MemberRef`]: the node that holds the connection and a number
//! that node chose (this machine uses [`ConnId::as_u64`]). A member of this node is also in
//! the local [`Room`](super::Room), which is the list of connections broadcasts go to.
//!
//! # Ordering rules
//!
//! * **Joins** are claimed by the log (names are unique across nodes, S2.2): the host either
//!   appends the join or reports it refused with
//!   [`Server::handle_append_refused`](super::Server::handle_append_refused)
//!   ([`AppendRefusal::NameTaken`] becomes the usual `401`).
//! * **Replies keep request order** (S7): while a connection has a join in flight, or
//!   messages in flight and its next request is not another message, its later requests
//!   are held, in order, and carried out once its own entries come back. Messages of a
//!   member stream without waiting: the log keeps one node's appends in order.
//! * **Leaves** of local members (`DELETE`, hang-up, cut) take effect locally at once (the
//!   connection gets nothing more) and are appended; the member stays in the roster, and
//!   the others see the leave notice, when the leave entry is applied. A join whose
//!   connection closed before it was applied is applied (the log has it) and then left.
//! * **A leave of a local member that this node did not ask for** means other nodes took this
//!   node for dead and reaped its members: the member is told and disconnected.
//! * **A gap or a reset** of the log (entries trimmed before this node read them, or the log
//!   lost) is [`Server::handle_log_reset`](super::Server::handle_log_reset): local members
//!   get [`RESYNC_NOTICE`], the roster is rebuilt from the host's snapshot of who is claimed,
//!   and local members the snapshot lacks are claimed again ([`LogKind::Rejoin`], applied
//!   without a join notice). Nothing missed is ever skipped silently.
//! * **Log down** ([`Server::handle_log_down`](super::Server::handle_log_down)): joins and
//!   messages get `503` with the reason until the host reports the log back.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::ids::{ConnId, UserName};
use crate::wire::{Request, UserAgent};

/// The body sent to local members after a gap or reset of the shared log.
pub const RESYNC_NOTICE: &str = "Notice: this server missed part of the chat (the shared log was trimmed or reset); \
     some messages may be lost. GET lists who is in now.\n";

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

/// One entry of the shared log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Whose entry it is.
    pub author: MemberRef,
    /// What it does.
    pub kind: LogKind,
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

/// Every member of the shared room, in join (log) order, with names unique by S2.2 key.
#[derive(Debug, Default)]
pub struct Roster {
    by_order: BTreeMap<u64, (MemberRef, UserName)>,
    order_of: HashMap<MemberRef, u64>,
    names: HashMap<Box<str>, MemberRef>,
    next: u64,
}

impl Roster {
    /// Members in join order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&MemberRef, &UserName)> {
        self.by_order.values().map(|(m, n)| (m, n))
    }

    /// The member's name, if it is in.
    pub fn name_of(&self, member: &MemberRef) -> Option<&UserName> {
        let order = self.order_of.get(member)?;
        self.by_order.get(order).map(|(_, name)| name)
    }

    /// Who holds `name` (S2.2 comparison).
    pub fn holder(&self, name: &UserName) -> Option<&MemberRef> {
        self.names.get(name.key())
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

    /// Adds `member` last; false (and nothing changes) if it is in or its name is taken.
    pub(crate) fn insert(&mut self, member: MemberRef, name: UserName) -> bool {
        if self.order_of.contains_key(&member) || self.names.contains_key(name.key()) {
            return false;
        }
        self.next += 1;
        self.names.insert(name.key().into(), member.clone());
        self.order_of.insert(member.clone(), self.next);
        self.by_order.insert(self.next, (member, name));
        true
    }

    pub(crate) fn remove(&mut self, member: &MemberRef) -> Option<UserName> {
        let order = self.order_of.remove(member)?;
        let (_, name) = self.by_order.remove(&order)?;
        self.names.remove(name.key());
        Some(name)
    }

    pub(crate) fn clear(&mut self) {
        self.by_order.clear();
        self.order_of.clear();
        self.names.clear();
    }
}

/// A request held while the connection's earlier entries are in flight, owned.
#[derive(Debug)]
pub(crate) struct HeldRequest {
    method_token: Box<[u8]>,
    target: Box<[u8]>,
    version: Box<[u8]>,
    user_agent: Option<Option<Box<[u8]>>>,
    body: Box<[u8]>,
}

impl HeldRequest {
    pub(crate) fn new(request: &Request<'_>) -> Self {
        Self {
            method_token: request.method_token.into(),
            target: request.target.into(),
            version: request.version.into(),
            user_agent: match request.user_agent {
                UserAgent::Missing => None,
                UserAgent::Value(value) => Some(Some(value.into())),
                UserAgent::Conflicting => Some(None),
            },
            body: request.body.into(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.method_token.len() + self.target.len() + self.version.len() + self.body.len() + 64
    }

    pub(crate) fn as_request(&self) -> Request<'_> {
        Request {
            method_token: &self.method_token,
            target: &self.target,
            version: &self.version,
            user_agent: match &self.user_agent {
                None => UserAgent::Missing,
                Some(Some(value)) => UserAgent::Value(value),
                Some(None) => UserAgent::Conflicting,
            },
            body: &self.body,
        }
    }
}

/// A local connection's entries in flight and the requests held behind them.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The name of a join appended and not yet applied or refused.
    pub(crate) joining: Option<UserName>,
    /// Messages appended and not yet applied or refused.
    pub(crate) says: usize,
    /// Requests that arrived behind them, in order.
    pub(crate) held: VecDeque<HeldRequest>,
    pub(crate) held_bytes: usize,
}

impl Pending {
    pub(crate) fn is_idle(&self) -> bool {
        self.joining.is_none() && self.says == 0 && self.held.is_empty()
    }
}

/// The shared-log state of a [`Server`](super::Server).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: Arc<str>,
    /// `Some(reason)` while the log cannot be reached (or before the first snapshot).
    pub(crate) down: Option<String>,
    pub(crate) roster: Roster,
    pub(crate) pending: HashMap<ConnId, Pending>,
    /// Local members whose leave is appended and not yet applied, by member number.
    pub(crate) leaving: HashSet<u64>,
    /// Local members claimed again after a reset, not yet applied.
    pub(crate) rejoining: HashSet<u64>,
    pub(crate) appends: VecDeque<LogEntry>,
}

impl Shared {
    pub(crate) fn new(node: &str) -> Self {
        Self {
            node: node.into(),
            down: Some("the shared log has not been read yet".into()),
            roster: Roster::default(),
            pending: HashMap::new(),
            leaving: HashSet::new(),
            rejoining: HashSet::new(),
            appends: VecDeque::new(),
        }
    }

    pub(crate) fn me(&self, conn: ConnId) -> MemberRef {
        MemberRef {
            node: self.node.clone(),
            member: conn.as_u64(),
        }
    }

    /// The local connection of `member`, if it is this node's.
    pub(crate) fn local(&self, member: &MemberRef) -> Option<ConnId> {
        (*member.node == *self.node).then(|| ConnId::from_u64(member.member))
    }

    pub(crate) fn append(&mut self, conn: ConnId, kind: LogKind) {
        let author = self.me(conn);
        self.appends.push_back(LogEntry { author, kind });
    }

    /// Whether `name` is held by a member other than one whose leave this node appended.
    pub(crate) fn is_taken(&self, name: &UserName) -> bool {
        self.roster.holder(name).is_some_and(|holder| {
            self.local(holder).is_none() || !self.leaving.contains(&holder.member)
        })
    }
}

// ----- the room machine in shared-log mode -------------------------------------------------

use super::{CloseMode, Command, Event, LeaveCause, Output, Server};
use crate::limits::ServerConfig;
use crate::time::Timestamp;
use crate::wire::Status;

impl Server {
    /// A server in shared-log mode, as node `node` of a room shared through a log (see
    /// [`cluster`](self)). Until the first [`handle_log_reset`](Self::handle_log_reset)
    /// gives it the room as the log has it, joins and messages get `503`.
    pub fn new_shared(config: ServerConfig, now: Timestamp, node: &str) -> Self {
        let mut server = Self::new(config, now);
        server.shared = Some(Box::new(Shared::new(node)));
        server
    }

    /// Every member of the shared room in join order; `None` for a single-process room.
    pub fn roster(&self) -> Option<&Roster> {
        self.shared.as_deref().map(|shared| &shared.roster)
    }

    /// The next entry to append to the shared log, in order; `None` when there is none (and
    /// always in a single-process room). Drain it, like [`poll_output`](Self::poll_output),
    /// after every input.
    #[must_use]
    pub fn poll_append(&mut self) -> Option<LogEntry> {
        self.shared.as_deref_mut()?.appends.pop_front()
    }

    /// Applies the next entry of the shared log, this node's or another's. Feed every entry
    /// exactly once, in log order.
    pub fn handle_log_entry(&mut self, now: Timestamp, entry: LogEntry) {
        self.now = now;
        let Some(shared) = self.shared.as_deref() else {
            return;
        };
        let local = shared.local(&entry.author);
        match entry.kind {
            LogKind::Join(name) => self.apply_join(entry.author, local, name, true),
            LogKind::Rejoin(name) => self.apply_join(entry.author, local, name, false),
            LogKind::Say(text) => self.apply_say(&entry.author, local, &text),
            LogKind::Leave => self.apply_leave(&entry.author, local),
        }
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
        self.now = now;
        let Some(shared) = self.shared.as_deref_mut() else {
            return;
        };
        let Some(conn) = shared.local(&entry.author) else {
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
                let was_joining = shared
                    .pending
                    .get_mut(&conn)
                    .and_then(|p| p.joining.take())
                    .is_some();
                if was_joining {
                    match refusal {
                        AppendRefusal::NameTaken => self.refuse(
                            conn,
                            Status::USER_NAME_EXIST,
                            format!("the user name {name} is taken"),
                        ),
                        _ => self.refuse(
                            conn,
                            Status::SERVICE_UNAVAILABLE,
                            format!("cannot join now: {why}"),
                        ),
                    }
                    self.release_held(conn);
                }
            }
            LogKind::Rejoin(name) => {
                shared.rejoining.remove(&entry.author.member);
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
                if let Some(p) = shared.pending.get_mut(&conn) {
                    p.says = p.says.saturating_sub(1);
                }
                self.refuse(
                    conn,
                    Status::SERVICE_UNAVAILABLE,
                    format!("message not delivered: {why}"),
                );
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
        self.now = now;
        if let Some(shared) = self.shared.as_deref_mut() {
            shared.down = Some(reason);
        }
    }

    /// The log is reachable again and this node missed nothing: it goes on reading where it
    /// stopped, and joins and messages are accepted again.
    pub fn handle_log_up(&mut self, now: Timestamp) {
        self.now = now;
        if let Some(shared) = self.shared.as_deref_mut() {
            shared.down = None;
        }
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
        self.now = now;
        let Some(shared) = self.shared.as_deref_mut() else {
            return;
        };
        shared.down = None;
        shared.roster.clear();
        for (member, name) in members {
            shared.roster.insert(member, name);
        }
        let locals: Vec<(ConnId, UserName)> = self
            .room
            .members()
            .map(|(conn, name)| (conn, name.clone()))
            .collect();
        for (conn, name) in locals {
            let me = shared.me(conn);
            if !shared.roster.contains(&me) && shared.rejoining.insert(me.member) {
                shared.append(conn, LogKind::Rejoin(name));
            }
        }
        let roster = &shared.roster;
        let node = shared.node.clone();
        shared.leaving.retain(|&member| {
            roster.contains(&MemberRef {
                node: node.clone(),
                member,
            })
        });
        let leaving: Vec<u64> = shared.leaving.iter().copied().collect();
        for member in leaving {
            shared.append(ConnId::from_u64(member), LogKind::Leave);
        }
        let joining: Vec<(ConnId, UserName)> = shared
            .pending
            .iter()
            .filter_map(|(&conn, p)| Some((conn, p.joining.clone()?)))
            .collect();
        for (conn, name) in joining {
            let shared = self.shared.as_deref_mut().expect("shared-log mode");
            if shared.roster.contains(&shared.me(conn)) {
                if let Some(p) = shared.pending.get_mut(&conn) {
                    p.joining = None;
                }
                self.become_member(conn, name, false);
            } else if missed {
                if let Some(p) = shared.pending.get_mut(&conn) {
                    p.joining = None;
                }
                let reason = "cannot join now: the shared log was reset; try again".into();
                self.refuse(conn, Status::SERVICE_UNAVAILABLE, reason);
            }
        }
        // A local entry of the log whose connection is gone, and whose leave is not known
        // to be on its way: leave again (a leave of a member the log lacks does nothing).
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        let orphans: Vec<u64> = shared
            .roster
            .members()
            .filter_map(|(member, _)| shared.local(member))
            .filter(|&conn| self.room.name_of(conn).is_none())
            .map(ConnId::as_u64)
            .filter(|member| !shared.leaving.contains(member))
            .collect();
        for member in orphans {
            shared.leaving.insert(member);
            shared.append(ConnId::from_u64(member), LogKind::Leave);
        }
        if missed {
            let everyone = self.room.recipients();
            let frame = self.response(Status::OK, RESYNC_NOTICE.as_bytes());
            self.broadcast(everyone, frame);
        }
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        let conns: Vec<ConnId> = shared.pending.keys().copied().collect();
        for conn in conns {
            if missed {
                let shared = self.shared.as_deref_mut().expect("shared-log mode");
                if let Some(p) = shared.pending.get_mut(&conn) {
                    p.says = 0;
                }
            }
            self.release_held(conn);
        }
    }

    // ----- transitions in shared-log mode ---------------------------------------------------

    /// A complete request: carried out now, or held behind this connection's entries in
    /// flight so that replies keep request order (S7).
    pub(super) fn dispatch(&mut self, conn: ConnId, request: &Request<'_>) {
        if let Some(p) = self
            .shared
            .as_deref()
            .and_then(|shared| shared.pending.get(&conn))
        {
            if !p.is_idle() {
                let streams = p.joining.is_none()
                    && p.held.is_empty()
                    && matches!(self.command(conn, request), Command::Say(_));
                if !streams {
                    return self.hold(conn, request);
                }
            }
        }
        self.carry_out(conn, request);
    }

    fn hold(&mut self, conn: ConnId, request: &Request<'_>) {
        let limit = self.config.max_output_bytes;
        let shared = self.shared.as_deref_mut().expect("only shared mode holds");
        let p = shared.pending.entry(conn).or_default();
        let held = HeldRequest::new(request);
        p.held_bytes += held.len();
        p.held.push_back(held);
        if p.held_bytes > limit {
            // A client that pipelines without end while its entries are in flight is cut
            // like a slow reader (S8): memory stays bounded.
            self.close(conn, Some(CloseMode::Now), LeaveCause::SlowReader);
        }
    }

    /// Carries out held requests once nothing of `conn` is in flight.
    fn release_held(&mut self, conn: ConnId) {
        loop {
            let Some(shared) = self.shared.as_deref_mut() else {
                return;
            };
            let Some(p) = shared.pending.get_mut(&conn) else {
                return;
            };
            if p.joining.is_some() || p.says > 0 {
                return;
            }
            let Some(held) = p.held.pop_front() else {
                shared.pending.remove(&conn);
                return;
            };
            p.held_bytes -= held.len();
            self.carry_out(conn, &held.as_request());
            if !self.is_open(conn) {
                return;
            }
        }
    }

    /// The shared-log half of [`carry_out`](Self::carry_out): joins and messages are
    /// appended, not applied.
    pub(super) fn carry_out_shared(&mut self, conn: ConnId, command: Command<'_>) {
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        match command {
            Command::List => {
                let body = super::member_list(shared.roster.members().map(|(_, name)| name));
                let frame = self.response(Status::OK, &body);
                self.send(conn, frame);
            }
            Command::Refuse(status, reason) => self.refuse(conn, status, reason),
            Command::Join(name) => {
                if let Some(down) = &shared.down {
                    let reason = format!("cannot join now: {down}");
                    return self.refuse(conn, Status::SERVICE_UNAVAILABLE, reason);
                }
                if shared.is_taken(&name) {
                    let reason = format!("the user name {name} is taken");
                    return self.refuse(conn, Status::USER_NAME_EXIST, reason);
                }
                shared.pending.entry(conn).or_default().joining = Some(name.clone());
                shared.append(conn, LogKind::Join(name));
            }
            Command::Say(text) => {
                if let Some(down) = &shared.down {
                    let reason = format!("message not delivered: {down}");
                    return self.refuse(conn, Status::SERVICE_UNAVAILABLE, reason);
                }
                shared.pending.entry(conn).or_default().says += 1;
                shared.append(conn, LogKind::Say(text.to_owned()));
            }
            Command::Leave => {
                if let Some(name) = self.room.name_of(conn) {
                    let goodbye = format!("Goodbye, {name}!\n");
                    let goodbye = self.response(Status::OK, goodbye.as_bytes());
                    self.send(conn, goodbye);
                }
                self.close(conn, Some(CloseMode::AfterFlush), LeaveCause::Delete);
            }
        }
    }

    /// A local member's connection is closing (S5, S6): it gets nothing more from now on,
    /// and its leave is appended; the others see it when the leave is applied.
    pub(super) fn leave_shared(&mut self, conn: ConnId, cause: LeaveCause) {
        let Some(name) = self.room.remove(conn) else {
            return;
        };
        if let Some(c) = self.connection_mut(conn) {
            c.is_member = false;
        }
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        shared.rejoining.remove(&conn.as_u64());
        shared.leaving.insert(conn.as_u64());
        shared.append(conn, LogKind::Leave);
        self.outputs
            .push_back(Output::Event(Event::Left { conn, name, cause }));
    }

    fn apply_join(
        &mut self,
        author: MemberRef,
        local: Option<ConnId>,
        name: UserName,
        announce: bool,
    ) {
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        if local.is_some() {
            shared.rejoining.remove(&author.member);
        }
        if shared.roster.contains(&author) {
            return;
        }
        if !shared.roster.insert(author.clone(), name.clone()) {
            // The log's claim makes this impossible unless the log was reset under us; the
            // applied state keeps names unique, so the joiner is refused.
            if let Some(conn) = local {
                let joining = shared.pending.get_mut(&conn).and_then(|p| p.joining.take());
                if joining.is_some() {
                    let reason = format!("the user name {name} is taken");
                    self.refuse(conn, Status::USER_NAME_EXIST, reason);
                    self.release_held(conn);
                }
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
        let joining = shared.pending.get_mut(&conn).and_then(|p| p.joining.take());
        let guest = self.connection(conn).is_some_and(|c| !c.is_member);
        if joining.is_some() && guest {
            self.become_member(conn, name, announce);
            self.release_held(conn);
        } else if self.room.name_of(conn).is_none() {
            // The joiner closed (or its join was given up) before the log applied it: it
            // is in the room for everyone now, so it leaves the same way.
            if announce {
                self.announce_join(&name);
            }
            let shared = self.shared.as_deref_mut().expect("shared-log mode");
            shared.leaving.insert(author.member);
            shared.append(conn, LogKind::Leave);
        }
    }

    fn announce_join(&mut self, name: &UserName) {
        let mut notice = Vec::new();
        crate::wire::body::write_joined(&mut notice, name.as_str());
        let notice = self.response(Status::OK, &notice);
        let everyone = self.room.recipients();
        self.broadcast(everyone, notice);
    }

    fn become_member(&mut self, conn: ConnId, name: UserName, announce: bool) {
        let others = self.room.recipients();
        let seq = self.room.sequence();
        self.room.insert(seq, conn, name.clone());
        if let Some(c) = self.connection_mut(conn) {
            c.is_member = true;
        }
        self.refresh_deadline(conn);
        let welcome = self.response(Status::OK, format!("Welcome, {name}!\n").as_bytes());
        self.send(conn, welcome);
        if announce {
            let mut notice = Vec::new();
            crate::wire::body::write_joined(&mut notice, name.as_str());
            let notice = self.response(Status::OK, &notice);
            self.broadcast(others, notice);
        }
        self.outputs
            .push_back(Output::Event(Event::Joined { conn, name }));
    }

    fn apply_say(&mut self, author: &MemberRef, local: Option<ConnId>, text: &str) {
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        if let Some(p) = local.and_then(|conn| shared.pending.get_mut(&conn)) {
            p.says = p.says.saturating_sub(1);
        }
        if let Some(name) = shared.roster.name_of(author) {
            let mut body = Vec::new();
            crate::wire::body::write_chat(&mut body, name.as_str(), text);
            let frame = self.response(Status::OK, &body);
            let everyone = self.room.recipients();
            self.broadcast(everyone, frame);
        }
        if let Some(conn) = local {
            self.release_held(conn);
        }
    }

    fn apply_leave(&mut self, author: &MemberRef, local: Option<ConnId>) {
        let shared = self.shared.as_deref_mut().expect("shared-log mode");
        let Some(name) = shared.roster.remove(author) else {
            return;
        };
        let asked = local.is_some() && shared.leaving.remove(&author.member);
        if let (Some(conn), false) = (local, asked) {
            // Other nodes took this one for dead and reaped its members.
            let text = "You are no longer in the room: the other servers took this one for \
                        dead and announced your leave. Reconnect to join again.\n";
            self.drop_local_member(conn, text);
        }
        let mut notice = Vec::new();
        crate::wire::body::write_left(&mut notice, name.as_str());
        let notice = self.response(Status::OK, &notice);
        let others = self.room.recipients();
        self.broadcast(others, notice);
        if local.is_none() {
            let member = author.clone();
            self.outputs
                .push_back(Output::Event(Event::RemoteLeft { member, name }));
        }
    }

    /// Disconnects a local member the log no longer has, with `text` as a `503`.
    fn drop_local_member(&mut self, conn: ConnId, text: &str) {
        let Some(name) = self.room.remove(conn) else {
            return;
        };
        if let Some(c) = self.connection_mut(conn) {
            c.is_member = false;
        }
        let frame = self.response(Status::SERVICE_UNAVAILABLE, text.as_bytes());
        self.send(conn, frame);
        self.close(
            conn,
            Some(CloseMode::AfterFlush),
            LeaveCause::ConnectionError,
        );
        let cause = LeaveCause::ConnectionError;
        self.outputs
            .push_back(Output::Event(Event::Left { conn, name, cause }));
    }

    /// The shared-log half of [`check_invariants`](Self::check_invariants): the roster's
    /// names are unique; every local member is in the roster (or being claimed again);
    /// every local entry of the roster is a member here or has its leave appended; every
    /// connection with entries in flight is open.
    pub(super) fn check_shared(&self) -> Result<(), String> {
        let Some(shared) = self.shared.as_deref() else {
            return Ok(());
        };
        let mut keys = HashSet::new();
        for (member, name) in shared.roster.members() {
            if !keys.insert(name.key()) {
                return Err(format!("two roster members share the key {:?}", name.key()));
            }
            if let Some(conn) = shared.local(member) {
                let here = self.room.name_of(conn) == Some(name);
                if !here && !shared.leaving.contains(&member.member) {
                    return Err(format!("roster member {name} ({conn:?}) is not here"));
                }
            }
        }
        for (conn, name) in self.room.members() {
            let me = shared.me(conn);
            if !shared.roster.contains(&me) && !shared.rejoining.contains(&me.member) {
                return Err(format!(
                    "local member {name} ({conn:?}) is not in the roster"
                ));
            }
            if shared.leaving.contains(&me.member) {
                return Err(format!("local member {name} ({conn:?}) is also leaving"));
            }
        }
        for conn in shared.pending.keys() {
            if !self.is_open(*conn) {
                return Err(format!("{conn:?} has entries in flight but is closed"));
            }
        }
        Ok(())
    }
}
