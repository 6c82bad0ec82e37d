//! The chatting members every scenario measures: `N` members (`m0`…) that read promptly and
//! post timestamped lines at a steady rate, with latency, loss, doubling and order checked on
//! every member's stream.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chathttp_core::Method;
use chathttp_loadgen::peer::Peer;
use chathttp_loadgen::wire::{Body, body, request_bytes};

/// How the members talk.
#[derive(Debug, Clone, Copy)]
pub struct ChatConfig {
    /// How many members.
    pub members: usize,
    /// Posts per second per member.
    pub rate: f64,
    /// Body length of each post, in bytes.
    pub body_len: usize,
}

/// What one talking phase produced.
#[derive(Debug)]
pub struct TalkResult {
    /// Posts sent by all members.
    pub sent: u64,
    /// Deliveries expected (every member gets every post, its own included).
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Sorted latencies, post sent to line received, over every delivery.
    pub latencies: Vec<Duration>,
}

impl TalkResult {
    pub fn p50(&self) -> Duration {
        quantile(&self.latencies, 0.50)
    }

    pub fn p99(&self) -> Duration {
        quantile(&self.latencies, 0.99)
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// `N posts, N deliveries, p50 X ms, p99 Y ms`, for reports.
    pub fn summary(&self) -> String {
        format!(
            "{} posts, {} deliveries, p50 {} ms, p99 {} ms",
            self.sent,
            self.received,
            ms(self.p50()),
            ms(self.p99())
        )
    }
}

/// The `q`-quantile (0..=1) of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
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

/// State shared between the members' reader threads and the scenario.
#[derive(Debug, Default)]
struct Shared {
    /// Chat lines from members received, all readers together.
    received: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    /// Problems: a member cut, a line doubled or out of order, anything unexpected.
    errors: Mutex<Vec<String>>,
    /// Join and leave notices of hostile clients (names starting with `h`), seen by `m0`.
    hostile_joins: AtomicU64,
    hostile_leaves: AtomicU64,
    stop: AtomicBool,
}

/// The members, joined and reading.
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    epoch: Instant,
    writers: Vec<TcpStream>,
    /// Next sequence number of each member's posts.
    seqs: Vec<u64>,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

impl Chat {
    /// Connects and joins every member, then starts its reader.
    pub fn join(addr: SocketAddr, config: ChatConfig) -> Result<Self, String> {
        let shared = Arc::new(Shared::default());
        let epoch = Instant::now();
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for i in 0..config.members {
            let name = format!("m{i}");
            let mut peer = Peer::connect(addr, None).map_err(|e| format!("{name}: {e}"))?;
            peer.join(&name, Duration::from_secs(10))?;
            writers.push(
                peer.stream
                    .try_clone()
                    .map_err(|e| format!("{name}: {e}"))?,
            );
            let shared = shared.clone();
            readers.push(thread::spawn(move || read_member(peer, i, epoch, &shared)));
        }
        Ok(Self {
            config,
            epoch,
            writers,
            seqs: vec![0; config.members],
            shared,
            readers,
        })
    }

    /// Every member posts at the configured rate for `duration`, then this waits (up to
    /// 10 s) until every post has reached every member.
    pub fn talk(&mut self, duration: Duration) -> TalkResult {
        let received_before = self.shared.received.load(Ordering::SeqCst);
        if let Ok(mut latencies) = self.shared.latencies.lock() {
            latencies.clear();
        }
        let interval = Duration::from_secs_f64(1.0 / self.config.rate);
        let members = self.config.members;
        let mut handles = Vec::new();
        for (i, stream) in self.writers.iter().enumerate() {
            let mut stream = match stream.try_clone() {
                Ok(stream) => stream,
                Err(e) => {
                    self.error(format!("m{i}: cannot clone the socket: {e}"));
                    continue;
                }
            };
            let first_seq = self.seqs[i];
            let (epoch, body_len) = (self.epoch, self.config.body_len);
            // Members are spread over the interval so posts do not come in bursts.
            let offset = interval.mul_f64(i as f64 / members as f64);
            handles.push(thread::spawn(move || {
                let name = format!("m{i}");
                let start = Instant::now() + offset;
                let end = Instant::now() + duration;
                let mut seq = first_seq;
                let mut at = start;
                while at < end {
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let stamp = epoch.elapsed().as_nanos();
                    let mut body = format!("p{i}:{seq}:{stamp}:").into_bytes();
                    body.resize(body_len.max(body.len()), b'x');
                    if stream
                        .write_all(&request_bytes(Method::Post, &name, &body))
                        .is_err()
                    {
                        break;
                    }
                    seq += 1;
                    at += interval;
                }
                seq - first_seq
            }));
        }
        let mut sent = 0;
        for (i, handle) in handles.into_iter().enumerate() {
            let count = handle.join().unwrap_or(0);
            self.seqs[i] += count;
            sent += count;
        }
        let expected = sent * self.config.members as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        let received = loop {
            let received = self.shared.received.load(Ordering::SeqCst) - received_before;
            if received >= expected || Instant::now() >= deadline {
                break received;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let mut latencies = self
            .shared
            .latencies
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        latencies.sort();
        TalkResult {
            sent,
            expected,
            received,
            latencies,
        }
    }

    /// A `GET` from `m0`'s connection is answered on its reader; instead, ask on a fresh
    /// connection and return the listed names.
    pub fn users(addr: SocketAddr) -> Result<Vec<String>, String> {
        let mut peer = Peer::connect(addr, None).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        match peer.next_reply(deadline) {
            Ok(Some(reply)) if reply.code == 202 => {}
            other => return Err(format!("greeting: {other:?}")),
        }
        peer.send(Method::Get, "probe", b"")
            .map_err(|e| e.to_string())?;
        match peer.next_reply(deadline) {
            Ok(Some(reply)) => match reply.body.strip_prefix("Online users:\n") {
                Some(list) => Ok(list.lines().map(str::to_owned).collect()),
                None => Err(format!("GET: {reply:?}")),
            },
            other => Err(format!("GET: {other:?}")),
        }
    }

    pub fn hostile_joins(&self) -> u64 {
        self.shared.hostile_joins.load(Ordering::SeqCst)
    }

    pub fn hostile_leaves(&self) -> u64 {
        self.shared.hostile_leaves.load(Ordering::SeqCst)
    }

    /// Problems seen so far (member streams cut, doubled or reordered lines, …).
    pub fn errors(&self) -> Vec<String> {
        self.shared
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn error(&self, message: String) {
        if let Ok(mut errors) = self.shared.errors.lock() {
            errors.push(message);
        }
    }

    /// Closes every member and joins the readers.
    pub fn close(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for stream in &self.writers {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for reader in self.readers {
            let _ = reader.join();
        }
    }
}

/// A member's reader: every chat line from a member is checked for order (each sender's
/// sequence numbers arrive one by one, none skipped or repeated) and timed.
fn read_member(mut peer: Peer, me: usize, epoch: Instant, shared: &Shared) {
    let mut next_seq: HashMap<u64, u64> = HashMap::new();
    let record = |message: String| {
        if let Ok(mut errors) = shared.errors.lock() {
            errors.push(message);
        }
    };
    while !shared.stop.load(Ordering::SeqCst) {
        let reply = match peer.next_reply(Instant::now() + Duration::from_millis(200)) {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(ended) => {
                if !shared.stop.load(Ordering::SeqCst) {
                    record(format!("m{me}: the server ended the stream ({ended:?})"));
                }
                return;
            }
        };
        let now = epoch.elapsed();
        match body::parse(reply.body.as_bytes()) {
            Body::Chat { name, text } if name.starts_with(b"m") => {
                let Some((sender, seq, stamp)) = parse_post(text) else {
                    record(format!("m{me}: unparsable chat line {:?}", reply.body));
                    continue;
                };
                let expected = next_seq.entry(sender).or_insert(0);
                if seq != *expected {
                    record(format!(
                        "m{me}: from m{sender} got #{seq}, expected #{expected}"
                    ));
                }
                *expected = seq + 1;
                let latency = now.saturating_sub(Duration::from_nanos(stamp));
                if let Ok(mut latencies) = shared.latencies.lock() {
                    latencies.push(latency);
                }
                shared.received.fetch_add(1, Ordering::SeqCst);
            }
            Body::Joined { name } if me == 0 && name.starts_with(b"h") => {
                shared.hostile_joins.fetch_add(1, Ordering::SeqCst);
            }
            Body::Left { name } if me == 0 && name.starts_with(b"h") => {
                shared.hostile_leaves.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// A member's post text `p{sender}:{seq}:{stamp}:xxx…`: (sender, seq, stamp in ns).
fn parse_post(text: &[u8]) -> Option<(u64, u64, u64)> {
    let text = std::str::from_utf8(text).ok()?.strip_prefix('p')?;
    let mut parts = text.splitn(4, ':');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let stamp = parts.next()?.parse().ok()?;
    Some((sender, seq, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_text_reads_back() {
        assert_eq!(
            parse_post(b"p3:41:987654321:xxxx"),
            Some((3, 41, 987_654_321))
        );
        assert_eq!(parse_post(b"p3:41"), None);
        assert_eq!(parse_post(b"hello"), None);
    }

    #[test]
    fn quantiles_of_sorted_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
