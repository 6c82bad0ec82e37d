//! The event loop: one thread, edge-triggered epoll (mio), every member a non-blocking
//! socket with its own input remainder and output buffer.
//!
//! Cost per delivery is what matters here: a read fills a 256 KiB scratch buffer, frames
//! are parsed in place from it, and only an incomplete tail is copied into the member's
//! own buffer. Senders write several messages per `write()` in open loop, and paced
//! senders are woken by a timerfd, all that are due at once.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use chathttp_core::Method;
use chathttp_loadgen::sys::{CpuSample, Timer, now_ns};
use chathttp_loadgen::websocket::{self, Deframer};
use chathttp_loadgen::wire::{self, Body, Frame, Headers, body};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::Options;
use crate::stats::Histogram;

const TIMER: Token = Token(usize::MAX - 1);
/// "No message from this sender yet" in a member's last-seen sequence table.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    /// Connected, `ADD` sent; waiting for the greeting and the reply to `ADD`.
    Joining,
    Joined,
    Closed,
}

/// A member's socket: plaintext, or TLS over it (`--ca`), and with `--ws` WebSocket frames
/// inside. Reads and writes ChatHTTP bytes and, like the socket, fails with `WouldBlock`
/// when it must wait.
#[derive(Debug)]
struct Conn {
    tcp: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    ws: Option<Box<Deframer>>,
    /// With `--ws`: payloads decoded and not yet read.
    decoded: Vec<u8>,
}

impl Conn {
    /// Whether reads give less than the socket held (TLS records, WebSocket frames), so a
    /// short read does not mean the socket is drained.
    fn is_layered(&self) -> bool {
        self.tls.is_some() || self.ws.is_some()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ws.is_none() {
            return self.read_stream(buf);
        }
        while self.decoded.is_empty() {
            let mut raw = [0; 64 * 1024];
            let n = self.read_stream(&mut raw)?;
            let Some(ws) = &mut self.ws else { break };
            if n == 0 || !ws.feed(&raw[..n], &mut self.decoded)? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.decoded.len());
        buf[..n].copy_from_slice(&self.decoded[..n]);
        self.decoded.drain(..n);
        Ok(n)
    }

    fn read_stream(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            if tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets().map_err(io::Error::other)?;
            // The handshake's replies; the rest goes out when the socket is writable.
            match send_records(tls, &mut self.tcp) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.write(buf);
        };
        send_records(tls, &mut self.tcp)?;
        let taken = tls.writer().write(buf)?;
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match send_records(tls, &mut self.tcp) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(taken),
        }
    }

    /// Writes the records TLS has ready.
    fn flush_tls(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => send_records(tls, &mut self.tcp),
            None => Ok(()),
        }
    }
}

fn send_records(tls: &mut rustls::ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(tcp)?;
    }
    Ok(())
}

#[derive(Debug)]
struct Member {
    sock: Option<Conn>,
    state: State,
    /// Bytes of an incomplete response, kept between reads.
    pending: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    greeted: bool,
    /// Set while parsing when the reply to `ADD` arrives; committed after the read.
    just_joined: bool,
    failure: Option<String>,
    /// Per sender, the highest sequence number received so far.
    last_seq: Vec<u32>,
    /// Message ids (sender * messages + seq) in arrival order, for the total-order check.
    received: Vec<u32>,
    fifo_violations: u64,
    /// Messages sent so far (senders only), and when the next one is due (paced only).
    sent: u64,
    next_due: u64,
    /// On `Bench::again`.
    again: bool,
}

/// Everything counted during a run.
#[derive(Debug, Default)]
pub struct Counters {
    pub deliveries: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Chat lines whose text is not the benchmark's, or names a sender or sequence
    /// number out of range.
    pub malformed: u64,
    pub latency: Histogram,
    /// How late a paced sender sent each message relative to its schedule.
    pub send_lag: Histogram,
    pub first_send: u64,
    pub last_send: u64,
    pub last_delivery: u64,
    pub last_rx: u64,
    pub join_notices: u64,
    pub leave_notices: u64,
    /// The names the leave notices announced: members the server cut, whether or not this
    /// tool saw their sockets close before it stopped reading.
    pub left: std::collections::BTreeSet<Vec<u8>>,
    pub other_responses: u64,
    pub joined: usize,
    pub join_failed: usize,
    pub closed_after_join: usize,
    in_flight: usize,
    pub close_reasons: BTreeMap<String, u64>,
    pub error_statuses: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub reads: u64,
    /// Polls that returned at least one event.
    pub polls: u64,
    pub frames: u64,
    /// One bit per (member, message): has this member had this message?
    seen: Vec<u64>,
}

/// Per-member order results, computed after a run.
#[derive(Debug)]
pub struct MemberOrder {
    pub member: usize,
    pub fifo: u64,
    pub total_order: u64,
}

/// Progress reporting: about once a second on stderr, from the second second of a run on.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    phase: &'static str,
    last: CpuSample,
    last_deliveries: u64,
}

#[derive(Debug)]
pub struct Bench {
    pub o: Options,
    poll: Poll,
    events: Events,
    members: Vec<Member>,
    pub c: Counters,
    scratch: Vec<u8>,
    timer: Timer,
    sending: bool,
    /// The `Datetime` header of every request (`--min-headers` sends none).
    datetime: [u8; 19],
    pub t_start: u64,
    deadline: u64,
    progress: Progress,
    /// Events copied out of `events` (handling them needs `&mut self`); kept to reuse.
    ready: Vec<(usize, bool, bool, bool)>,
    /// When the last poll returned events (for `--spin-us`).
    last_event_ns: u64,
    /// Members whose last turn read a whole `scratch` and may have more: read again on the
    /// next turn (edge-triggered epoll will not say so again).
    again: Vec<usize>,
}

/// The headers every request of the run carries (`--min-headers`).
fn headers<'a>(o: &Options, datetime: &'a [u8; 19]) -> Headers<'a> {
    if o.min_headers {
        Headers::Min
    } else {
        Headers::Full { datetime }
    }
}

fn trunc(s: &str, n: usize) -> String {
    let s = s.trim();
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Bench {
    pub fn new(o: Options) -> io::Result<Self> {
        let poll = Poll::new()?;
        let timer = Timer::new()?;
        poll.registry()
            .register(&mut SourceFd(&timer.raw_fd()), TIMER, Interest::READABLE)?;
        let bits = if o.idle > 0 {
            0
        } else {
            o.members as u64 * o.senders as u64 * o.messages
        };
        let c = Counters {
            seen: vec![0; bits.div_ceil(64) as usize],
            ..Counters::default()
        };
        let t_start = now_ns();
        let deadline = t_start + (o.max_s * 1e9) as u64;
        let progress = Progress {
            enabled: !o.no_progress,
            phase: "joining",
            last: CpuSample::take(o.server_pid),
            last_deliveries: 0,
        };
        Ok(Self {
            o,
            poll,
            events: Events::with_capacity(1024),
            members: Vec::new(),
            c,
            scratch: vec![0; 256 * 1024],
            timer,
            sending: false,
            datetime: wire::datetime_now(),
            t_start,
            deadline,
            progress,
            ready: Vec::with_capacity(1024),
            last_event_ns: 0,
            again: Vec::new(),
        })
    }

    pub fn past_deadline(&self) -> bool {
        now_ns() > self.deadline
    }

    fn name(&self, i: usize) -> String {
        format!("{}{i}", self.o.name_prefix)
    }

    // ------------------------------------------------------------ connections

    fn open(&mut self, i: usize) {
        let mut m = Member {
            sock: None,
            state: State::Connecting,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            greeted: false,
            just_joined: false,
            failure: None,
            last_seq: if self.o.idle > 0 {
                Vec::new()
            } else {
                vec![NONE; self.o.senders]
            },
            received: Vec::new(),
            fifo_violations: 0,
            sent: 0,
            next_due: 0,
            again: false,
        };
        let name = self.name(i);
        let headers = headers(&self.o, &self.datetime);
        wire::write_request(&mut m.out, Method::Add, &name, b"", headers);
        self.c.in_flight += 1;
        let addr = self.o.addrs[i % self.o.addrs.len()];
        let registered = TcpStream::connect(addr).and_then(|mut tcp| {
            tcp.set_nodelay(true)?;
            self.poll.registry().register(
                &mut tcp,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let tls = match &self.o.tls {
                None => None,
                Some(config) => {
                    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                    let session =
                        rustls::ClientConnection::new(std::sync::Arc::clone(config), name)
                            .map_err(io::Error::other)?;
                    Some(Box::new(session))
                }
            };
            let ws = self.o.ws.then(|| {
                let mut request = std::mem::take(&mut m.out);
                let (upgrade, accept) = websocket::upgrade_request(&addr.to_string());
                m.out = upgrade;
                websocket::frame_request(&mut m.out, &request);
                request.clear();
                Box::new(Deframer::new(accept))
            });
            Ok(Conn {
                tcp,
                tls,
                ws,
                decoded: Vec::new(),
            })
        });
        match registered {
            Ok(s) => {
                m.sock = Some(s);
                self.members.push(m);
            }
            Err(e) => {
                self.members.push(m);
                self.close(i, &format!("connect: {e}"));
            }
        }
    }

    fn close(&mut self, i: usize, reason: &str) {
        let m = &mut self.members[i];
        if m.state == State::Closed {
            return;
        }
        if let Some(mut s) = m.sock.take() {
            let _ = self.poll.registry().deregister(&mut s.tcp);
        }
        let was = m.state;
        m.state = State::Closed;
        m.pending = Vec::new();
        m.out = Vec::new();
        m.out_pos = 0;
        let key = if was == State::Joined {
            self.c.closed_after_join += 1;
            format!("after join: {}", trunc(reason, 70))
        } else {
            self.c.join_failed += 1;
            self.c.in_flight -= 1;
            trunc(reason, 80)
        };
        *self.c.close_reasons.entry(key).or_default() += 1;
    }

    /// Writes pending output until the socket is full. True when nothing is left.
    fn flush(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        if matches!(m.state, State::Connecting | State::Closed) {
            return false;
        }
        let Some(sock) = m.sock.as_mut() else {
            return false;
        };
        match sock.flush_tls() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                self.close(i, &format!("write: {e}"));
                return false;
            }
        }
        while m.out_pos < m.out.len() {
            match sock.write(&m.out[m.out_pos..]) {
                Ok(0) => {
                    self.close(i, "write returned 0");
                    return false;
                }
                Ok(n) => {
                    m.out_pos += n;
                    self.c.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(i, &format!("write: {e}"));
                    return false;
                }
            }
        }
        m.out.clear();
        m.out_pos = 0;
        true
    }

    /// Reads what member `i` has, at most one `scratch` full per turn: independent clients
    /// each read their own socket, so one member that the server keeps filling must not
    /// keep the others waiting. A member with more to read goes on `again`.
    fn on_readable(&mut self, i: usize) {
        let mut turn = 0;
        loop {
            if turn >= self.scratch.len() {
                if !self.members[i].again {
                    self.members[i].again = true;
                    self.again.push(i);
                }
                break;
            }
            let m = &mut self.members[i];
            let Some(sock) = m.sock.as_mut() else { return };
            // The frame the last read ended in goes in front of this read, so that the read
            // is parsed in place: a few hundred bytes copied, not the whole read.
            let carried = match m.pending.len() {
                small if small <= self.scratch.len() / 2 => small,
                _ => 0,
            };
            self.scratch[..carried].copy_from_slice(&m.pending[..carried]);
            match sock.read(&mut self.scratch[carried..]) {
                Ok(0) => {
                    let reason = m
                        .failure
                        .take()
                        .unwrap_or_else(|| "closed by server".into());
                    self.close(i, &reason);
                    return;
                }
                Ok(n) => {
                    let now = now_ns();
                    turn += carried + n;
                    self.c.bytes_in += n as u64;
                    self.c.reads += 1;
                    self.c.last_rx = now;
                    self.absorb(i, carried, n, now);
                    self.commit_join(i);
                    // Edge-triggered: a short read means the socket is drained for now
                    // (not over TLS, where a read returns one record's plaintext).
                    let m = &self.members[i];
                    let layered = m.sock.as_ref().is_some_and(Conn::is_layered);
                    if m.failure.is_some() || (!layered && n < self.scratch.len() - carried) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason = m.failure.take().unwrap_or_else(|| format!("read: {e}"));
                    self.close(i, &reason);
                    return;
                }
            }
        }
        if let Some(f) = self.members[i].failure.take() {
            self.close(i, &f);
        } else if !self.members[i].out.is_empty()
            || self.members[i]
                .sock
                .as_ref()
                .is_some_and(|s| s.tls.is_some())
        {
            self.flush(i);
        }
    }

    fn commit_join(&mut self, i: usize) {
        let m = &mut self.members[i];
        if m.just_joined {
            m.just_joined = false;
            m.state = State::Joined;
            self.c.joined += 1;
            self.c.in_flight -= 1;
        }
    }

    /// Parses the `n` bytes a read put in `scratch`, after the `carried` bytes of the
    /// remainder kept from the previous read that were copied in front of them.
    fn absorb(&mut self, i: usize, carried: usize, n: usize, now: u64) {
        let Self {
            members,
            c,
            scratch,
            o,
            ..
        } = self;
        let m = &mut members[i];
        if m.pending.len() == carried {
            let end = carried + n;
            m.pending.clear();
            let used = parse_responses(m, i, c, o, &scratch[..end], now);
            if used < end && m.failure.is_none() {
                m.pending.extend_from_slice(&scratch[used..end]);
            }
        } else {
            m.pending.extend_from_slice(&scratch[..n]);
            let mut pending = std::mem::take(&mut m.pending);
            let used = parse_responses(m, i, c, o, &pending, now);
            if m.failure.is_none() {
                pending.drain(..used.min(pending.len()));
                m.pending = pending;
            }
        }
    }

    /// Waits for events (at most `timeout`) and handles them.
    pub fn step(&mut self, timeout: Duration) {
        let spinning = self.o.spin_us > 0
            && now_ns().saturating_sub(self.last_event_ns) < self.o.spin_us * 1000;
        let timeout = if spinning || !self.again.is_empty() {
            Duration::ZERO
        } else {
            timeout
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => crate::die(&format!("poll: {e}")),
        }
        if !self.events.is_empty() {
            self.last_event_ns = now_ns();
            self.c.polls += 1;
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|ev| {
            (
                ev.token().0,
                ev.is_readable() || ev.is_read_closed(),
                ev.is_writable(),
                ev.is_error(),
            )
        }));
        for i in self.again.drain(..) {
            if let Some(m) = self.members.get_mut(i) {
                m.again = false;
                ready.push((i, true, false, false));
            }
        }
        for &(token, readable, writable, error) in &ready {
            if token == TIMER.0 {
                self.timer.acknowledge();
                continue;
            }
            let i = token;
            if i >= self.members.len() || self.members[i].state == State::Closed {
                continue;
            }
            if self.members[i].state == State::Connecting && !self.finish_connect(i, error) {
                continue;
            }
            if readable || error {
                self.on_readable(i);
            }
            if writable && self.members[i].state != State::Closed {
                self.flush(i);
                if self.sending && self.o.rate <= 0.0 && i < self.o.senders {
                    self.pump_open_loop(i);
                }
            }
        }
        self.ready = ready;
        self.maybe_progress();
    }

    /// A connecting socket became ready: connected (true) or failed (closed, false).
    fn finish_connect(&mut self, i: usize, error: bool) -> bool {
        let Some(sock) = self.members[i].sock.as_mut().map(|s| &mut s.tcp) else {
            return false;
        };
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            self.close(i, &format!("connect: {e}"));
            return false;
        }
        if error {
            self.close(i, "connect: socket error");
            return false;
        }
        match sock.peer_addr() {
            Ok(_) => {
                self.members[i].state = State::Joining;
                self.flush(i);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => false,
            Err(e) => {
                self.close(i, &format!("connect: {e}"));
                false
            }
        }
    }

    fn maybe_progress(&mut self) {
        let now = now_ns();
        let p = &self.progress;
        if !p.enabled || now - p.last.t_ns < 1_000_000_000 || now - self.t_start < 2_000_000_000 {
            return;
        }
        let sample = CpuSample::take(self.o.server_pid);
        let secs = (sample.t_ns - p.last.t_ns) as f64 / 1e9;
        let rate = (self.c.deliveries - p.last_deliveries) as f64 / secs;
        let server = p.last.server_delta(&sample).map_or(String::new(), |s| {
            format!(", server {:.0}%", 100.0 * s / secs)
        });
        let sent: u64 = self
            .members
            .iter()
            .take(self.o.senders)
            .map(|m| m.sent)
            .sum();
        eprintln!(
            "chat-bench: {:>6.1} s {}: joined {}/{} ({} failed, {} closed), sent {}, delivered {} ({:.0}/s), generator {:.0}%{}",
            (now - self.t_start) as f64 / 1e9,
            p.phase,
            self.c.joined,
            self.o.members,
            self.c.join_failed,
            self.c.closed_after_join,
            sent,
            self.c.deliveries,
            rate,
            100.0 * (sample.generator_s - p.last.generator_s) / secs,
            server,
        );
        self.progress.last = sample;
        self.progress.last_deliveries = self.c.deliveries;
    }

    // ------------------------------------------------------------ phases

    /// Opens every member, at most `--join-concurrency` joining at once, until all have
    /// joined or failed.
    pub fn connect_all(&mut self) {
        self.progress.phase = "joining";
        let n = self.o.members;
        let mut next = 0;
        loop {
            while next < n && self.c.in_flight < self.o.join_concurrency {
                self.open(next);
                next += 1;
            }
            if next >= n && self.c.in_flight == 0 {
                break;
            }
            if self.past_deadline() {
                eprintln!("chat-bench: gave up on joins at the --max-s limit");
                break;
            }
            self.step(Duration::from_millis(20));
        }
    }

    /// Join notices the joined members should have received: the k-th to join sees the
    /// k - 1 later joins ... summed, n(n-1)/2 (S2.3: only *other* members get the notice).
    pub fn expected_join_notices(&self) -> u64 {
        let n = self.c.joined as u64;
        n * n.saturating_sub(1) / 2
    }

    /// Waits until every join notice has arrived, or nothing arrived for `--settle-ms`.
    pub fn settle(&mut self) {
        self.progress.phase = "settling";
        let want = self.expected_join_notices();
        let mut quiet_since = now_ns().max(self.c.last_rx);
        while self.c.join_notices < want {
            let now = now_ns();
            quiet_since = quiet_since.max(self.c.last_rx);
            if now - quiet_since > self.o.settle_ms * 1_000_000 || self.past_deadline() {
                break;
            }
            self.step(Duration::from_millis(20));
        }
    }

    /// Keeps the connections served for `ms` (idle scenario).
    pub fn hold(&mut self, ms: u64) {
        self.progress.phase = "holding";
        let until = now_ns() + ms * 1_000_000;
        while now_ns() < until && !self.past_deadline() {
            self.step(Duration::from_millis(20));
        }
    }

    pub fn joined(&self, i: usize) -> bool {
        self.members[i].state == State::Joined
    }

    pub fn receivers(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.state == State::Joined)
            .count()
    }

    fn sender_done(&self, i: usize) -> bool {
        let m = &self.members[i];
        m.state == State::Closed || (m.sent >= self.o.messages && m.out_pos >= m.out.len())
    }

    fn encode_message(&mut self, i: usize, now: u64) {
        let name = self.name(i);
        let headers = headers(&self.o, &self.datetime);
        let m = &mut self.members[i];
        let mut text = Vec::with_capacity(self.o.payload + 32);
        wire::write_payload(&mut text, i, m.sent, now, self.o.payload);
        if self.o.ws {
            let mut request = Vec::with_capacity(text.len() + 256);
            wire::write_request(&mut request, Method::Post, &name, &text, headers);
            websocket::frame_request(&mut m.out, &request);
        } else {
            wire::write_request(&mut m.out, Method::Post, &name, &text, headers);
        }
        m.sent += 1;
    }

    /// Open loop: keep sender `i`'s socket full, `--batch` messages per write.
    fn pump_open_loop(&mut self, i: usize) {
        loop {
            let m = &self.members[i];
            if m.out_pos < m.out.len() && !self.flush(i) {
                return;
            }
            let m = &self.members[i];
            if m.state != State::Joined || m.sent >= self.o.messages {
                return;
            }
            let now = now_ns();
            for _ in 0..self.o.batch {
                if self.members[i].sent >= self.o.messages {
                    break;
                }
                self.encode_message(i, now);
            }
            self.c.last_send = now;
            if !self.flush(i) {
                return;
            }
        }
    }

    /// Paced: send every message now due, then arm the timer for the next one.
    fn tick(&mut self) {
        let interval = (1e9 / self.o.rate) as u64;
        let now = now_ns();
        let mut next = u64::MAX;
        for i in 0..self.o.senders {
            if self.members[i].state != State::Joined {
                continue;
            }
            let mut made = false;
            while self.members[i].sent < self.o.messages && self.members[i].next_due <= now {
                self.c.send_lag.record(now - self.members[i].next_due);
                self.encode_message(i, now);
                self.members[i].next_due += interval;
                made = true;
            }
            let m = &self.members[i];
            if m.sent < self.o.messages {
                next = next.min(m.next_due);
            }
            if made {
                self.c.last_send = now;
                self.flush(i);
            }
        }
        if next != u64::MAX {
            // At very high rates, wake at most once per --tick-us and send all that is due.
            self.timer.arm_at(next.max(now + self.o.tick_us * 1000));
        }
    }

    /// Sends every sender's messages, then waits for the deliveries to drain: until all
    /// `expected` have arrived or nothing arrived for `--drain-ms`. Returns the time the
    /// last message was written.
    pub fn send_and_drain(&mut self, expected: u64) -> u64 {
        self.progress.phase = "sending";
        self.sending = true;
        // Start on a clean millisecond boundary so the first sends are not skewed by setup.
        let t0 = now_ns() + 1_000_000;
        while now_ns() < t0 {
            std::hint::spin_loop();
        }
        self.c.first_send = t0;
        if self.o.rate > 0.0 {
            let interval = 1e9 / self.o.rate;
            let senders = self.o.senders as f64;
            for i in 0..self.o.senders {
                // Spread the senders over one interval rather than all at once.
                self.members[i].next_due = t0 + (i as f64 * interval / senders) as u64;
            }
            self.tick();
        } else {
            for i in 0..self.o.senders {
                self.pump_open_loop(i);
            }
        }
        while !(0..self.o.senders).all(|i| self.sender_done(i)) {
            if self.past_deadline() {
                eprintln!("chat-bench: stopped sending at the --max-s limit");
                break;
            }
            self.step(Duration::from_millis(20));
            if self.o.rate > 0.0 {
                self.tick();
            }
        }
        let send_end = now_ns();
        self.progress.phase = "draining";
        while self.c.unique < expected {
            let last = self.c.last_delivery.max(send_end);
            if now_ns() - last > self.o.drain_ms * 1_000_000 || self.past_deadline() {
                break;
            }
            self.step(Duration::from_millis(20));
        }
        send_end
    }

    pub fn messages_sent(&self) -> u64 {
        self.members
            .iter()
            .take(self.o.senders)
            .map(|m| m.sent)
            .sum()
    }

    /// Order results per member: FIFO per sender, and agreement with the order of one
    /// reference member (the first receiver that is not a sender and received anything).
    pub fn member_orders(&self) -> Vec<MemberOrder> {
        let ids = self.o.senders * self.o.messages as usize;
        let reference = (self.o.senders..self.members.len())
            .chain(0..self.o.senders)
            .find(|&i| !self.members[i].received.is_empty())
            .map_or(&[][..], |i| &self.members[i].received[..]);
        let order = crate::stats::ReferenceOrder::new(ids, reference);
        self.members
            .iter()
            .enumerate()
            .map(|(member, m)| MemberOrder {
                member,
                fifo: m.fifo_violations,
                total_order: order.violations(&m.received),
            })
            .collect()
    }
}

// ---------------------------------------------------------------- response handling

/// Parses whole responses from the front of `buf`; returns how many bytes were used.
fn parse_responses(
    m: &mut Member,
    i: usize,
    c: &mut Counters,
    o: &Options,
    buf: &[u8],
    now: u64,
) -> usize {
    let mut pos = 0;
    loop {
        match wire::parse_frame(&buf[pos..]) {
            Frame::Incomplete => return pos,
            Frame::Bad(why) => {
                m.failure = Some(format!("protocol error: {why}"));
                return buf.len();
            }
            Frame::Ok {
                status,
                body_start,
                body_end,
            } => {
                c.frames += 1;
                on_response(
                    m,
                    i,
                    c,
                    o,
                    status,
                    &buf[pos + body_start..pos + body_end],
                    now,
                );
                if m.just_joined && m.state == State::Joining {
                    // Later frames in this buffer are already member traffic.
                    m.state = State::Joined;
                }
                pos += body_end;
            }
        }
    }
}

fn on_response(
    m: &mut Member,
    i: usize,
    c: &mut Counters,
    o: &Options,
    status: u16,
    body: &[u8],
    now: u64,
) {
    match m.state {
        State::Joining => {
            if status == 202 && !m.greeted {
                m.greeted = true;
            } else if status == 200 {
                m.just_joined = true;
            } else {
                let text = String::from_utf8_lossy(body);
                m.failure = Some(format!("join refused: {status} {}", trunc(&text, 60)));
            }
        }
        State::Joined => match body::parse(body) {
            Body::Chat { text, .. } => deliver(m, i, c, o, text, now),
            Body::Joined { .. } => c.join_notices += 1,
            Body::Left { name } => {
                c.leave_notices += 1;
                if !c.left.contains(name) {
                    c.left.insert(name.to_vec());
                }
            }
            Body::Members(_) | Body::Other(_) if status != 200 => {
                let text = String::from_utf8_lossy(body);
                *c.error_statuses
                    .entry(format!("{status} {}", trunc(&text, 40)))
                    .or_default() += 1;
            }
            Body::Members(_) | Body::Other(_) => c.other_responses += 1,
        },
        State::Connecting | State::Closed => {}
    }
}

fn deliver(m: &mut Member, i: usize, c: &mut Counters, o: &Options, text: &[u8], now: u64) {
    let Some((sender, seq, sent_ns)) = wire::parse_payload(text) else {
        c.malformed += 1;
        return;
    };
    if sender >= o.senders as u64 || seq >= o.messages || sent_ns > now {
        c.malformed += 1;
        return;
    }
    c.deliveries += 1;
    c.latency.record(now - sent_ns);
    c.last_delivery = now;
    let id = sender * o.messages + seq;
    let bit = i as u64 * (o.senders as u64 * o.messages) + id;
    let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
    if c.seen[word] & mask != 0 {
        c.duplicates += 1;
    } else {
        c.seen[word] |= mask;
        c.unique += 1;
    }
    let last = &mut m.last_seq[sender as usize];
    if *last != NONE && seq as u32 <= *last {
        m.fifo_violations += 1;
    } else {
        *last = seq as u32;
    }
    m.received.push(id as u32);
}
