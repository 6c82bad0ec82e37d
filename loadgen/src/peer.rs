//! A blocking ChatHTTP connection for the tools that run a thread per client
//! (`chat-hostile`, `chat-soak`): requests out through [`wire::request_bytes`], responses in
//! through the core's response decoder.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chathttp_core::wire::{Progress, ResponseDecoder};
use chathttp_core::{FrameLimits, Method};
use socket2::{Domain, Socket, Type};

use crate::wire;

/// One response as received, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub body: String,
}

/// Why a peer stopped getting replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Orderly end of stream (FIN).
    Eof,
    /// Connection reset or another read error.
    Reset,
    /// The server sent bytes that cannot be framed as responses.
    Garbage,
}

/// A blocking ChatHTTP connection: requests out through the core's encoder, responses in
/// through its decoder.
#[derive(Debug)]
pub struct Peer {
    pub stream: TcpStream,
    decoder: ResponseDecoder,
    buffer: Vec<u8>,
    /// Unconsumed bytes of `buffer`: `buffer[start..end]`.
    start: usize,
    end: usize,
    name: String,
}

impl Peer {
    /// Connects with a timeout. `recv_buffer`, if given, sets `SO_RCVBUF` before connecting,
    /// which is what makes a client that stops reading fill up quickly.
    pub fn connect(addr: SocketAddr, recv_buffer: Option<usize>) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if let Some(bytes) = recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream))
    }

    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            decoder: ResponseDecoder::new(FrameLimits::for_responses()),
            buffer: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            name: String::new(),
        }
    }

    /// Sends one request, signed with `name` (the server only uses it on ADD).
    pub fn send(&mut self, method: Method, name: &str, body: &[u8]) -> io::Result<()> {
        self.stream
            .write_all(&wire::request_bytes(method, name, body))
    }

    /// The next response, waiting at most until `deadline`. `Ok(None)`: the deadline passed.
    /// `Err(ended)`: the stream ended before a whole response arrived.
    pub fn next_reply(&mut self, deadline: Instant) -> Result<Option<Reply>, Ended> {
        self.next_reply_reading(deadline, usize::MAX)
    }

    /// [`next_reply`](Self::next_reply), reading at most `chunk` bytes per `read` call (slow
    /// readers).
    pub fn next_reply_reading(
        &mut self,
        deadline: Instant,
        chunk: usize,
    ) -> Result<Option<Reply>, Ended> {
        loop {
            if self.start < self.end {
                let (used, progress) = self.decoder.decode(&self.buffer[self.start..self.end]);
                let reply = match progress {
                    Progress::Message(response) => Some(Reply {
                        code: response.code,
                        body: String::from_utf8_lossy(response.body).into_owned(),
                    }),
                    Progress::NeedMore => None,
                    Progress::Error(_) => return Err(Ended::Garbage),
                };
                self.start += used;
                if reply.is_some() {
                    return Ok(reply);
                }
            }
            self.start = 0;
            self.end = 0;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(wait)).is_err() {
                return Err(Ended::Reset);
            }
            let limit = chunk.min(self.buffer.len());
            match self.stream.read(&mut self.buffer[..limit]) {
                Ok(0) => return Err(Ended::Eof),
                Ok(n) => self.end = n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Ended::Reset),
            }
        }
    }

    /// Reads the greeting and joins as `name`: `Ok` once `Welcome, NAME!` arrived.
    pub fn join(&mut self, name: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        self.expect(202, deadline, "greeting")?;
        self.send(Method::Add, name, b"")
            .map_err(|e| format!("ADD {name}: {e}"))?;
        self.expect(200, deadline, "welcome")?;
        self.name = name.to_owned();
        Ok(())
    }

    fn expect(&mut self, code: u16, deadline: Instant, what: &str) -> Result<Reply, String> {
        match self.next_reply(deadline) {
            Ok(Some(reply)) if reply.code == code => Ok(reply),
            Ok(Some(reply)) => Err(format!("{what}: got {} {:?}", reply.code, reply.body)),
            Ok(None) => Err(format!("{what}: timed out")),
            Err(ended) => Err(format!("{what}: stream ended ({ended:?})")),
        }
    }

    /// The name this peer joined with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes both directions now, without reading what is left (a vanishing client).
    pub fn vanish(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
