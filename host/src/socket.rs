//! Sockets: the listener (with the `listening on` line), the options of every accepted
//! connection, and cutting one at once.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process;
use std::time::Duration;

use crate::Settings;
use crate::descriptors::DescriptorLimit;

/// How long an accept loop waits after a failed `accept` (EMFILE and friends) before trying
/// again, so that running out of descriptors neither spins nor stops the server.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the `--bind` address and prints `listening on ADDR` (with the real port) to standard
/// output, then logs the descriptor limit and warns if `--max-connections` does not fit in it
/// (S13). If the address cannot be bound, prints one line to standard error and exits 1.
pub fn listen(settings: &Settings) -> TcpListener {
    let listener = announce(settings.bind, "");
    if let Some(limit) = settings.descriptors {
        log_descriptor_limit(&limit, settings.config.max_connections);
    }
    listener
}

/// Binds `addr` and prints `{what}listening on ADDR` with the real port; if it cannot be
/// bound, prints one line to standard error and exits 1 (section X).
pub(crate) fn announce(addr: SocketAddr, what: &str) -> TcpListener {
    let listener = match bind(addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {addr}: {error}");
            process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    println!("{what}listening on {local}");
    // The test suite and scripts wait for this line; a pipe would otherwise hold it.
    let _ = io::Write::flush(&mut io::stdout());
    listener
}

fn log_descriptor_limit(limit: &DescriptorLimit, max_connections: usize) {
    let show = |n: Option<u64>| n.map_or("unlimited".to_owned(), |n| n.to_string());
    if limit.before == limit.now {
        tracing::info!("descriptor limit {}", show(limit.now));
    } else {
        let (before, now) = (show(limit.before), show(limit.now));
        tracing::info!("descriptor limit raised from {before} to {now}");
    }
    if let Some(warning) = limit.warning(max_connections) {
        tracing::warn!("{warning}");
    }
}

/// How many connections the kernel may hold established for us before `accept`. std's
/// `TcpListener::bind` asks for 128, which a burst of clients connecting at once overflows;
/// the dropped ones come back only with the SYN's retransmission, a second later.
const LISTEN_BACKLOG: i32 = 1024;

/// `TcpListener::bind` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as std sets it).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Tunes an accepted connection:
///
/// * `TCP_NODELAY`: responses are small and should leave at once;
/// * TCP keepalive (S9): members are never cut for silence, so vanished peers must be found by
///   the kernel;
/// * `TCP_NOTSENT_LOWAT` of `max_output_bytes`: the kernel takes at most that much more for a
///   peer that does not read, as the server itself does (S8). Left to itself, Linux grows a
///   socket's send buffer to megabytes: every peer that never reads would pin that much
///   kernel memory, cost a `send` per broadcast until full, and hold its backlog where S8
///   cannot count it. Bytes in flight to a peer that reads are not limited (they are sent,
///   not unsent), so a fast reader keeps the whole window.
pub fn tune_socket(stream: &impl AsFd, max_output_bytes: usize) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    let unsent = u32::try_from(max_output_bytes).unwrap_or(u32::MAX);
    let result = socket
        .set_tcp_nodelay(true)
        .and_then(|()| socket.set_tcp_keepalive(&keepalive))
        .and_then(|()| socket.set_tcp_notsent_lowat(unsent));
    if let Err(error) = result {
        tracing::debug!(%error, "cannot tune an accepted socket");
    }
}

/// Cuts a connection at once (`CloseMode::Now`): wakes a writer stuck on a peer that does
/// not read and the reader, and makes the final close a reset. A reset also frees what the
/// kernel still holds for the peer; a graceful close would keep up to a socket buffer of
/// unread bytes alive for minutes in an orphaned socket, per slow reader.
pub fn abort_socket(stream: &impl AsFd) {
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// Logs a failed `accept`. The caller then waits [`ACCEPT_BACKOFF`] and tries again.
pub fn accept_failed(error: &io::Error) {
    tracing::warn!(%error, "accept failed; retrying in {ACCEPT_BACKOFF:?}");
}
