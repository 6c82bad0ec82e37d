//! Runs the real chat-bench binary against a real chat-server-smol and checks its JSON
//! line: every member receives every message exactly once, in one order.

use std::net::TcpListener;
use std::process::Command;

use chathttp_tests::{Runtime, Server};

const BENCH: &str = env!("CARGO_BIN_EXE_chat-bench");

/// Runs chat-bench and returns its JSON line.
fn bench(args: &[&str]) -> String {
    let out = Command::new(BENCH)
        .args(args)
        .args(["--no-progress", "--max-s", "60"])
        .output()
        .expect("run chat-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chat-bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line; stderr: {stderr}"));
    eprintln!("{stderr}");
    json.to_string()
}

/// A top-level number field of a flat JSON object (enough for chat-bench's output).
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no field {key} in {json}"))
        + pat.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("field {key} is not a number in {json}"))
}

fn check_fanout(json: &str, members: f64, senders: f64, messages: f64) {
    assert_eq!(field(json, "joined"), members, "{json}");
    assert_eq!(
        field(json, "join_notices"),
        members * (members - 1.0) / 2.0,
        "{json}"
    );
    assert_eq!(field(json, "expected"), members * senders * messages);
    assert_eq!(
        field(json, "deliveries"),
        members * senders * messages,
        "{json}"
    );
    assert_eq!(field(json, "unique"), members * senders * messages);
    assert_eq!(field(json, "lost"), 0.0, "{json}");
    assert_eq!(field(json, "dups"), 0.0, "{json}");
    assert_eq!(field(json, "malformed"), 0.0, "{json}");
    assert_eq!(field(json, "fifo_violations"), 0.0, "{json}");
    assert_eq!(field(json, "total_order_violations"), 0.0, "{json}");
    assert_eq!(field(json, "closed_after_join"), 0.0, "{json}");
    assert!(field(json, "deliveries_per_s") > 0.0, "{json}");
    assert!(field(json, "lat_samples") == members * senders * messages);
    assert!(
        field(json, "server_cpu_s") >= 0.0,
        "server CPU read: {json}"
    );
}

#[test]
fn open_loop_and_paced_runs_deliver_everything_once_in_order() {
    let server = Server::start(Runtime::Smol, &[]);
    let pid = server.pid().to_string();
    let addr = server.addr().to_string();
    let common = [
        "--addr",
        &addr,
        "--server-pid",
        &pid,
        "--members",
        "5",
        "--senders",
        "2",
        "--messages",
        "20",
        "--settle-ms",
        "3000",
        "--drain-ms",
        "3000",
    ];

    let json = bench(&common);
    check_fanout(&json, 5.0, 2.0, 20.0);

    // Paced: 200 messages/s per sender, so 20 messages take 0.1 s; also the minimal headers.
    let mut paced = common.to_vec();
    paced.extend(["--rate", "200", "--min-headers", "--name-prefix", "p"]);
    let json = bench(&paced);
    check_fanout(&json, 5.0, 2.0, 20.0);
    assert!(json.contains("\"rate_per_sender\":200"), "{json}");

    // Paced, with the generator polling on between deliveries instead of sleeping.
    let mut spinning = common.to_vec();
    spinning.extend(["--rate", "200", "--spin-us", "500", "--name-prefix", "s"]);
    let json = bench(&spinning);
    check_fanout(&json, 5.0, 2.0, 20.0);
    assert_eq!(field(&json, "spin_us"), 500.0, "{json}");
}

#[test]
fn idle_run_reports_server_memory() {
    let server = Server::start(Runtime::Smol, &[]);
    let pid = server.pid().to_string();
    let addr = server.addr().to_string();
    let json = bench(&[
        "--addr",
        &addr,
        "--server-pid",
        &pid,
        "--idle",
        "20",
        "--idle-hold-ms",
        "200",
    ]);
    assert_eq!(field(&json, "joined"), 20.0, "{json}");
    assert_eq!(field(&json, "join_notices"), 190.0, "{json}");
    assert!(field(&json, "server_rss_kb_after") > 0.0, "{json}");
}

#[test]
fn refused_connections_are_counted_not_hung_on() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let json = bench(&[
        "--addr",
        &addr,
        "--members",
        "3",
        "--senders",
        "1",
        "--messages",
        "5",
    ]);
    assert_eq!(field(&json, "joined"), 0.0, "{json}");
    assert_eq!(field(&json, "join_failed"), 3.0, "{json}");
    assert_eq!(field(&json, "deliveries"), 0.0, "{json}");
}
