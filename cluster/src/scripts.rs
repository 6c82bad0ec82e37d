//! The Lua scripts (in `scripts/*.lua`, docs/CLUSTER.md "Scripts"), and the call that
//! appends an entry with them.
//!
//! Every change to the room is one script, so it is atomic in Redis: a claim and its append,
//! a reap and its leaves.

use std::sync::OnceLock;
use std::time::Duration;

use chathttp_core::server::{LogEntry, LogKind};
use redis::Script;

use crate::entry::kind_name;
use crate::keys::Keys;

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
        // The appends share their once-per-ticket rule, prepended (K4).
        join: lua(concat!(
            include_str!("scripts/once.lua"),
            include_str!("scripts/join.lua")
        )),
        say: lua(concat!(
            include_str!("scripts/once.lua"),
            include_str!("scripts/say.lua")
        )),
        leave: lua(concat!(
            include_str!("scripts/once.lua"),
            include_str!("scripts/leave.lua")
        )),
        reap: lua(include_str!("scripts/reap.lua")),
        snapshot: lua(include_str!("scripts/snapshot.lua")),
        heartbeat: lua(include_str!("scripts/heartbeat.lua")),
    })
}

/// One script call: the script, its keys and its arguments, in the order it reads them.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) lua: &'static Lua,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<String>,
}

/// How a node appends: the room's keys, how long the stream may grow, the node's TTL (for a
/// join that lists it as alive).
#[derive(Debug, Clone)]
pub(crate) struct Appending {
    pub(crate) keys: Keys,
    pub(crate) max_len: usize,
    pub(crate) ttl: Duration,
}

/// The script that appends `entry`; `None` for a kind this version cannot append. `ticket`
/// numbers the node's appends: the script records its outcome under it, and a retry with
/// the same ticket returns that outcome instead of appending again (K4). Pipelines send it
/// as a plain `EVAL` ([`eval`]); alone it goes through [`Script`]'s `EVALSHA`.
pub(crate) fn append_call(how: &Appending, entry: &LogEntry, ticket: u64) -> Option<Call> {
    let scripts = scripts();
    let keys = &how.keys;
    let node = entry.author.node.to_string();
    let member = entry.author.member.to_string();
    let (max_len, ticket) = (how.max_len.to_string(), ticket.to_string());
    let outcomes = keys.outcomes(&node);
    Some(match &entry.kind {
        LogKind::Join(name) | LogKind::Rejoin(name) => {
            let (key, name) = (name.key().to_string(), name.as_str().to_owned());
            let kind = kind_name(&entry.kind)?.to_owned();
            let ttl = how.ttl.as_millis().max(1).to_string();
            Call {
                lua: &scripts.join,
                keys: vec![
                    keys.names.clone(),
                    keys.presence.clone(),
                    keys.alive.clone(),
                    keys.seq.clone(),
                    keys.log.clone(),
                    outcomes,
                ],
                args: vec![node, member, key, name, kind, max_len, ticket, ttl],
            }
        }
        LogKind::Say(text) => Call {
            lua: &scripts.say,
            keys: vec![
                keys.presence.clone(),
                keys.seq.clone(),
                keys.log.clone(),
                outcomes,
                keys.lines.clone(),
            ],
            args: vec![node, member, text.clone(), max_len, ticket],
        },
        LogKind::Leave => Call {
            lua: &scripts.leave,
            keys: vec![
                keys.presence.clone(),
                keys.names.clone(),
                keys.seq.clone(),
                keys.log.clone(),
                outcomes,
            ],
            args: vec![node, member, max_len, ticket],
        },
        _ => return None,
    })
}

/// `entry`'s append as a plain `EVAL`, for pipelines: unlike `EVALSHA`, it cannot fail with
/// `NOSCRIPT` halfway through a pipeline (Redis caches the compiled script anyway). A kind
/// this version cannot append is a script that refuses it.
pub(crate) fn eval(how: &Appending, entry: &LogEntry, ticket: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    match append_call(how, entry, ticket) {
        Some(call) => cmd
            .arg(call.lua.source)
            .arg(call.keys.len())
            .arg(call.keys)
            .arg(call.args),
        None => cmd.arg("return 0").arg(0),
    };
    cmd
}

/// Runs `entry`'s append on `connection`: its script's answer, 1 if appended (0 for a kind
/// this version cannot append).
pub(crate) fn invoke(
    how: &Appending,
    entry: &LogEntry,
    ticket: u64,
    connection: &mut redis::Connection,
) -> redis::RedisResult<i64> {
    let Some(call) = append_call(how, entry, ticket) else {
        return Ok(0);
    };
    let mut invocation = call.lua.script.prepare_invoke();
    for key in call.keys {
        invocation.key(key);
    }
    for arg in call.args {
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
        LogEntry {
            author,
            kind,
            line: None,
        }
    }

    fn how() -> Appending {
        Appending {
            keys: Keys::new("r"),
            max_len: 100,
            ttl: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_join_claims_the_key_and_names_its_kind() {
        let name = UserName::parse("Alice").expect("a valid name");
        let call = append_call(&how(), &entry(LogKind::Rejoin(name)), 3).expect("known");
        assert!(std::ptr::eq(call.lua, &scripts().join));
        assert_eq!(
            call.keys,
            [
                "chathttp:{r}:names",
                "chathttp:{r}:presence",
                "chathttp:{r}:alive",
                "chathttp:{r}:seq",
                "chathttp:{r}:log",
                "chathttp:{r}:outcome:a"
            ]
        );
        assert_eq!(
            call.args,
            ["a", "7", "alice", "Alice", "rejoin", "100", "3", "5000"]
        );
    }

    #[test]
    fn a_message_and_a_leave_take_their_own_scripts() {
        let call = append_call(&how(), &entry(LogKind::Say("hi".into())), 8).expect("known");
        assert!(std::ptr::eq(call.lua, &scripts().say));
        assert_eq!(call.args, ["a", "7", "hi", "100", "8"]);
        let call = append_call(&how(), &entry(LogKind::Leave), 9).expect("known");
        assert!(std::ptr::eq(call.lua, &scripts().leave));
        assert_eq!(call.args, ["a", "7", "100", "9"]);
    }

    #[test]
    fn every_script_reads_as_many_keys_and_arguments_as_it_is_given() {
        let name = UserName::parse("bob").expect("a valid name");
        for kind in [
            LogKind::Join(name),
            LogKind::Say("x".into()),
            LogKind::Leave,
        ] {
            let call = append_call(&how(), &entry(kind), 1).expect("known");
            let count = |what: &str| {
                (1..=12)
                    .filter(|i| call.lua.source.contains(&format!("{what}[{i}]")))
                    .count()
            };
            assert_eq!(count("KEYS"), call.keys.len(), "{}", call.lua.source);
            assert_eq!(count("ARGV"), call.args.len(), "{}", call.lua.source);
            let every_key_declared = call.keys.iter().all(|k| k.starts_with("chathttp:{r}:"));
            assert!(every_key_declared && !call.lua.source.contains(".. ':"));
        }
    }

    #[test]
    fn a_pipelined_append_is_an_eval_of_the_script_source_with_its_keys() {
        let cmd = eval(&how(), &entry(LogKind::Leave), 1);
        let packed = String::from_utf8(cmd.get_packed_command()).expect("text");
        assert!(packed.contains("EVAL"), "{packed}");
        assert!(packed.contains(scripts().leave.source), "{packed}");
        assert!(packed.contains("chathttp:{r}:outcome:a"), "{packed}");
    }
}
