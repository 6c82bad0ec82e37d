//! The room's Redis keys (docs/CLUSTER.md, "Keys").

/// The room's keys. The `{ROOM}` hash tag keeps them in one slot, and every script is given
/// the keys it touches (none builds a key name itself).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `chathttp:{ROOM}`: every key's prefix.
    pub(crate) prefix: String,
    /// The stream that is the log.
    pub(crate) log: String,
    /// Set once per life of the Redis data: a new value means Redis lost everything.
    pub(crate) epoch: String,
    /// The room-wide counter of entries.
    pub(crate) seq: String,
    /// The counter of chat lines: a line's id is `EPOCH.LINE` (E5).
    pub(crate) lines: String,
    /// Name key → the member holding it.
    pub(crate) names: String,
    /// Member → its join order, name key and name.
    pub(crate) presence: String,
    /// Node → when its liveness expires (ms, Redis's clock).
    pub(crate) alive: String,
}

impl Keys {
    pub(crate) fn new(room: &str) -> Self {
        let prefix = format!("chathttp:{{{room}}}");
        let key = |name: &str| format!("{prefix}:{name}");
        Self {
            log: key("log"),
            epoch: key("epoch"),
            seq: key("seq"),
            lines: key("lines"),
            names: key("names"),
            presence: key("presence"),
            alive: key("alive"),
            prefix,
        }
    }

    /// The outcomes of `node`'s appends, by ticket (K4).
    pub(crate) fn outcomes(&self, node: &str) -> String {
        format!("{}:outcome:{node}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_s_keys_share_its_hash_tag() {
        let keys = Keys::new("main");
        assert_eq!(keys.prefix, "chathttp:{main}");
        assert_eq!(keys.log, "chathttp:{main}:log");
        assert_eq!(keys.epoch, "chathttp:{main}:epoch");
        assert_eq!(keys.alive, "chathttp:{main}:alive");
        assert_eq!(keys.outcomes("n1"), "chathttp:{main}:outcome:n1");
    }
}
