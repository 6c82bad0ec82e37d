//! The counters `/metrics` serves (B1), in Prometheus's text format.
//!
//! The driver keeps them, with `--http`: the room's events (joins, leaves and cuts by cause,
//! refusals by status) as they happen, its outputs as they are queued, and the room's sizes
//! after each round. They are atomics the gateway's threads read when scraped; the driver
//! never waits for a scrape.

use std::fmt;
use std::sync::atomic::AtomicU64;

use chathttp_core::{Event, LeaveCause, Server};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label naming why a connection ended or was refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: &'static str,
}

/// A label holding a response status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: u16,
}

/// The room's counters and gauges, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    members: Gauge,
    guests: Gauge,
    history_lines: Gauge,
    messages: Counter,
    deliveries: Counter,
    sent_bytes: Counter,
    received_bytes: Counter,
    joins: Counter,
    leaves: Family<Cause, Counter>,
    cuts: Family<Cause, Counter>,
    refused: Family<Code, Counter>,
    upgrades: Counter,
    foreign_origins: Counter,
    /// The room's count of chat lines when last published, to add what is new.
    said: AtomicU64,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("chathttp"),
            connections: Gauge::default(),
            members: Gauge::default(),
            guests: Gauge::default(),
            history_lines: Gauge::default(),
            messages: Counter::default(),
            deliveries: Counter::default(),
            sent_bytes: Counter::default(),
            received_bytes: Counter::default(),
            joins: Counter::default(),
            leaves: Family::default(),
            cuts: Family::default(),
            refused: Family::default(),
            upgrades: Counter::default(),
            foreign_origins: Counter::default(),
            said: AtomicU64::new(0),
        };
        let r = &mut metrics.registry;
        r.register(
            "connections",
            "Open connections of this server, browser members included (S10)",
            metrics.connections.clone(),
        );
        r.register(
            "members",
            "Members connected to this server",
            metrics.members.clone(),
        );
        r.register(
            "guests",
            "Open connections that have not joined",
            metrics.guests.clone(),
        );
        r.register(
            "history_lines",
            "Chat lines the room keeps for replay (E1)",
            metrics.history_lines.clone(),
        );
        r.register(
            "messages",
            "Chat lines said in the room (S3)",
            metrics.messages.clone(),
        );
        r.register(
            "deliveries",
            "Responses queued for connections: chat lines, notices and replies",
            metrics.deliveries.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes of responses queued for connections",
            metrics.sent_bytes.clone(),
        );
        r.register(
            "received_bytes",
            "Bytes of requests received (inside TLS and WebSocket framing)",
            metrics.received_bytes.clone(),
        );
        r.register("joins", "Members who joined", metrics.joins.clone());
        r.register(
            "leaves",
            "Members who left, by cause",
            metrics.leaves.clone(),
        );
        r.register(
            "cuts",
            "Connections the server closed, by cause (S8, S9, S10, S12, W8)",
            metrics.cuts.clone(),
        );
        r.register(
            "refused",
            "Requests refused, by status (4xx)",
            metrics.refused.clone(),
        );
        r.register(
            "websocket_upgrades",
            "Browser members' WebSockets opened on /ws (B1)",
            metrics.upgrades.clone(),
        );
        r.register(
            "foreign_origins",
            "WebSocket upgrades refused for their Origin (B2)",
            metrics.foreign_origins.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// The text `/metrics` serves.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a string cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts one of the room's events.
    pub(crate) fn event(&self, event: &Event) {
        match event {
            Event::Joined { .. } => {
                self.joins.inc();
            }
            Event::Left { cause, .. } => {
                let label = Cause {
                    cause: cause_name(*cause),
                };
                self.leaves.get_or_create(&label).inc();
                self.cut(*cause);
            }
            Event::GuestClosed { cause, .. } => self.cut(*cause),
            Event::OverCapacity { .. } => {
                let label = Cause {
                    cause: "over_capacity",
                };
                self.cuts.get_or_create(&label).inc();
            }
            Event::Refused { status, .. } => {
                let label = Code {
                    code: status.code(),
                };
                self.refused.get_or_create(&label).inc();
            }
            _ => {}
        }
    }

    /// Counts a close the server decided.
    fn cut(&self, cause: LeaveCause) {
        let by_server = !matches!(
            cause,
            LeaveCause::Delete | LeaveCause::PeerClosed | LeaveCause::ConnectionError
        );
        if by_server {
            let label = Cause {
                cause: cause_name(cause),
            };
            self.cuts.get_or_create(&label).inc();
        }
    }

    /// Counts `frames` responses of `bytes` each, queued.
    pub(crate) fn queued(&self, frames: usize, bytes: usize) {
        self.deliveries.inc_by(frames as u64);
        self.sent_bytes.inc_by((frames * bytes) as u64);
    }

    /// Counts bytes of requests received.
    pub(crate) fn received(&self, bytes: usize) {
        self.received_bytes.inc_by(bytes as u64);
    }

    /// Sets the room's sizes, and adds the chat lines said since the last call.
    pub(crate) fn publish(&self, server: &Server) {
        let open = server.connection_count();
        let members = server.room().len();
        self.connections.set(open as i64);
        self.members.set(members as i64);
        self.guests.set(open.saturating_sub(members) as i64);
        self.history_lines
            .set(server.history().lines().len() as i64);
        let said = server.messages_said();
        let before = self.said.swap(said, std::sync::atomic::Ordering::Relaxed);
        self.messages.inc_by(said.saturating_sub(before));
    }

    /// Counts a WebSocket opened.
    pub(crate) fn upgraded(&self) {
        self.upgrades.inc();
    }

    /// Counts a WebSocket refused for its Origin.
    pub(crate) fn foreign_origin(&self) {
        self.foreign_origins.inc();
    }
}

fn cause_name(cause: LeaveCause) -> &'static str {
    match cause {
        LeaveCause::Delete => "delete",
        LeaveCause::PeerClosed => "peer_closed",
        LeaveCause::ConnectionError => "connection_error",
        LeaveCause::IdleTimeout => "idle_timeout",
        LeaveCause::RequestTimeout => "request_timeout",
        LeaveCause::SlowReader => "slow_reader",
        LeaveCause::BadRequest => "bad_request",
        LeaveCause::Shutdown => "shutdown",
        LeaveCause::Flood => "flood",
        _ => "other",
    }
}
