//! The socket side: connect, then read in a background thread; write from the main thread.
//!
//! [`spawn_connect`] starts one thread per connection. It resolves and connects (and with
//! TLS, shakes hands: see [`crate::link`]), hands the main thread a [`Link`] to write with
//! ([`NetEvent::Connected`]), then reads until the
//! connection ends, sending each chunk as [`NetEvent::Received`] and the end as
//! [`NetEvent::Closed`]. Every event carries the [`LinkId`] it belongs to, so the main thread
//! can ignore a late event from a connection it has already replaced.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use chathttp_core::client::{ClientEvent, ClientSession, Intent};
use chathttp_core::{Timestamp, UsageError};

use crate::args::ServerAddr;
use crate::link::Link;

/// How long one connection attempt may take before the user is told.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write may block before the connection counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers connections, so events from a replaced connection can be told apart.
pub type LinkId = u64;

/// What happened on a connection.
#[derive(Debug)]
pub enum NetEvent {
    /// Connected; this handle is for writing (the thread keeps its own for reading).
    Connected(Link),
    /// The connection could not be made; the text says why.
    ConnectFailed(String),
    /// Bytes arrived.
    Received(Vec<u8>),
    /// The server closed the connection, or reading failed.
    Closed,
}

/// A [`NetEvent`] and the connection it belongs to.
#[derive(Debug)]
pub struct Tagged {
    /// Which connection.
    pub link: LinkId,
    /// What happened.
    pub event: NetEvent,
}

/// Connects to `server` in a new thread (over TLS with `tls`), then keeps reading from it.
/// Events go to `tx`, converted into whatever the caller's channel carries.
pub fn spawn_connect<T>(
    server: ServerAddr,
    link: LinkId,
    tls: Option<Arc<rustls::ClientConfig>>,
    tx: Sender<T>,
) where
    T: From<Tagged> + Send + 'static,
{
    let send = move |event| tx.send(T::from(Tagged { link, event })).is_ok();
    thread::spawn(move || {
        let connected = connect(&server)
            .map_err(|error| error.to_string())
            .and_then(|stream| match &tls {
                None => Ok(Link::plain(stream)),
                Some(config) => Link::tls(stream, &server.host, config, CONNECT_TIMEOUT),
            });
        let reader = match connected {
            Ok(reader) => reader,
            Err(error) => {
                send(NetEvent::ConnectFailed(format!(
                    "cannot connect to {server}: {error}"
                )));
                return;
            }
        };
        if !send(NetEvent::Connected(reader.clone())) {
            return;
        }
        let mut buf = vec![0; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !send(NetEvent::Received(buf[..n].to_vec())) {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        send(NetEvent::Closed);
    });
}

/// Tries every address the host resolves to, in order.
fn connect(server: &ServerAddr) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in (server.host.as_str(), server.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// The host's clock, read in this one place.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose monotonic reading starts now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Now, as the core wants it: monotonic time since start and the local wall clock.
    pub fn now(&self) -> Timestamp {
        Timestamp::new(self.origin.elapsed(), chrono::Local::now().naive_local())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// One open connection: the session machine and the stream to write to.
#[derive(Debug)]
pub struct Conn {
    link: LinkId,
    session: ClientSession,
    stream: Link,
}

impl Conn {
    /// Wraps a freshly connected stream. `host` goes into the requests' URI and `Host`.
    pub fn new(link: LinkId, host: &str, stream: Link) -> Self {
        Self {
            link,
            session: ClientSession::new(host),
            stream,
        }
    }

    /// Which connection this is.
    pub fn link(&self) -> LinkId {
        self.link
    }

    /// The session, for its getters.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Sends a request for `intent`, or says why the session cannot send it now.
    pub fn send(&mut self, now: Timestamp, intent: Intent) -> Result<(), UsageError> {
        self.session.handle_intent(now, intent)?;
        while let Some(bytes) = self.session.poll_transmit() {
            if self.stream.write_all(&bytes).is_err() {
                // The reader thread will see the end too; the session learns it here first.
                self.session.handle_closed();
                self.hang_up();
                break;
            }
        }
        Ok(())
    }

    /// Bytes arrived from the server.
    pub fn received(&mut self, bytes: &[u8]) {
        self.session.handle_received(bytes);
        if self.session.is_closed() {
            self.hang_up();
        }
    }

    /// The connection ended.
    pub fn closed(&mut self) {
        self.session.handle_closed();
    }

    /// The next event for the front end.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.session.poll_event()
    }

    /// Closes the socket both ways; the reader thread then ends by itself.
    fn hang_up(&self) {
        self.stream.shutdown();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.hang_up();
    }
}
