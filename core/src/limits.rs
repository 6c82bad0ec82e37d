//! Limits and configuration, with the defaults of PROTOCOL.md section X.

use std::time::Duration;

pub use crate::server::flood::FloodLimits;
pub use crate::server::history::HistoryConfig;

/// Framing limits for one direction of a stream (W5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest head in bytes: start line, header lines, their line ends and the empty line.
    pub max_head_bytes: usize,
    /// Most header lines besides the start line.
    pub max_header_lines: usize,
    /// Largest body in bytes.
    pub max_body_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            max_header_lines: 64,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl FrameLimits {
    /// Limits for reading a server's responses: the bodies of `GET` replies grow with the
    /// room (up to `max_connections` names of up to 128 bytes), so a client allows more.
    pub fn for_responses() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            ..Self::default()
        }
    }
}

/// Everything the server room machine is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Framing limits for requests (W5).
    pub frame: FrameLimits,
    /// Connections served at once, counting those still closing (S13); the next one gets
    /// `503` (S10).
    pub max_connections: usize,
    /// Unsent output per connection before it is cut as a slow reader (S8).
    pub max_output_bytes: usize,
    /// How long a connection that has not joined may send nothing (S9).
    pub idle_timeout: Duration,
    /// How long a started request may take to complete (S9).
    pub request_timeout: Duration,
    /// The value of the `Server` response header.
    pub server_header: String,
    /// The value of the `Developer` response header.
    pub developer_header: String,
    /// Flood control (S12).
    pub flood: FloodLimits,
    /// History and resume (E1): off unless the host hands in an epoch it chose.
    pub history: HistoryConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            frame: FrameLimits::default(),
            max_connections: 10_000,
            max_output_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            server_header: concat!("chathttp/", env!("CARGO_PKG_VERSION")).to_owned(),
            developer_header: "chathttp".to_owned(),
            flood: FloodLimits::default(),
            history: HistoryConfig::off(),
        }
    }
}
