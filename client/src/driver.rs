//! The main-thread glue between a front end, the session machine and the socket.
//!
//! A front end never touches the socket: it answers every input with a list of [`Action`]s,
//! and the [`Driver`] carries them out and reports back what happened through the
//! [`Frontend`] methods (which may ask for more actions). The driver owns the one live
//! [`Conn`] and drops events from connections it has replaced.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use chathttp_core::UsageError;
use chathttp_core::client::{ClientEvent, Intent};

use crate::visible::{visible_event, visible_line};
use chrono::NaiveTime;

use crate::args::ServerAddr;
use crate::net::{self, Clock, Conn, LinkId, NetEvent, Tagged};

/// What a front end asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drop the current connection, if any, and connect to this server.
    Connect(ServerAddr),
    /// Hand this intent to the session.
    Send(Intent),
    /// Stop, with this process exit code.
    Exit(u8),
}

/// The driver's view of a front end. Each method gets what happened and returns what to do
/// next; `at` is the local time of day to show with an event.
pub trait Frontend {
    /// The TCP connection is up (the server's greeting may not have arrived yet).
    fn on_connected(&mut self) -> Vec<Action>;
    /// The connection could not be made.
    fn on_connect_failed(&mut self, reason: String) -> Vec<Action>;
    /// The session has something to show.
    fn on_event(&mut self, event: ClientEvent, at: NaiveTime) -> Vec<Action>;
    /// The session refused an intent (for example, a name that is not valid).
    fn on_send_error(&mut self, intent: Intent, error: UsageError) -> Vec<Action>;
}

/// Owns the connection and carries out actions. See the module docs.
#[derive(Debug)]
pub struct Driver<T> {
    tx: Sender<T>,
    clock: Clock,
    conn: Option<Conn>,
    /// The server of the newest connection, open or being opened.
    server: Option<ServerAddr>,
    link: LinkId,
    /// With `--tls` or `--ca`: how to verify servers (T3).
    tls: Option<Arc<rustls::ClientConfig>>,
    exit: Option<u8>,
}

impl<T> Driver<T>
where
    T: From<Tagged> + Send + 'static,
{
    /// A driver whose connection threads report to `tx`, and connect over TLS with `tls`.
    pub fn new(tx: Sender<T>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self {
            tx,
            clock: Clock::new(),
            conn: None,
            server: None,
            link: 0,
            tls,
            exit: None,
        }
    }

    /// The exit code, once a front end has asked to stop.
    pub fn exit_code(&self) -> Option<u8> {
        self.exit
    }

    /// Carries out `actions`, and whatever the front end asks for in return.
    pub fn run(&mut self, frontend: &mut impl Frontend, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            if self.exit.is_some() {
                return;
            }
            match action {
                Action::Connect(server) => {
                    self.conn = None;
                    self.link += 1;
                    self.server = Some(server.clone());
                    net::spawn_connect(server, self.link, self.tls.clone(), self.tx.clone());
                }
                Action::Send(intent) => {
                    let now = self.clock.now();
                    let result = match &mut self.conn {
                        Some(conn) => conn.send(now, intent.clone()),
                        None => Err(UsageError::NotConnected),
                    };
                    if let Err(error) = result {
                        queue.extend(frontend.on_send_error(intent, error));
                    }
                }
                Action::Exit(code) => self.exit = Some(code),
            }
            queue.extend(self.drain(frontend));
        }
    }

    /// Feeds one network event to the session (or the front end), then carries out the
    /// resulting actions. Events from replaced connections are dropped.
    pub fn handle_net(&mut self, frontend: &mut impl Frontend, tagged: Tagged) {
        if tagged.link != self.link {
            if let NetEvent::Connected(stream) = tagged.event {
                // Replaced while connecting: close it, which also ends its reader thread.
                stream.shutdown();
            }
            return;
        }
        let actions = match tagged.event {
            NetEvent::Connected(stream) => {
                let host = self.server.as_ref().map_or("", |s| s.host.as_str());
                self.conn = Some(Conn::new(tagged.link, host, stream));
                frontend.on_connected()
            }
            // The reason can quote the server (the names on its certificate): data (C1).
            NetEvent::ConnectFailed(reason) => {
                frontend.on_connect_failed(visible_line(&reason).into_owned())
            }
            NetEvent::Received(bytes) => {
                if let Some(conn) = &mut self.conn {
                    conn.received(&bytes);
                }
                Vec::new()
            }
            NetEvent::Closed => {
                if let Some(conn) = &mut self.conn {
                    conn.closed();
                }
                Vec::new()
            }
        };
        self.run(frontend, actions);
        let more = self.drain(frontend);
        self.run(frontend, more);
    }

    /// Hands every pending session event to the front end; returns what it asked for.
    fn drain(&mut self, frontend: &mut impl Frontend) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(conn) = &mut self.conn else {
            return actions;
        };
        while let Some(event) = conn.poll_event() {
            let at = self.clock.now().local().time();
            // A peer's text reaches a front end only as data (C1).
            actions.extend(frontend.on_event(visible_event(event), at));
        }
        if conn.session().is_closed() {
            self.conn = None;
        }
        actions
    }
}
