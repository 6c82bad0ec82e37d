//! Logging to standard error (`RUST_LOG`, default `info`), and the room's events as log lines.

use std::io;

use chathttp_core::Event;

/// Starts logging to standard error, in colour on a terminal.
pub(crate) fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_env_filter(filter)
        .init();
}

/// One log line per join, leave (with its cause) and refused request.
pub(crate) fn log_event(event: &Event) {
    match event {
        Event::Joined { conn, name } => tracing::info!(%conn, %name, "joined"),
        Event::Left { conn, name, cause } => tracing::info!(%conn, %name, ?cause, "left"),
        Event::Refused {
            conn,
            status,
            reason,
        } => tracing::info!(%conn, status = status.code(), reason, "bad request"),
        Event::GuestClosed { conn, cause } => tracing::debug!(%conn, ?cause, "guest closed"),
        Event::OverCapacity { conn } => tracing::warn!(%conn, "over capacity: refused"),
        other => tracing::debug!(?other, "event"),
    }
}
