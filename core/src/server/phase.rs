//! A connection's phase, and every rule for "a request arrived in phase X".
//!
//! # Theory of operation
//!
//! A connection is a [`Phase::Guest`] until its `ADD` is validated and appended to the log;
//! then [`Phase::Joining`] until the join is applied (it becomes a [`Phase::Member`]) or
//! refused (a guest again). A member's messages in flight are counted in its phase. When the
//! connection closes, its phase goes with it: a member's leave is appended, and until it is
//! applied the member's [`Roster`](super::Roster) entry says it is leaving.
//!
//! Replies keep request order (S7): while a connection has a join in flight, or messages in
//! flight and its next request is not another message, its later requests are *held*, in
//! order, and carried out once its own entries are applied or refused. Messages of a member
//! stream without waiting: the log keeps one connection's entries in order.
//!
//! # Transitions
//!
//! Requests are decided by `Server::command` (here); log events by the `apply_*` and
//! `handle_*` methods of [`log`](super::log).
//!
//! | phase | on | do | then |
//! |---|---|---|---|
//! | any | a request while entries are in flight or held | hold it (a member's `POST` streams) | same |
//! | any | `GET` | list the roster (S4) | same |
//! | guest | `ADD` with a valid, free name (and a valid `History`, if any, E2) | append `Join` | joining |
//! | guest | `ADD` otherwise, `POST`, `DELETE` | refuse with a `4xx` (or `503`: log down) | guest |
//! | joining | its join applied | welcome; notice to the others; with `History`, the replay (E3) | member |
//! | joining | its join refused (the name was taken first, the log said no) | `401` or `503`; release held | guest |
//! | member | `ADD` | `403` | member |
//! | member | `POST` | append `Say` | member, one more in flight |
//! | member | its message applied or refused | the chat line, or `503`; release held | member |
//! | member | `DELETE` | goodbye; close after flush | closed, leaving |
//! | member | closed for any other cause | append `Leave` | closed, leaving |
//! | member | a reset log lacks it | append `Rejoin` | member, rejoining |
//! | member | reaped by other nodes, or its rejoin refused | `503`; close | closed |
//! | guest, joining | closed | log it | closed (a join applied later is left at once) |

use std::collections::VecDeque;

use super::flood::{self, Verdict};
use super::history::Ask;
use super::log::{LogKind, MAX_SAYS_IN_FLIGHT};
use super::{CloseMode, LeaveCause, Server, refusal};
use crate::error::{HistoryError, NameError};
use crate::ids::{ConnId, UserName};
use crate::wire::{HeaderValue, Method, Request, Status, VERSION, body};

/// Where a connection stands with the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connected, not a member.
    Guest,
    /// Its join, as `name`, is appended and not yet applied or refused.
    Joining {
        /// The name asked for, validated and free when it was asked.
        name: UserName,
        /// The history asked for with `History` (E2); `None`: not history-aware.
        ask: Option<Ask>,
    },
    /// A member: in the [`Room`](super::Room), and in the roster unless `rejoining`.
    Member {
        /// Messages appended and not yet applied or refused.
        says: usize,
        /// Claimed again after a log reset, and not yet applied.
        rejoining: bool,
    },
}

impl Phase {
    /// Whether a message of this connection may go to the log now, with others in flight.
    pub(crate) fn can_stream(&self) -> bool {
        matches!(self, Phase::Member { says, .. } if *says < MAX_SAYS_IN_FLIGHT)
    }

    /// Whether an entry of this connection is in flight.
    pub(crate) fn in_flight(&self) -> bool {
        match self {
            Phase::Guest => false,
            Phase::Joining { .. } => true,
            Phase::Member { says, .. } => *says > 0,
        }
    }
}

/// Requests held while the connection's entries are in flight, in order, with their size.
#[derive(Debug, Default)]
pub(crate) struct Held {
    requests: VecDeque<HeldRequest>,
    bytes: usize,
}

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// A held request, owned.
#[derive(Debug)]
struct HeldRequest {
    method_token: Box<[u8]>,
    target: Box<[u8]>,
    version: Box<[u8]>,
    user_agent: OwnedHeader,
    history: OwnedHeader,
    body: Box<[u8]>,
}

/// A [`HeaderValue`], owned.
#[derive(Debug)]
enum OwnedHeader {
    Missing,
    Value(Box<[u8]>),
    Conflicting,
}

impl OwnedHeader {
    fn new(value: HeaderValue<'_>) -> Self {
        match value {
            HeaderValue::Missing => Self::Missing,
            HeaderValue::Value(value) => Self::Value(value.into()),
            HeaderValue::Conflicting => Self::Conflicting,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Value(value) => value.len(),
            Self::Missing | Self::Conflicting => 0,
        }
    }

    fn as_header(&self) -> HeaderValue<'_> {
        match self {
            Self::Missing => HeaderValue::Missing,
            Self::Value(value) => HeaderValue::Value(value),
            Self::Conflicting => HeaderValue::Conflicting,
        }
    }
}

impl HeldRequest {
    fn new(request: &Request<'_>) -> Self {
        Self {
            method_token: request.method_token.into(),
            target: request.target.into(),
            version: request.version.into(),
            user_agent: OwnedHeader::new(request.user_agent),
            history: OwnedHeader::new(request.history),
            body: request.body.into(),
        }
    }

    fn is_post(&self) -> bool {
        *self.method_token == *b"POST"
    }

    /// What holding it costs, counted against `max_output_bytes` (S8).
    fn len(&self) -> usize {
        let headers = self.user_agent.len() + self.history.len();
        self.method_token.len()
            + self.target.len()
            + self.version.len()
            + headers
            + self.body.len()
            + 64
    }

    fn as_request(&self) -> Request<'_> {
        Request {
            method_token: &self.method_token,
            target: &self.target,
            version: &self.version,
            user_agent: self.user_agent.as_header(),
            history: self.history.as_header(),
            body: &self.body,
        }
    }
}

/// What a request asks for, once checked against the connection's phase.
#[derive(Debug)]
pub(crate) enum Command<'a> {
    Join(UserName, Option<Ask>),
    Say(&'a str),
    List,
    Leave,
    Refuse(Status, String),
    /// Wait behind this connection's entries in flight.
    Hold,
}

impl Server {
    /// Every rule for "a request arrived in phase X", in one place. `released` says the
    /// request was held and is now first in line.
    pub(crate) fn command<'r>(
        &self,
        conn: ConnId,
        request: &Request<'r>,
        released: bool,
    ) -> Command<'r> {
        use Command::Refuse;
        let Some(c) = self.connection(conn) else {
            // Closed: holding finds no connection, so the request is dropped.
            return Command::Hold;
        };
        let command = if request.version != VERSION {
            let version = String::from_utf8_lossy(request.version);
            Refuse(
                Status::BAD_REQUEST,
                format!("unsupported version {version:?}; expected HTTP/1.1"),
            )
        } else if let Some(method) = request.method() {
            if request.user_agent == HeaderValue::Conflicting {
                Refuse(
                    Status::BAD_REQUEST,
                    "two User_Agent headers that disagree".into(),
                )
            } else {
                self.method_command(conn, &c.phase, method, request)
            }
        } else {
            let token = String::from_utf8_lossy(request.method_token);
            Refuse(
                Status::METHOD_NOT_ALLOWED,
                format!("unknown method {token:?}; use ADD, POST, GET or DELETE"),
            )
        };
        // Behind entries in flight, or requests already held, only a member's messages go
        // on at once, up to MAX_SAYS_IN_FLIGHT of them (K1).
        let queued = !released && !c.held.is_empty();
        let busy = c.phase.in_flight() || queued;
        let streams = c.phase.can_stream() && !queued && matches!(command, Command::Say(_));
        match busy && !streams {
            true => Command::Hold,
            false => command,
        }
    }

    fn method_command<'r>(
        &self,
        conn: ConnId,
        phase: &Phase,
        method: Method,
        request: &Request<'r>,
    ) -> Command<'r> {
        use Command::Refuse;
        match (method, phase) {
            (Method::Get, _) => Command::List,
            (Method::Add, Phase::Member { .. }) => {
                let name = self.room.name_of(conn).map(UserName::as_str).unwrap_or("");
                Refuse(Status::FORBIDDEN, format!("already joined as {name}"))
            }
            (Method::Add, Phase::Guest | Phase::Joining { .. }) => {
                let ask = match self.history.is_on() {
                    true => history_ask(request.history),
                    false => Ok(None),
                };
                match (join_name(request.user_agent), ask) {
                    (Err(error), _) => Refuse(Status::BAD_REQUEST, error.to_string()),
                    (_, Err(error)) => Refuse(Status::BAD_REQUEST, error.to_string()),
                    (Ok(name), Ok(ask)) => match self.taken_by(&name) {
                        Some(holder) => {
                            let (status, reason) = refusal::name_taken(&name, holder);
                            Refuse(status, reason)
                        }
                        None => Command::Join(name, ask),
                    },
                }
            }
            (Method::Post | Method::Delete, Phase::Guest | Phase::Joining { .. }) => Refuse(
                Status::FORBIDDEN,
                format!("{} needs a member: join with ADD first", method.as_str()),
            ),
            (Method::Post, Phase::Member { .. }) => match say_text(request.body) {
                Ok(text) => Command::Say(text),
                Err(reason) => Refuse(Status::BAD_REQUEST, reason.into()),
            },
            (Method::Delete, Phase::Member { .. }) => Command::Leave,
        }
    }

    /// Carries out one complete request: appends its entry, answers it, or holds it.
    pub(crate) fn dispatch(&mut self, conn: ConnId, request: &Request<'_>, released: bool) {
        let command = self.command(conn, request, released);
        // S12: a request is charged when it is carried out (a held one when it is released,
        // so its 429 keeps its place among the replies, S7), unless it is a DELETE or a 400,
        // which cost the room nothing.
        let free = request.method() == Some(Method::Delete)
            || matches!(&command, Command::Hold)
            || matches!(&command, Command::Refuse(status, _) if *status == Status::BAD_REQUEST);
        if !free && !self.take_token(conn) {
            return;
        }
        match command {
            Command::Hold => self.hold(conn, request),
            Command::List => {
                let body = member_list(self.roster.members().map(|(_, name)| name));
                let frame = self.response(Status::OK, &body);
                self.send(conn, frame);
            }
            Command::Refuse(status, reason) => self.refuse(conn, status, reason),
            Command::Join(name, ask) => {
                if let Some(down) = self.log.down() {
                    let (status, reason) = refusal::unavailable("cannot join now", down);
                    return self.refuse(conn, status, reason);
                }
                if let Some(c) = self.connection_mut(conn) {
                    let name = name.clone();
                    c.phase = Phase::Joining { name, ask };
                }
                self.append(conn, LogKind::Join(name));
            }
            Command::Say(text) => {
                if let Some(down) = self.log.down() {
                    let (status, reason) = refusal::unavailable("message not delivered", down);
                    return self.refuse(conn, status, reason);
                }
                if let Some(Phase::Member { says, .. }) = self.phase_mut(conn) {
                    *says += 1;
                }
                self.append(conn, LogKind::Say(text.to_owned()));
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

    /// Takes a token from `conn`'s bucket. Without one, the request gets `429` (and, at the
    /// `--flood-kick`-th refusal in a minute, the connection is closed); returns false.
    fn take_token(&mut self, conn: ConnId) -> bool {
        let (now, limits) = (self.now, self.config.flood);
        let Some(c) = self.connection_mut(conn) else {
            return false;
        };
        let (retry_after, kick) = match c.bucket.take(now, &limits) {
            Verdict::Take => return true,
            Verdict::Refuse { retry_after } => (retry_after, false),
            Verdict::Kick { retry_after } => (retry_after, true),
        };
        let reason = flood::slow_down(&limits, retry_after);
        self.refuse(conn, Status::TOO_MANY_REQUESTS, reason);
        if kick {
            self.close(conn, Some(CloseMode::AfterFlush), LeaveCause::Flood);
        }
        false
    }

    fn hold(&mut self, conn: ConnId, request: &Request<'_>) {
        let limit = self.config.max_output_bytes;
        let Some(c) = self.connection_mut(conn) else {
            return;
        };
        let held = HeldRequest::new(request);
        c.held.bytes += held.len();
        c.held.requests.push_back(held);
        if c.held.bytes > limit {
            // A client that pipelines without end while its entries are in flight is cut
            // like a slow reader (S8): memory stays bounded.
            self.close(conn, Some(CloseMode::Now), LeaveCause::SlowReader);
        }
    }

    /// Carries out held requests while nothing of `conn` is in flight, or while the next one
    /// is a message that may stream behind those in flight.
    pub(crate) fn release_held(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.connection_mut(conn) else {
                return;
            };
            let streams =
                c.phase.can_stream() && c.held.requests.front().is_some_and(|held| held.is_post());
            if c.phase.in_flight() && !streams {
                return;
            }
            let Some(held) = c.held.requests.pop_front() else {
                return;
            };
            c.held.bytes -= held.len();
            self.dispatch(conn, &held.as_request(), true);
        }
    }
}

/// S2: the name is the trimmed `User_Agent` value, valid per S2.1.
fn join_name(user_agent: HeaderValue<'_>) -> Result<UserName, NameError> {
    match user_agent {
        HeaderValue::Value(raw) => {
            UserName::parse(std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?)
        }
        HeaderValue::Missing | HeaderValue::Conflicting => Err(NameError::Missing),
    }
}

/// E2: what an `ADD`'s `History` header asks for; none without the header.
fn history_ask(history: HeaderValue<'_>) -> Result<Option<Ask>, HistoryError> {
    match history {
        HeaderValue::Missing => Ok(None),
        HeaderValue::Value(value) => Ask::parse(value).map(Some),
        HeaderValue::Conflicting => Err(HistoryError::Conflicting),
    }
}

/// S3: UTF-8, one trailing `\n` or `\r\n` dropped, not empty after that.
fn say_text(body: &[u8]) -> Result<&str, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "message is not valid UTF-8")?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        return Err("empty message");
    }
    Ok(text)
}

/// The body of `GET`'s answer (S4): the members' names, one a line, in join order.
fn member_list<'n>(names: impl Iterator<Item = &'n UserName>) -> Vec<u8> {
    let mut out = Vec::new();
    body::write_members(&mut out, names.map(UserName::as_str));
    out
}
