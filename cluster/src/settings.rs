//! How a server joins a shared room: the settings its `--redis` flags give.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a server joins a shared room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis URL (`redis://127.0.0.1:6379/0`).
    pub redis: String,
    /// This node's id: unique among the room's nodes, no whitespace.
    pub node_id: String,
    /// A node that has not refreshed its liveness for this long is taken for dead and its
    /// members leave.
    pub node_ttl: Duration,
    /// About how many entries the stream keeps (`XADD MAXLEN ~`).
    pub max_len: usize,
    /// The room's name: its keys start with `chathttp:{ROOM}:`.
    pub room: String,
    /// The password for Redis's `AUTH`, from `CHATHTTP_REDIS_PASSWORD` rather than the URL,
    /// so that it does not show in `ps` (K2). Overrides a password in the URL.
    pub password: Option<String>,
    /// `--history`: the chat lines this node reads back from the stream for replay (E5).
    pub history: usize,
}

/// The environment variable [`ClusterSettings::password`] is read from.
pub const PASSWORD_VARIABLE: &str = "CHATHTTP_REDIS_PASSWORD";

/// A default node id: host name, process id and the start time, so that a restarted
/// process never reuses the id of its previous life (whose members may still be reaped).
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").ok();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    node_id(host.as_deref(), std::process::id(), nanos)
}

/// The id [`default_node_id`] builds from a host name (as `/etc/hostname` holds it), a
/// process id and a time in nanoseconds. A missing or unprintable host name is `node`.
fn node_id(host: Option<&str>, pid: u32, nanos: u128) -> String {
    let host = host
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("node");
    format!("{host}-{pid}-{:x}", nanos & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_host_pid_and_the_low_bits_of_the_time() {
        let id = node_id(Some("box\n"), 42, 0x1_0000_00ff);
        assert_eq!(id, "box-42-ff");
    }

    #[test]
    fn a_node_id_without_a_printable_host_name_says_node() {
        assert_eq!(node_id(None, 1, 2), "node-1-2");
        assert_eq!(node_id(Some("  \n"), 1, 2), "node-1-2");
        assert_eq!(node_id(Some("my box"), 1, 2), "node-1-2");
    }

    #[test]
    fn the_default_node_id_fits_the_node_id_flag() {
        let id = default_node_id();
        assert!(!id.is_empty() && id.len() <= 64, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_graphic()), "{id}");
    }
}
