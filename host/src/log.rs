//! Logging to standard error (`RUST_LOG`, default `info`), and the room's events as log lines.

use std::io;

use chathttp_core::Event;

/// Log lines a slow standard error may hold back before new ones are dropped.
const LOG_BACKLOG_LINES: usize = 16 * 1024;

/// Keeps the log writer's thread; dropping it (at the end of `main`) writes what is left.
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Starts logging to standard error, in colour on a terminal.
///
/// Lines go through a thread of their own, so a flood of refusals (every bad request is a
/// line) never makes the driver wait on a terminal or a pipe; past [`LOG_BACKLOG_LINES`]
/// waiting lines, new ones are dropped rather than queued.
pub(crate) fn init() -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BACKLOG_LINES)
        .thread_name("log")
        .finish(io::stderr());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_env_filter(filter)
        .init();
    LogGuard(guard)
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
        } => tracing::info!(%conn, status = status.code(), reason, "refused"),
        Event::GuestClosed { conn, cause } => tracing::debug!(%conn, ?cause, "guest closed"),
        Event::OverCapacity { conn } => tracing::warn!(%conn, "over capacity: refused"),
        Event::HistoryOff { reason } => tracing::error!(reason, "history is off from now on"),
        other => tracing::debug!(?other, "event"),
    }
}
