//! The room's Redis keys (docs/CLUSTER.md, "Keys").

/// The room's keys. The `{ROOM}` hash tag keeps them in one slot.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `chathttp:{ROOM}`: the scripts build every other key from it.
    pub(crate) prefix: String,
    /// The stream that is the log.
    pub(crate) log: String,
    /// Set once per life of the Redis data: a new value means Redis lost everything.
    pub(crate) epoch: String,
}

impl Keys {
    pub(crate) fn new(room: &str) -> Self {
        let prefix = format!("chathttp:{{{room}}}");
        Self {
            log: format!("{prefix}:log"),
            epoch: format!("{prefix}:epoch"),
            prefix,
        }
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
    }
}
