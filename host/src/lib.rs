//! What the three server binaries share, none of it specific to one runtime.
//!
//! * [`start`]: the command line of PROTOCOL.md section X ([`settings`]), logging to standard
//!   error ([`log`]), and the allocator's page size ([`memory`]).
//! * [`descriptors`]: the soft descriptor limit, raised to the hard one at start (S13).
//! * [`listen`], [`tune_socket`], [`abort_socket`] ([`socket`]): the listener and its
//!   `listening on ADDR` line, the options of every accepted connection, a cut.
//! * [`on_shutdown_signal`] ([`signals`]): SIGINT and SIGTERM (S11).
//! * [`Driver`] ([`driver`]): owns the room machine, turns each [`Input`] into the matching
//!   `handle_*` call and carries out the outputs through each connection's [`Outbox`]
//!   ([`outbox`]), closing and lingering as the machine asks ([`closing`]). It reads the
//!   time from a [`Clock`] ([`clock`]), so its tests drive time instead of sleeping.
//! * [`buffers`]: a connection's read buffer and its queue of frames to write, and who
//!   writes a socket when; `fanout`, consecutive broadcasts joined into one buffer.
//! * [`gate`]: the [`ReadGate`] every reader asks before it reads, closed while the room
//!   machine paces the room (S8.1).
//! * [`gateway`] (`--http`): the browser gateway on threads of its own, handing each
//!   upgraded WebSocket to the runtime as [`Input::Upgraded`]; [`metrics`], what
//!   `/metrics` serves. In the driver, a WebSocket is a layer like TLS (`layer`,
//!   `websocket`).
//! * `async_loops` (feature `async`): the accept loop, driver loop, reader and writer of an
//!   async server, written once, generic over a `Runtime` of six operations.
//! * `MiMalloc` and `return_freed_memory` (feature `mimalloc`): the async servers' allocator
//!   and the tidy their driver runs when the room falls quiet.
//!
//! An adapter is then four parts and nothing else: an accept loop, a reader and a writer per
//! connection, and a loop that feeds the [`Driver`]. The shared log on Redis (`--redis`) is
//! the `chathttp-cluster` crate, which the driver starts when asked.

#[cfg(feature = "async")]
pub mod async_loops;
pub mod buffers;
pub mod clock;
pub mod closing;
pub mod descriptors;
pub mod driver;
mod fanout;
pub mod gate;
pub mod gateway;
pub mod history;
mod layer;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod settings;
pub mod signals;
pub mod socket;
pub mod tls;
mod websocket;

pub use clock::{Clock, SystemClock};
pub use closing::LINGER;
pub use driver::{
    CLOSES_PER_ROUND, Driver, INPUT_CAPACITY, INPUTS_PER_FLUSH, Input, QUIET_BEFORE_TIDY,
    SHUTDOWN_GRACE,
};
pub use gate::ReadGate;
pub use gateway::{GatewaySettings, Upgrade, listen_http};
#[cfg(feature = "mimalloc")]
pub use memory::{MiMalloc, return_freed_memory};
pub use outbox::Outbox;
pub use settings::Settings;
pub use signals::on_shutdown_signal;
pub use socket::{ACCEPT_BACKOFF, abort_socket, accept_failed, listen, tune_socket};
pub use tls::{Tls, TlsError};

/// Parses the command line of `program`, starts logging and raises the descriptor limit
/// (S13). `--help` and `--version` print
/// and exit 0; a bad flag prints one line to standard error and exits 2.
pub fn start(program: &'static str) -> Settings {
    let mut settings = settings::from_command_line(program);
    settings.log = Some(std::sync::Arc::new(log::init()));
    memory::use_small_pages();
    settings.descriptors = Some(descriptors::raise());
    if let Some((cert, key)) = &settings.tls_files {
        settings.tls = Some(signals::load_tls(cert, key));
    }
    if let Some(path) = &settings.history_file {
        let keep = settings.config.history.lines;
        if keep == 0 {
            eprintln!("error: --history-db needs history: --history 0 turns it off");
            std::process::exit(2);
        }
        match history::HistoryDb::open(path, keep) {
            Ok(db) => {
                settings.config.history = db.config.clone();
                settings.history_db = Some(db);
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        }
    }
    settings
}
