//! ChatHTTP/1.1 as pure state machines: the wire codec, the server room and the client
//! session.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or draws a random
//! number. Bytes and events go in through `handle_*` methods; what to do comes out of
//! `poll_*` methods. Time is an argument ([`Timestamp`]). The protocol is described in
//! `docs/PROTOCOL.md`; clause ids (W, R, S, H) in these docs refer to it.
//!
//! # Modules
//!
//! * [`wire`]: message types, the incremental [`wire::RequestDecoder`] and
//!   [`wire::ResponseDecoder`], and the encoders.
//! * [`server`]: the room machine, [`Server`]; in [`server::log`], the log that sequences
//!   every change to the room, either inside one machine or shared by several machines that
//!   so serve one room; in [`server::room`], this machine's members; in
//!   [`server::history`], the last chat lines, their ids and what a joiner asks to replay.
//!   [`server::flood`] is flood control (S12), a token bucket per connection.
//! * [`names`]: which user names are valid (S2.1) and when two collide (S2.2).
//! * [`client`]: the client session machine, [`client::ClientSession`].
//! * [`time`], [`ids`], [`limits`], [`error`]: the vocabulary.
//!
//! # Driving the room machine
//!
//! A host owns one [`Server`] and, for each socket, the [`ConnId`] it was given. Its loop:
//!
//! 1. **Feed one input.** A connection was accepted: [`Server::handle_open`]. Bytes arrived:
//!    [`Server::handle_received`]. The socket took some queued bytes:
//!    [`Server::handle_drained`] (this is what lets the machine cut slow readers, S8). The
//!    peer went away: [`Server::handle_closed`]. The socket of a closed connection is gone
//!    (after a close the machine asked for, or the peer's): [`Server::handle_released`], which
//!    frees its id and its place under the connection limit (S13). The deadline passed:
//!    [`Server::handle_timeout`]. A signal asked to stop: [`Server::handle_shutdown`].
//! 2. **Drain the outputs** with [`Server::poll_output`] until it returns `None`, carrying out
//!    each in order: queue a [`Frame`] for one connection ([`Output::Send`]) or the same frame
//!    for many ([`Output::Broadcast`]); close a connection ([`Output::Close`], after flushing
//!    or at once); log an [`Event`].
//! 3. **Arm the timer** for [`Server::poll_timeout`], and wait for the next input. A
//!    deadline at or before the current time means more work is due now (a slice of
//!    timeouts, or of the room's log): call [`Server::handle_timeout`] as soon as the
//!    inputs already waiting are handled.
//!
//! ```
//! use chathttp_core::{Output, Server, ServerConfig, Timestamp};
//!
//! let mut server = Server::new(ServerConfig::default(), Timestamp::from_millis(0));
//! let alice = server.handle_open(Timestamp::from_millis(0));
//! server.handle_received(Timestamp::from_millis(5), alice, b"ADD / HTTP/1.1\nUser_Agent: alice\n\n");
//! let mut replies = Vec::new();
//! while let Some(output) = server.poll_output() {
//!     if let Output::Send { conn, frame } = output {
//!         assert_eq!(conn, alice);
//!         replies.push(String::from_utf8_lossy(&frame).into_owned());
//!     }
//! }
//! assert!(replies[0].starts_with("HTTP/1.1 202 Accept\n"));
//! assert!(replies[1].ends_with("\n\nWelcome, alice!\n"));
//! // A guest that never joins would be cut at the idle timeout: a deadline is armed.
//! assert!(server.poll_timeout().is_none(), "alice is a member now: members are never cut for silence");
//! ```
//!
//! The machine never blocks and never fails because of a peer: a peer's mistakes come out as
//! `4xx` frames, closes and events. A late event for a connection the machine already closed
//! names an id that matches nothing, and is ignored.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod ids;
pub mod limits;
pub mod names;
pub mod server;
pub mod time;
pub mod wire;

pub use error::{FrameError, HistoryError, NameError, UsageError};
pub use ids::{ConnId, UserName};
pub use limits::{FrameLimits, ServerConfig};
pub use server::{CloseMode, Disconnect, Event, LeaveCause, Output, Server};
pub use time::Timestamp;
pub use wire::{Frame, Method, Request, Response, Status};
