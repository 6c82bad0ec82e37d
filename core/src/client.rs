//! The client session machine.
//!
//! # Theory of operation
//!
//! A [`ClientSession`] stands for one connection to a server. The UI hands it the user's
//! [`Intent`]s; the host hands it the bytes that arrive and tells it when the connection
//! ends. It produces bytes to send ([`poll_transmit`](ClientSession::poll_transmit)) and
//! typed [`ClientEvent`]s for the UI ([`poll_event`](ClientSession::poll_event)).
//!
//! Responses carry no request id: replies and broadcasts are told apart by their bodies,
//! using only the exact texts of H3 (chat line, join, leave, user list), so the session also
//! works against a server that behaves exactly like the original. A response that is none of
//! those four answers the oldest request still waiting for an answer; so does the speaker's
//! own chat line, which is the reply to its `POST` (S3).
//!
//! # History (E2, E3)
//!
//! [`Intent::JoinWithHistory`] sends `ADD` with a `History` header. After the welcome, a
//! server that keeps history sends the replayed lines, each with a `Message_Id`
//! ([`ClientEvent::Replayed`]), then a marker ([`ClientEvent::HistoryEnd`]); nothing else
//! comes before the marker. So anything else in its place (a notice, a member list, a chat
//! line without an id) means the server ignored the header, a revision-1 server or one with
//! history off: [`ClientEvent::NoHistory`], and the session goes on as revision 1.

use std::collections::VecDeque;

use crate::error::UsageError;
use crate::ids::UserName;
use crate::limits::FrameLimits;
use crate::server::SHUTDOWN_NOTICE;
use crate::server::history::Ask;
use crate::time::{Timestamp, datetime_text};
use crate::wire::body::{self, Body};
use crate::wire::encode::{RequestFields, write_request_with_history};
use crate::wire::{Method, Response, ResponseDecoder};

/// What the user wants to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Join the room as this name (`ADD`).
    Join(String),
    /// Join the room as this name, asking for history (`ADD` with `History`, E2).
    JoinWithHistory(String, Ask),
    /// Say this text to everyone (`POST`). It may hold newlines.
    Say(String),
    /// Ask who is online (`GET`).
    ListUsers,
    /// Leave the room (`DELETE`).
    Leave,
}

/// Something for the UI to show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server greeted the connection (S1).
    Connected,
    /// The server accepted our `ADD`: we are in, as `name`.
    Joined {
        /// The name as we sent it (trimmed).
        name: String,
    },
    /// The name we asked for is taken (S2.2).
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// A chat line from the room, ours included (S3).
    ChatLine {
        /// Who said it.
        from: String,
        /// What they said.
        text: String,
        /// Its id, when we joined with history (E2): resume after it.
        id: Option<String>,
    },
    /// A line said before we joined, replayed because we asked (E3).
    Replayed {
        /// Who said it.
        from: String,
        /// What they said.
        text: String,
        /// Its id.
        id: String,
        /// When it was said, as the server's `Datetime` gives it (its local time).
        said_at: Option<chrono::NaiveDateTime>,
    },
    /// The replay is over (E3): what follows is live.
    HistoryEnd {
        /// Lines replayed.
        replayed: usize,
        /// Some lines asked for were no longer kept (or the server restarted since our id).
        missed: bool,
    },
    /// The server ignored the `History` header (revision 1, or history off): nothing is
    /// replayed, and lines carry no ids.
    NoHistory,
    /// Someone else joined (S2.3).
    MemberJoined {
        /// Their name.
        name: String,
    },
    /// Someone left (S5, S6).
    MemberLeft {
        /// Their name.
        name: String,
    },
    /// The answer to `GET`: members in join order (S4).
    UserList {
        /// The names.
        names: Vec<String>,
    },
    /// The server refused a request.
    Refused {
        /// The request refused, if the session could tell which.
        request: Option<Method>,
        /// The status code.
        code: u16,
        /// The server's one-line reason.
        reason: String,
    },
    /// Our `DELETE` was accepted; the server closes the connection next.
    Left,
    /// The connection is over, with the server's last word if it gave one
    /// (`503` full or shutting down, a frame error, or the connection closing).
    Disconnected {
        /// Why, as far as the session knows.
        reason: String,
    },
}

/// Where the replay asked for stands (E3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Not asked for, or over.
    None,
    /// Asked for with `ADD`; not welcomed yet.
    Asked,
    /// Welcomed: replayed lines until the marker.
    Running(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Guest,
    Joining(String),
    Joined(String),
    Leaving(String),
    Closed,
}

/// One client connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct ClientSession {
    host: String,
    decoder: ResponseDecoder,
    phase: Phase,
    /// Requests sent and not yet answered, oldest first.
    waiting: VecDeque<Method>,
    replay: Replay,
    transmit: Vec<u8>,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A session on a fresh connection to `host` (sent as the URI and `Host`, like the
    /// original client does).
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            decoder: ResponseDecoder::new(FrameLimits::for_responses()),
            phase: Phase::Guest,
            waiting: VecDeque::new(),
            replay: Replay::None,
            transmit: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Our name once joined (or while joining).
    pub fn name(&self) -> Option<&str> {
        match &self.phase {
            Phase::Joining(name) | Phase::Joined(name) => Some(name),
            _ => None,
        }
    }

    /// Whether the server has accepted our `ADD` and we have not left.
    pub fn is_joined(&self) -> bool {
        matches!(self.phase, Phase::Joined(_))
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The user wants something. Encodes the request, or says why it cannot be sent now.
    pub fn handle_intent(&mut self, now: Timestamp, intent: Intent) -> Result<(), UsageError> {
        let mut history = None;
        let (method, user_agent, body) = match (&self.phase, intent) {
            (Phase::Closed | Phase::Leaving(_), _) => return Err(UsageError::NotConnected),
            (Phase::Guest, Intent::Join(raw)) => {
                let name = UserName::parse(&raw)?.as_str().to_owned();
                self.phase = Phase::Joining(name.clone());
                self.replay = Replay::None;
                (Method::Add, name, Vec::new())
            }
            (Phase::Guest, Intent::JoinWithHistory(raw, ask)) => {
                let name = UserName::parse(&raw)?.as_str().to_owned();
                if let Ask::After(id) = &ask
                    && !crate::server::history::is_valid_id(id)
                {
                    return Err(UsageError::InvalidHistoryId);
                }
                self.phase = Phase::Joining(name.clone());
                self.replay = Replay::Asked;
                history = Some(ask.to_header());
                (Method::Add, name, Vec::new())
            }
            (_, Intent::Join(_) | Intent::JoinWithHistory(..)) => {
                return Err(UsageError::AlreadyJoined);
            }
            (Phase::Joined(name), Intent::Say(text)) => {
                if text.trim().is_empty() {
                    return Err(UsageError::EmptyMessage);
                }
                let mut body = text.into_bytes();
                body.push(b'\n');
                (Method::Post, name.clone(), body)
            }
            (Phase::Joined(name), Intent::Leave) => {
                let name = name.clone();
                self.phase = Phase::Leaving(name.clone());
                (Method::Delete, name, Vec::new())
            }
            (_, Intent::Say(_) | Intent::Leave) => return Err(UsageError::NotJoined),
            (phase, Intent::ListUsers) => {
                let name = match phase {
                    Phase::Joining(name) | Phase::Joined(name) => name.clone(),
                    _ => String::new(),
                };
                (Method::Get, name, Vec::new())
            }
        };
        let datetime = datetime_text(now.local());
        let fields = RequestFields {
            host: &self.host,
            datetime: &datetime,
            user_agent: &user_agent,
        };
        let history = history.as_deref();
        write_request_with_history(&mut self.transmit, method, &fields, history, &body);
        self.waiting.push_back(method);
        Ok(())
    }

    /// Bytes arrived from the server.
    pub fn handle_received(&mut self, bytes: &[u8]) {
        let Self {
            decoder,
            phase,
            waiting,
            replay,
            events,
            ..
        } = self;
        decoder.decode_each(bytes, |decoded| {
            // After a 503 or an unreadable frame the connection is over: ignore the rest.
            if *phase == Phase::Closed {
                return;
            }
            match decoded {
                Ok(response) => {
                    match replayed(&response, replay) {
                        Some(Some(event)) => return events.push_back(event),
                        Some(None) => events.push_back(ClientEvent::NoHistory),
                        None => {}
                    }
                    events.extend(classify(&response, phase, waiting));
                    if *replay == Replay::Asked {
                        *replay = match phase {
                            Phase::Joining(_) => Replay::Asked,
                            Phase::Joined(_) => Replay::Running(0),
                            _ => Replay::None,
                        };
                    }
                }
                Err(error) => {
                    *phase = Phase::Closed;
                    let reason = format!("the server sent something unreadable: {error}");
                    events.push_back(ClientEvent::Disconnected { reason });
                }
            }
        });
    }

    /// The connection ended (EOF or error), as the host saw it.
    pub fn handle_closed(&mut self) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.events.push_back(ClientEvent::Disconnected {
                reason: "the server closed the connection".into(),
            });
        }
    }

    /// Bytes to write to the connection, if any are waiting.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit))
    }

    /// The next event for the UI.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// While a replay runs (E3), reads `response` as a replayed line or the marker
/// (`Some(Some(event))`). Any other `200` ends it: the server ignored `History`
/// (`Some(None)`, told before the response's own event). `None`: read it as usual.
fn replayed(response: &Response<'_>, replay: &mut Replay) -> Option<Option<ClientEvent>> {
    let Replay::Running(count) = *replay else {
        return None;
    };
    if response.code == 200 {
        if let (Body::Chat { name, text }, Some(id)) =
            (body::parse(response.body), response.message_id)
        {
            *replay = Replay::Running(count + 1);
            let said_at = response
                .datetime
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(crate::time::parse_datetime);
            return Some(Some(ClientEvent::Replayed {
                from: String::from_utf8_lossy(name).into_owned(),
                text: String::from_utf8_lossy(text).into_owned(),
                id: String::from_utf8_lossy(id).into_owned(),
                said_at,
            }));
        }
        *replay = Replay::None;
        if let Some(marker) = response.body.strip_prefix(b"History: ") {
            let missed = marker.ends_with(b", some were missed\n");
            return Some(Some(ClientEvent::HistoryEnd {
                replayed: count,
                missed,
            }));
        }
        return Some(None);
    }
    // A refusal or the shutdown notice: the replay ends with the connection.
    *replay = Replay::None;
    None
}

/// One response, read by its status and H3 body texts. Updates the phase and the queue of
/// requests waiting for an answer.
fn classify(
    response: &Response<'_>,
    phase: &mut Phase,
    waiting: &mut VecDeque<Method>,
) -> Option<ClientEvent> {
    let body = String::from_utf8_lossy(response.body);
    let line = body.strip_suffix('\n').unwrap_or(&body);
    match response.code {
        202 => return Some(ClientEvent::Connected),
        // Only the shutdown notice ends the session (C2); any other 503 (a full room, a
        // shared log that is briefly down) answers a request like any refusal.
        503 if response.body == SHUTDOWN_NOTICE.as_bytes() => {
            *phase = Phase::Closed;
            return Some(ClientEvent::Disconnected {
                reason: line.to_owned(),
            });
        }
        200 => {}
        code => {
            let request = waiting.pop_front();
            return Some(match (request, std::mem::replace(phase, Phase::Guest)) {
                (Some(Method::Add), Phase::Joining(name)) if code == 401 => {
                    ClientEvent::NameTaken { name }
                }
                (request, previous) => {
                    *phase = match (request, previous) {
                        (Some(Method::Add), Phase::Joining(_)) => Phase::Guest,
                        (Some(Method::Delete), Phase::Leaving(name)) => Phase::Joined(name),
                        (_, previous) => previous,
                    };
                    ClientEvent::Refused {
                        request,
                        code,
                        reason: line.to_owned(),
                    }
                }
            });
        }
    }
    match body::parse(response.body) {
        Body::Chat { name: from, text } => {
            let from = String::from_utf8_lossy(from);
            let ours =
                matches!(&*phase, Phase::Joined(name) | Phase::Leaving(name) if *name == from);
            if ours && waiting.front() == Some(&Method::Post) {
                waiting.pop_front();
            }
            return Some(ClientEvent::ChatLine {
                from: from.into_owned(),
                text: String::from_utf8_lossy(text).into_owned(),
                id: response
                    .message_id
                    .map(|id| String::from_utf8_lossy(id).into_owned()),
            });
        }
        Body::Joined { name } => {
            let name = String::from_utf8_lossy(name).into_owned();
            return Some(ClientEvent::MemberJoined { name });
        }
        Body::Left { name } => {
            let name = String::from_utf8_lossy(name).into_owned();
            return Some(ClientEvent::MemberLeft { name });
        }
        Body::Members(list) => {
            if waiting.front() == Some(&Method::Get) {
                waiting.pop_front();
            }
            let names = list.names();
            return Some(ClientEvent::UserList {
                names: names
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect(),
            });
        }
        Body::Other(_) => {}
    }
    // Anything else answers the oldest waiting request.
    match (waiting.pop_front(), &*phase) {
        (Some(Method::Add), Phase::Joining(name)) => {
            let name = name.clone();
            *phase = Phase::Joined(name.clone());
            Some(ClientEvent::Joined { name })
        }
        (Some(Method::Delete), _) => {
            *phase = Phase::Closed;
            Some(ClientEvent::Left)
        }
        _ => None,
    }
}
