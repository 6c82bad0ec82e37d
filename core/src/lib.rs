//! ChatHTTP/1.1 as pure state machines: the wire codec, the server room and the client
//! session. No I/O, no clock, no threads: bytes and events go in, actions come out.
//!
//! Placeholder crate docs; the run-loop walkthrough follows with the runtimes.

#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod ids;
pub mod limits;
pub mod server;
pub mod time;
pub mod wire;

pub use error::{FrameError, NameError, UsageError};
pub use ids::{ConnId, UserName};
pub use limits::{FrameLimits, ServerConfig};
pub use server::{CloseMode, Disconnect, Event, LeaveCause, Output, Server};
pub use time::Timestamp;
pub use wire::{Frame, Method, Request, Response, Status};
