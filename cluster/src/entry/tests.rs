use std::sync::Arc;

use chathttp_core::UserName;
use chathttp_core::server::{LogEntry, LogKind, MemberRef};
use redis::Value;

use super::*;
use crate::keys::Keys;
use crate::scripts::{Appending, append_call};

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

/// A stream entry `[id, [field, value, ...]]` as `XREAD` returns it.
fn raw(id: &str, fields: &[(&str, &str)]) -> Value {
    let list = fields
        .iter()
        .flat_map(|(k, v)| [bulk(k), bulk(v)])
        .collect();
    Value::Array(vec![bulk(id), Value::Array(list)])
}

fn name(text: &str) -> UserName {
    UserName::parse(text).expect("a valid name")
}

fn entry(node: &str, member: u64, kind: LogKind) -> LogEntry {
    let node = Arc::from(node);
    LogEntry {
        author: MemberRef { node, member },
        kind,
        line: None,
    }
}

fn parse(raw: &Value) -> Option<StreamEntry> {
    parse_entry(raw, &mut Names::default())
}

#[test]
fn an_entry_of_each_kind_parses() {
    let base = [("n", "4"), ("node", "a"), ("member", "7")];
    let cases = [
        (
            ("kind", "join"),
            ("name", "Alice"),
            LogKind::Join(name("Alice")),
        ),
        (
            ("kind", "rejoin"),
            ("name", "bob"),
            LogKind::Rejoin(name("bob")),
        ),
        (
            ("kind", "say"),
            ("text", "hi there"),
            LogKind::Say("hi there".into()),
        ),
        (("kind", "leave"), ("name", "Alice"), LogKind::Leave),
    ];
    for (kind, payload, expected) in cases {
        let fields = [&base[..], &[kind, payload]].concat();
        let read = parse(&raw("1-0", &fields)).expect("an id and a counter");
        assert_eq!(read.id, "1-0");
        assert_eq!(read.n, 4);
        assert_eq!(read.entry, Some(entry("a", 7, expected)), "{kind:?}");
    }
}

#[test]
fn an_entry_without_an_id_or_a_counter_is_not_read() {
    let fields = [("node", "a"), ("member", "7"), ("kind", "leave")];
    assert_eq!(parse(&raw("1-0", &fields)), None, "no counter");
    let bad_n = [
        ("n", "four"),
        ("node", "a"),
        ("member", "7"),
        ("kind", "leave"),
    ];
    assert_eq!(
        parse(&raw("1-0", &bad_n)),
        None,
        "a counter that is no number"
    );
    assert_eq!(parse(&bulk("1-0")), None, "not an array");
    assert_eq!(parse(&Value::Array(vec![])), None, "no id");
    assert_eq!(parse(&Value::Array(vec![bulk("1-0")])), None, "no fields");
    let not_a_list = Value::Array(vec![bulk("1-0"), bulk("n")]);
    assert_eq!(parse(&not_a_list), None, "fields not a list");
}

#[test]
fn an_entry_with_a_counter_but_unreadable_fields_still_counts() {
    let cases: [&[(&str, &str)]; 6] = [
        &[("n", "5"), ("member", "7"), ("kind", "leave")],
        &[("n", "5"), ("node", "a"), ("kind", "leave")],
        &[
            ("n", "5"),
            ("node", "a"),
            ("member", "x"),
            ("kind", "leave"),
        ],
        &[
            ("n", "5"),
            ("node", "a"),
            ("member", "7"),
            ("kind", "shout"),
        ],
        &[("n", "5"), ("node", "a"), ("member", "7"), ("kind", "join")],
        &[
            ("n", "5"),
            ("node", "a"),
            ("member", "7"),
            ("kind", "join"),
            ("name", "a b"),
        ],
    ];
    for fields in cases {
        let read = parse(&raw("2-0", fields)).expect("an id and a counter");
        assert_eq!((read.n, read.entry), (5, None), "{fields:?}");
    }
}

#[test]
fn a_message_without_text_is_unreadable() {
    let fields = [("n", "5"), ("node", "a"), ("member", "7"), ("kind", "say")];
    assert_eq!(parse(&raw("2-0", &fields)).and_then(|r| r.entry), None);
}

/// What the append scripts write to the stream for their arguments (the `XADD` lines of
/// `scripts/*.lua`); a leave's name comes from the claim, which this model leaves out.
fn as_the_script_writes_it(args: &[String], n: u64) -> Value {
    let n = n.to_string();
    let fields: Vec<(&str, &str)> = match args {
        [node, member, _key, name, kind, _max, _ticket, _ttl] => vec![
            ("n", &n),
            ("node", node),
            ("member", member),
            ("kind", kind),
            ("name", name),
        ],
        [node, member, text, _max, _ticket] => vec![
            ("n", &n),
            ("node", node),
            ("member", member),
            ("kind", "say"),
            ("text", text),
        ],
        [node, member, _max, _ticket] => vec![
            ("n", &n),
            ("node", node),
            ("member", member),
            ("kind", "leave"),
        ],
        _ => panic!("no script takes {args:?}"),
    };
    raw("9-0", &fields)
}

#[test]
fn an_appended_entry_reads_back_as_itself() {
    let kinds = [
        LogKind::Join(name("Zoë")),
        LogKind::Rejoin(name("bob")),
        LogKind::Say("line with\ttabs and ünïcode".into()),
        LogKind::Leave,
    ];
    for (n, kind) in (1..).zip(kinds) {
        let appended = entry("node-1", n * 10, kind);
        let how = Appending {
            keys: Keys::new("r"),
            max_len: 100,
            ttl: std::time::Duration::from_secs(5),
        };
        let args = append_call(&how, &appended, n)
            .expect("a kind this version appends")
            .args;
        let read = parse(&as_the_script_writes_it(&args, n)).expect("readable");
        assert_eq!(read.n, n);
        assert_eq!(read.entry, Some(appended));
    }
}

#[test]
fn every_kind_named_for_the_stream_parses_back() {
    for kind in [
        LogKind::Join(name("a")),
        LogKind::Rejoin(name("a")),
        LogKind::Say("x".into()),
        LogKind::Leave,
    ] {
        let field = kind_name(&kind).expect("named");
        let parsed = parse_kind(field, |f| Some(if f == "text" { "x" } else { "a" }));
        assert_eq!(parsed, Some(kind));
    }
}

#[test]
fn node_ids_are_interned() {
    let mut names = Names::default();
    let first = names.intern("a");
    let again = names.intern("a");
    assert!(Arc::ptr_eq(&first, &again));
    assert!(!Arc::ptr_eq(&first, &names.intern("b")));
    let one = parse_entry(
        &raw(
            "1-0",
            &[
                ("n", "1"),
                ("node", "a"),
                ("member", "1"),
                ("kind", "leave"),
            ],
        ),
        &mut names,
    );
    let node = one
        .and_then(|r| r.entry)
        .map(|e| e.author.node)
        .expect("read");
    assert!(Arc::ptr_eq(&node, &first), "entries share the interned id");
}

#[test]
fn text_reads_strings_and_integers_only() {
    assert_eq!(text(&bulk("x")), Some("x".into()));
    assert_eq!(text(&Value::SimpleString("y".into())), Some("y".into()));
    assert_eq!(text(&Value::Int(-3)), Some("-3".into()));
    assert_eq!(text(&Value::BulkString(vec![0xff])), None, "not UTF-8");
    assert_eq!(text(&Value::Nil), None);
}

#[test]
fn xread_replies_of_both_protocols_give_their_entries() {
    let one = raw("1-0", &[("n", "1")]);
    let two = raw("2-0", &[("n", "2")]);
    let entries = Value::Array(vec![one.clone(), two.clone()]);
    let resp2 = Value::Array(vec![Value::Array(vec![bulk("log"), entries.clone()])]);
    assert_eq!(stream_entries(resp2), [one.clone(), two.clone()]);
    let resp3 = Value::Map(vec![(bulk("log"), entries)]);
    assert_eq!(stream_entries(resp3), [one, two]);
    assert_eq!(stream_entries(Value::Nil), [], "a timeout");
    let odd = Value::Array(vec![bulk("log"), Value::Array(vec![bulk("x")])]);
    assert_eq!(stream_entries(odd), [], "not pairs");
}

fn snapshot_reply(n: i64, presence: &[(&str, &str)]) -> Value {
    let presence = presence
        .iter()
        .flat_map(|(k, v)| [bulk(k), bulk(v)])
        .collect();
    Value::Array(vec![
        bulk("e1"),
        Value::Int(n),
        bulk("5-0"),
        Value::Array(presence),
        Value::Int(7),
    ])
}

#[test]
fn a_snapshot_lists_its_members_in_join_order() {
    let reply = snapshot_reply(
        9,
        &[
            ("b\n2", "8\nbob\nBob"),
            ("a\n1", "3\nalice\nAlice"),
            ("x\ny\n3", "5\nc\nc"),
        ],
    );
    let snapshot = parse_snapshot(reply, &mut Names::default()).expect("well formed");
    assert_eq!(
        (snapshot.epoch.as_str(), snapshot.n, snapshot.id.as_str()),
        ("e1", 9, "5-0")
    );
    assert_eq!(snapshot.line, 7, "the last chat line's number (E5)");
    let members: Vec<(String, u64, String)> = snapshot
        .members
        .into_iter()
        .map(|(m, name)| (m.node.to_string(), m.member, name.as_str().to_owned()))
        .collect();
    let expected = [("a", 1, "Alice"), ("x\ny", 3, "c"), ("b", 2, "Bob")];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, m, s)| (n.to_string(), *m, s.to_string()))
        .collect();
    assert_eq!(
        members, expected,
        "a node id may hold a newline: the member is after the last"
    );
}

#[test]
fn a_snapshot_leaves_out_claims_it_cannot_read() {
    let reply = snapshot_reply(
        4,
        &[
            ("a\n1", "1\nalice\nAlice"),
            ("no-member", "2\nb\nb"),
            ("a\nx", "3\nc\nc"),
            ("a\n4", "x\nd\nd"),
            ("a\n5", "5\ne"),
            ("a\n6", "6\nf\nnot a name"),
        ],
    );
    let snapshot = parse_snapshot(reply, &mut Names::default()).expect("well formed");
    assert_eq!(snapshot.members.len(), 1, "{:?}", snapshot.members);
}

#[test]
fn a_snapshot_of_the_wrong_shape_is_not_read() {
    let mut names = Names::default();
    assert_eq!(parse_snapshot(Value::Nil, &mut names), None);
    let short = Value::Array(vec![bulk("e1"), Value::Int(1), bulk("0-0")]);
    assert_eq!(parse_snapshot(short, &mut names), None);
    let text_n = Value::Array(vec![
        bulk("e1"),
        bulk("1"),
        bulk("0-0"),
        Value::Array(vec![]),
        Value::Int(0),
    ]);
    assert_eq!(
        parse_snapshot(text_n, &mut names),
        None,
        "the counter is an integer"
    );
    let negative = parse_snapshot(snapshot_reply(-1, &[]), &mut names).expect("read");
    assert_eq!(negative.n, 0, "a negative counter counts as none");
}

#[test]
fn e5_a_chat_line_reads_back_with_its_number_name_and_time() {
    let raw = Value::Array(vec![
        bulk("1733370000123-0"),
        Value::Array(
            [
                ("n", "9"),
                ("node", "a"),
                ("member", "7"),
                ("kind", "say"),
                ("text", "hi there"),
                ("line", "4"),
                ("name", "Alice"),
            ]
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect(),
        ),
    ]);
    let line = parse_line(&raw).expect("a chat line");
    assert_eq!(
        (line.seq, &*line.name, &*line.text),
        (4, "Alice", "hi there")
    );
    let said = chrono::DateTime::from_timestamp_millis(1_733_370_000_123)
        .expect("a time")
        .with_timezone(&chrono::Local)
        .naive_local();
    assert_eq!(line.at.local(), said);
    let read = parse_entry(&raw, &mut Names::default()).expect("an entry");
    assert_eq!(read.entry.expect("readable").line, Some(4));
    // A join, or a line written before lines were numbered, is no chat line to replay.
    let join = entry_value(
        "2-0",
        &[
            ("n", "1"),
            ("node", "a"),
            ("member", "7"),
            ("kind", "join"),
            ("name", "Alice"),
        ],
    );
    assert_eq!(parse_line(&join), None);
    let old = entry_value(
        "3-0",
        &[
            ("n", "2"),
            ("node", "a"),
            ("member", "7"),
            ("kind", "say"),
            ("text", "x"),
        ],
    );
    assert_eq!(parse_line(&old), None);
}

#[test]
fn e5_every_node_derives_the_same_history_epoch_from_the_log_s() {
    assert_eq!(history_epoch("n1@42"), history_epoch("n1@42"));
    assert_ne!(history_epoch("n1@42"), history_epoch("n1@43"));
    assert_eq!(history_epoch("anything at all").as_str().len(), 16);
}

fn entry_value(id: &str, fields: &[(&str, &str)]) -> Value {
    Value::Array(vec![
        bulk(id),
        Value::Array(
            fields
                .iter()
                .flat_map(|(k, v)| [bulk(k), bulk(v)])
                .collect(),
        ),
    ])
}
