//! What `chat-hostile` and `chat-soak` share: a server child process they start, watch
//! (`/proc/PID`) and stop by its own PID, and a blocking ChatHTTP peer built on the core's
//! request encoder and response decoder.

// Each binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chathttp_core::wire::encode::{RequestFields, write_request};
use chathttp_core::wire::{Progress, ResponseDecoder};
use chathttp_core::{FrameLimits, Method};
use socket2::{Domain, Socket, Type};

/// A server binary running as our child, listening on a loopback port it picked itself.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its PID (the server's own: `prlimit` execs it).
    pub pid: u32,
}

impl ServerProcess {
    /// Starts `binary --bind 127.0.0.1:0 ARGS…`, under `prlimit --nofile=N:N` when
    /// `nofile` is given, with standard error appended to `log`, and waits for its
    /// `listening on ADDR` line.
    pub fn start(
        binary: &Path,
        args: &[String],
        nofile: Option<u64>,
        log: &Path,
    ) -> io::Result<Self> {
        let mut command = match nofile {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let stderr = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = command
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            // Warnings only (failed accepts), unless the caller asks for more.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok());
        match addr {
            Some(addr) => Ok(Self { child, addr, pid }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "{} did not say `listening on ADDR` (got {line:?})",
                    binary.display()
                )))
            }
        }
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_field("VmRSS:")
    }

    /// Peak resident set size so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_field("VmHWM:")
    }

    fn status_field(&self, name: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|line| line.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// User plus system CPU time so far, in clock ticks (fields 14 and 15 of
    /// `/proc/PID/stat`, counted after the parenthesised command name).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let mut fields = after_name.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(utime + stime)
    }

    /// Open descriptors of the process now.
    pub fn open_fds(&self) -> Option<usize> {
        Some(fs::read_dir(format!("/proc/{}/fd", self.pid)).ok()?.count())
    }

    /// Stops it with SIGTERM (S11) and waits up to 6 s; kills it if it is still there.
    /// Returns the exit status of the graceful stop, or `None` if it had to be killed.
    pub fn stop(mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let pid = rustix::process::Pid::from_raw(self.pid as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (the load side needs
/// thousands of sockets) and returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

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
        self.stream.write_all(&request_bytes(method, name, body))
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

/// One request's bytes, with the ten headers of the seed.
pub fn request_bytes(method: Method, name: &str, body: &[u8]) -> Vec<u8> {
    let mut datetime = [b'0'; 19];
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    if now.len() == datetime.len() {
        datetime.copy_from_slice(now.as_bytes());
    }
    let mut out = Vec::new();
    let fields = RequestFields {
        host: "127.0.0.1",
        datetime: &datetime,
        user_agent: name,
    };
    write_request(&mut out, method, &fields, body);
    out
}

/// The `q`-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Milliseconds with two decimals, for reports.
pub fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}
