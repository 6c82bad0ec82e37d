//! Reading what Redis answers: log entries from the stream, the `SNAPSHOT` script's reply,
//! and the names the scripts give each kind of entry.
//!
//! Everything here is pure: it turns a [`Value`] into the core's types, and anything it
//! cannot read into `None`, never a panic, because the stream is written by every node of
//! the room and may hold entries of another version.

use std::collections::HashMap;
use std::sync::Arc;

use chathttp_core::server::history::{Epoch, Line};
use chathttp_core::server::{LogEntry, LogKind, MemberRef};
use chathttp_core::{Timestamp, UserName};
use redis::Value;

/// The `kind` field the scripts write for `kind`: the inverse of [`parse_kind`]. `None` for a
/// kind this version cannot append.
pub(crate) fn kind_name(kind: &LogKind) -> Option<&'static str> {
    match kind {
        LogKind::Join(_) => Some("join"),
        LogKind::Rejoin(_) => Some("rejoin"),
        LogKind::Say(_) => Some("say"),
        LogKind::Leave => Some("leave"),
        _ => None,
    }
}

/// The entry kind of a `kind` field, with its `name` or `text` field as `get` finds it.
fn parse_kind<'a>(kind: &str, get: impl Fn(&str) -> Option<&'a str>) -> Option<LogKind> {
    Some(match kind {
        "join" => LogKind::Join(UserName::parse(get("name")?).ok()?),
        "rejoin" => LogKind::Rejoin(UserName::parse(get("name")?).ok()?),
        "say" => LogKind::Say(get("text")?.to_owned()),
        "leave" => LogKind::Leave,
        _ => return None,
    })
}

/// Node ids seen, shared, so that entries do not allocate one each.
#[derive(Debug, Default)]
pub(crate) struct Names(HashMap<String, Arc<str>>);

impl Names {
    /// The shared copy of `node`.
    pub(crate) fn intern(&mut self, node: &str) -> Arc<str> {
        if let Some(node) = self.0.get(node) {
            return node.clone();
        }
        let shared: Arc<str> = node.into();
        self.0.insert(node.to_owned(), shared.clone());
        shared
    }
}

/// A string, bulk or simple, or an integer as its decimal text.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One entry of the stream as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamEntry {
    /// The stream id, where the next read starts.
    pub(crate) id: String,
    /// The room-wide counter: one more than the entry before it.
    pub(crate) n: u64,
    /// The entry, or `None` if its other fields cannot be read (it still counts).
    pub(crate) entry: Option<LogEntry>,
}

/// The stream id of `[id, [field, value, ...]]`, whatever its fields.
pub(crate) fn entry_id(raw: &Value) -> Option<String> {
    let Value::Array(pair) = raw else {
        return None;
    };
    text(pair.first()?)
}

/// An entry's fields by name, borrowed from the reply.
type Fields<'a> = HashMap<&'a [u8], &'a [u8]>;

/// `[id, [field, value, ...]]` → the id and the fields, by name.
fn entry_fields(raw: &Value) -> Option<(String, Fields<'_>)> {
    let Value::Array(pair) = raw else {
        return None;
    };
    let id = entry_id(raw)?;
    let Value::Array(list) = pair.get(1)? else {
        return None;
    };
    let mut fields = Fields::new();
    for kv in list.chunks(2) {
        if let [Value::BulkString(k), Value::BulkString(v)] = kv {
            fields.insert(k, v);
        }
    }
    Some((id, fields))
}

/// The field `name` of `fields` as text.
fn field<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a str> {
    fields
        .get(name.as_bytes())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// `[id, [field, value, ...]]` → the entry; `None` without an id or a counter.
pub(crate) fn parse_entry(raw: &Value, names: &mut Names) -> Option<StreamEntry> {
    let (id, fields) = entry_fields(raw)?;
    let get = |name: &str| field(&fields, name);
    let n: u64 = get("n")?.parse().ok()?;
    let entry = (|| {
        let node = names.intern(get("node")?);
        let member = get("member")?.parse().ok()?;
        let kind = parse_kind(get("kind")?, get)?;
        // A message's number among the chat lines (E5); older nodes wrote none.
        let line = get("line").and_then(|line| line.parse().ok());
        Some(LogEntry {
            author: MemberRef { node, member },
            kind,
            line,
        })
    })();
    Some(StreamEntry { id, n, entry })
}

/// The entries of an `XREAD` reply, whichever protocol version shaped it (an array of
/// `[stream, entries]` pairs in RESP2, a map in RESP3); nothing for a timeout's nil.
pub(crate) fn stream_entries(reply: Value) -> Vec<Value> {
    let entries = |value| match value {
        Value::Array(entries) => Some(entries),
        _ => None,
    };
    match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop().and_then(entries),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(streams) => streams
            .into_iter()
            .filter_map(|(_, value)| entries(value))
            .flatten()
            .collect(),
        _ => Vec::new(),
    }
}

/// The room as the `SNAPSHOT` script saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) epoch: String,
    /// The counter of the last entry.
    pub(crate) n: u64,
    /// The number of the last chat line (E5).
    pub(crate) line: u64,
    /// The id of the last entry in the stream (`0-0` if none).
    pub(crate) id: String,
    /// Every claimed member, in join order.
    pub(crate) members: Vec<(MemberRef, UserName)>,
}

/// `[epoch, n, id, [who, claim, ...]]` → the snapshot; `None` if its shape is wrong. A claim
/// that cannot be read is left out: the member is as good as gone.
pub(crate) fn parse_snapshot(reply: Value, names: &mut Names) -> Option<Snapshot> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let [epoch, n, id, presence, line] = <[Value; 5]>::try_from(parts).ok()?;
    let (Some(epoch), Value::Int(n), Some(id), Value::Int(line)) =
        (text(&epoch), n, text(&id), line)
    else {
        return None;
    };
    let mut members = Vec::new();
    if let Value::Array(fields) = presence {
        for pair in fields.chunks(2) {
            let (Some(who), Some(claim)) = (text(&pair[0]), pair.get(1).and_then(text)) else {
                continue;
            };
            if let Some(member) = parse_claim(&who, &claim, names) {
                members.push(member);
            }
        }
    }
    members.sort_by_key(|(order, _, _)| *order);
    let members = members.into_iter().map(|(_, m, name)| (m, name)).collect();
    let n = u64::try_from(n).unwrap_or(0);
    Some(Snapshot {
        epoch,
        n,
        line: u64::try_from(line).unwrap_or(0),
        id,
        members,
    })
}

/// A chat line of the stream, for replay (E5): a `say` entry with its line number and its
/// speaker's name; `None` for anything else, or an entry written before lines were numbered.
pub(crate) fn parse_line(raw: &Value) -> Option<Line> {
    let (id, fields) = entry_fields(raw)?;
    let get = |name: &str| field(&fields, name);
    if get("kind")? != "say" {
        return None;
    }
    let name = UserName::parse(get("name")?).ok()?;
    // The stream id's first half is when Redis appended it, in ms since the Unix epoch.
    let millis: i64 = id.split_once('-')?.0.parse().ok()?;
    // Ids are whatever an `XADD` chose: one past the year 9998 would overflow a local time.
    if millis >= LAST_MILLIS {
        return None;
    }
    let local = chrono::DateTime::from_timestamp_millis(millis)?
        .with_timezone(&chrono::Local)
        .naive_local();
    Some(Line {
        seq: get("line")?.parse().ok()?,
        at: Timestamp::new(std::time::Duration::ZERO, local),
        name: name.as_str().into(),
        text: get("text")?.into(),
    })
}

/// The first millisecond of the year 9999, past which a stream id's time is not read.
const LAST_MILLIS: i64 = 253_370_764_800_000;

/// The history epoch of a log's life (E5): its epoch token, hashed (FNV-1a, 64 bits) into the
/// 16 hex digits an id allows, the same on every node.
pub(crate) fn history_epoch(log_epoch: &str) -> Epoch {
    let hash = log_epoch
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    Epoch::new(&format!("{hash:016x}")).expect("16 hex digits are a valid epoch")
}

/// A `presence` field (`NODE\nMEMBER` → `N\nKEY\nNAME`) → the join's counter, the member and
/// its name.
fn parse_claim(who: &str, claim: &str, names: &mut Names) -> Option<(u64, MemberRef, UserName)> {
    let (node, member) = who.rsplit_once('\n')?;
    let mut claim = claim.splitn(3, '\n');
    let (order, _key, name) = (claim.next()?, claim.next()?, claim.next()?);
    let order = order.parse().ok()?;
    let member = member.parse().ok()?;
    let name = UserName::parse(name).ok()?;
    let node = names.intern(node);
    Some((order, MemberRef { node, member }, name))
}

#[cfg(test)]
mod tests;
