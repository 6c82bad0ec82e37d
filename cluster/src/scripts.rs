//! The Lua scripts (in `scripts/*.lua`, docs/CLUSTER.md "Scripts"), and the call that
//! appends an entry with them.
//!
//! Every change to the room is one script, so it is atomic in Redis: a claim and its append,
//! a reap and its leaves.

use std::sync::OnceLock;

use chathttp_core::server::{LogEntry, LogKind};
use redis::Script;

use crate::entry::kind_name;

/// One script: its source, for `EVAL` in pipelines, and its [`Script`], which tries
/// `EVALSHA` first.
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) source: &'static str,
    pub(crate) script: Script,
}

/// The room's scripts, loaded once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) join: Lua,
    pub(crate) say: Lua,
    pub(crate) leave: Lua,
    pub(crate) reap: Lua,
    pub(crate) snapshot: Lua,
    pub(crate) heartbeat: Lua,
}

/// The scripts, hashed on first use.
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    let lua = |source| Lua {
        source,
        script: Script::new(source),
    };
    SCRIPTS.get_or_init(|| Scripts {
        join: lua(include_str!("scripts/join.lua")),
        say: lua(include_str!("scripts/say.lua")),
        leave: lua(include_str!("scripts/leave.lua")),
        reap: lua(include_str!("scripts/reap.lua")),
        snapshot: lua(include_str!("scripts/snapshot.lua")),
        heartbeat: lua(include_str!("scripts/heartbeat.lua")),
    })
}

/// The script that appends `entry` and its arguments, in the order the script reads them;
/// `None` for a kind this version cannot append. `ticket` numbers the node's appends: the
/// script records its outcome under it, and a retry with the same ticket returns that
/// outcome instead of appending again (K4). Pipelines send it as a plain `EVAL` ([`eval`]);
/// alone it goes through [`Script`]'s `EVALSHA`.
pub(crate) fn append_call(
    prefix: &str,
    max_len: usize,
    entry: &LogEntry,
    ticket: u64,
) -> Option<(&'static Lua, Vec<String>)> {
    let scripts = scripts();
    let (node, member) = (
        entry.author.node.to_string(),
        entry.author.member.to_string(),
    );
    let (max_len, ticket) = (max_len.to_string(), ticket.to_string());
    let prefix = prefix.to_owned();
    Some(match &entry.kind {
        LogKind::Join(name) | LogKind::Rejoin(name) => {
            let (key, name) = (name.key().to_string(), name.as_str().to_owned());
            let kind = kind_name(&entry.kind)?.to_owned();
            let args = vec![prefix, node, member, key, name, kind, max_len, ticket];
            (&scripts.join, args)
        }
        LogKind::Say(text) => (
            &scripts.say,
            vec![prefix, node, member, text.clone(), max_len, ticket],
        ),
        LogKind::Leave => (&scripts.leave, vec![prefix, node, member, max_len, ticket]),
        _ => return None,
    })
}

/// `entry`'s append as a plain `EVAL`, for pipelines: unlike `EVALSHA`, it cannot fail with
/// `NOSCRIPT` halfway through a pipeline (Redis caches the compiled script anyway). A kind
/// this version cannot append is a script that refuses it.
pub(crate) fn eval(prefix: &str, max_len: usize, entry: &LogEntry, ticket: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    match append_call(prefix, max_len, entry, ticket) {
        Some((lua, args)) => cmd.arg(lua.source).arg(0).arg(args),
        None => cmd.arg("return 0").arg(0),
    };
    cmd
}

/// Runs `entry`'s append on `connection`: its script's answer, 1 if appended (0 for a kind
/// this version cannot append).
pub(crate) fn invoke(
    prefix: &str,
    max_len: usize,
    entry: &LogEntry,
    ticket: u64,
    connection: &mut redis::Connection,
) -> redis::RedisResult<i64> {
    let Some((lua, args)) = append_call(prefix, max_len, entry, ticket) else {
        return Ok(0);
    };
    let mut invocation = lua.script.prepare_invoke();
    for arg in args {
        invocation.arg(arg);
    }
    invocation.invoke(connection)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chathttp_core::UserName;
    use chathttp_core::server::MemberRef;

    use super::*;

    fn entry(kind: LogKind) -> LogEntry {
        let author = MemberRef {
            node: Arc::from("a"),
            member: 7,
        };
        LogEntry { author, kind }
    }

    #[test]
    fn a_join_claims_the_lowercased_key_and_names_its_kind() {
        let name = UserName::parse("Alice").expect("a valid name");
        let (lua, args) = append_call("P", 100, &entry(LogKind::Rejoin(name)), 3).expect("known");
        assert!(std::ptr::eq(lua, &scripts().join));
        assert_eq!(
            args,
            ["P", "a", "7", "alice", "Alice", "rejoin", "100", "3"]
        );
    }

    #[test]
    fn a_message_and_a_leave_take_their_own_scripts() {
        let say = entry(LogKind::Say("hi".into()));
        let (lua, args) = append_call("P", 5, &say, 8).expect("known");
        assert!(std::ptr::eq(lua, &scripts().say));
        assert_eq!(args, ["P", "a", "7", "hi", "5", "8"]);
        let (lua, args) = append_call("P", 5, &entry(LogKind::Leave), 9).expect("known");
        assert!(std::ptr::eq(lua, &scripts().leave));
        assert_eq!(args, ["P", "a", "7", "5", "9"]);
    }

    #[test]
    fn every_script_reads_as_many_arguments_as_it_is_given() {
        let name = UserName::parse("bob").expect("a valid name");
        for kind in [
            LogKind::Join(name),
            LogKind::Say("x".into()),
            LogKind::Leave,
        ] {
            let (lua, args) = append_call("P", 1, &entry(kind), 1).expect("known");
            let read = (1..=9)
                .filter(|i| lua.source.contains(&format!("ARGV[{i}]")))
                .count();
            assert_eq!(read, args.len(), "{}", lua.source);
        }
    }

    #[test]
    fn a_pipelined_append_is_an_eval_of_the_script_source() {
        let cmd = eval("P", 5, &entry(LogKind::Leave), 1);
        let packed = String::from_utf8(cmd.get_packed_command()).expect("text");
        assert!(packed.contains("EVAL"), "{packed}");
        assert!(packed.contains(scripts().leave.source), "{packed}");
    }
}
