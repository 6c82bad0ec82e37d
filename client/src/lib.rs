//! The `chat-client` program as a library, so that its parts can be tested without a terminal
//! or a socket.
//!
//! # Theory of operation
//!
//! One [`ClientSession`](chathttp_core::client::ClientSession) per connection does all the
//! protocol work. Around it:
//!
//! * [`net`] connects in a background thread and then reads the socket into a channel; the
//!   main thread owns the session and is the only writer of the socket. [`link`] is that
//!   socket, plaintext or TLS.
//! * [`driver`] is that main-thread glue: it turns a front end's [`Action`](driver::Action)s
//!   into intents or connections, and hands the session's events back to the front end.
//! * Two front ends implement [`Frontend`](driver::Frontend): [`line`] prints one line per
//!   event (for scripts and pipes), and [`tui`] is the interactive terminal interface. The
//!   TUI's state ([`tui::App`]) is a plain struct that changes only through its `on_*`
//!   methods, and [`tui::view`] renders it; tests render it on ratatui's `TestBackend`.
//! * [`visible`] turns the controls in a peer's text into placeholders before any front end
//!   sees it (C1): the driver passes every event through it.

pub mod args;
pub mod command;
pub mod driver;
pub mod line;
pub mod link;
pub mod net;
pub mod tui;
pub mod visible;
