//! Issue #7: one room across several server processes through a real `redis-server`.
//!
//! Each case starts its own `redis-server` on a free loopback port (no persistence) and two
//! or three server binaries with `--redis`, mixing the runtimes, and talks to them as
//! clients. Without `redis-server` on PATH the cases print a loud skip line and pass,
//! unless `CHATHTTP_REQUIRE_REDIS=1` (set by `.ci/run`), which makes them fail.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chathttp_tests::redis::Redis;
use chathttp_tests::{
    Client, Runtime, Server, assert_one_order_exactly_once, exchange_posts, request,
};

/// A node of the room on `redis`, with extra flags.
fn node(rt: Runtime, redis: &Redis, id: &str, flags: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", &url, "--node-id", id];
    args.extend_from_slice(flags);
    Server::start(rt, &args)
}

/// Reads until a body that satisfies `wanted`, failing after `within`.
fn read_until(client: &mut Client, within: Duration, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        assert!(
            started.elapsed() < within,
            "not seen within {within:?}; saw {seen:?}"
        );
        let body = client.read_response().text();
        let done = wanted(&body);
        seen.push(body);
        if done {
            return seen;
        }
    }
}

fn users(client: &mut Client) -> String {
    let reply = client.request("GET", "x", b"");
    assert_eq!(reply.code(), 200, "{reply:?}");
    reply.text()
}

#[test]
fn s7_three_nodes_one_total_order_exactly_once() {
    let Some(redis) = Redis::start() else { return };
    let nodes = [
        node(Runtime::Smol, &redis, "n1", &[]),
        node(Runtime::Std, &redis, "n2", &[]),
        node(Runtime::AsyncStd, &redis, "n3", &[]),
    ];
    const MEMBERS: usize = 24;
    const SENDERS: usize = 6;
    const MESSAGES: usize = 150;
    // Join one by one, round robin over the nodes; everyone sees the later joins, so
    // wait for the last join notice before sending.
    let mut members: Vec<Client> = (0..MEMBERS)
        .map(|i| nodes[i % 3].member(&format!("m{i}")))
        .collect();
    let last = format!("m{} has just entered the chat room...\n", MEMBERS - 1);
    for member in &mut members[..MEMBERS - 1] {
        member.read_until_body(&last);
    }
    let received = exchange_posts(members, SENDERS, MESSAGES);
    assert_one_order_exactly_once(&received, SENDERS, MESSAGES, |i| {
        format!("member m{i} (node n{})", i % 3 + 1)
    });
}

#[test]
fn s2_2_a_name_taken_on_node_a_is_refused_on_node_b_ignoring_case() {
    let Some(redis) = Redis::start() else { return };
    let a = node(Runtime::Smol, &redis, "a", &[]);
    let b = node(Runtime::Std, &redis, "b", &[]);
    let _alice = a.member("Émile");
    let mut guest = b.guest();
    for name in ["émile", "ÉMILE", "Émile"] {
        let reply = guest.request("ADD", name, b"");
        assert_eq!(reply.code(), 401, "{name} on b: {reply:?}");
    }
    // The connection is still a guest and can take a free name.
    let reply = guest.request("ADD", "emile", b"");
    assert_eq!(reply.code(), 200, "{reply:?}");
}

#[test]
fn s4_get_on_any_node_lists_everyone_in_join_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes = [
        node(Runtime::Smol, &redis, "a", &[]),
        node(Runtime::AsyncStd, &redis, "b", &[]),
        node(Runtime::Std, &redis, "c", &[]),
    ];
    let order = [
        ("carol", 2),
        ("alice", 0),
        ("bob", 1),
        ("dave", 0),
        ("erin", 2),
    ];
    let mut members = Vec::new();
    for (name, at) in order {
        members.push(nodes[at].member(name));
    }
    // The last join is applied everywhere once every member has its notice.
    for member in &mut members[..order.len() - 1] {
        member.read_until_body("erin has just entered the chat room...\n");
    }
    let expected = "Online users:\ncarol\nalice\nbob\ndave\nerin\n";
    for node in &nodes {
        assert_eq!(users(&mut node.guest()), expected);
    }
}

#[test]
fn s6_kill_9_of_a_node_one_leave_per_member_and_names_freed_within_the_ttl() {
    let Some(redis) = Redis::start() else { return };
    let ttl = ["--node-ttl", "1"];
    let a = node(Runtime::Smol, &redis, "a", &ttl);
    let b = node(Runtime::Std, &redis, "b", &ttl);
    let mut alice = a.member("alice");
    let _bob = b.member("bob");
    let _bea = b.member("bea");
    alice.read_until_body("bea has just entered the chat room...\n");
    let killed = Instant::now();
    drop(b); // Child::kill: SIGKILL, no goodbye.
    let mut left = Vec::new();
    while left.len() < 2 {
        let body = alice.read_response().text();
        if body.ends_with("has just left the chat room...\n") {
            left.push(body);
        }
    }
    let took = killed.elapsed();
    left.sort();
    assert_eq!(
        left,
        [
            "bea has just left the chat room...\n",
            "bob has just left the chat room...\n"
        ]
    );
    // TTL 1 s, reaped every half TTL: 1.5 s at worst, with room for a loaded machine.
    assert!(took < Duration::from_secs(5), "leaves took {took:?}");
    alice.expect_silence(Duration::from_millis(700));
    // The names are free again.
    let mut again = a.member("BOB");
    assert_eq!(users(&mut again), "Online users:\nalice\nBOB\n");
}

#[test]
fn redis_restarted_mid_chat_nodes_reconnect_and_nothing_is_skipped_silently() {
    let Some(redis) = Redis::start() else { return };
    let a = node(Runtime::Smol, &redis, "a", &[]);
    let b = node(Runtime::Std, &redis, "b", &[]);
    let mut alice = a.member("alice");
    let mut bob = b.member("bob");
    alice.read_until_body("bob has just entered the chat room...\n");
    let reply = alice.request("POST", "x", b"before");
    assert_eq!(reply.text(), "[ alice ] : before\n");
    bob.read_until_body("[ alice ] : before\n");

    let port = redis.kill();
    // Once the node has noticed, joins are refused with the reason. (A request sent before
    // it noticed is on its way, and is answered once Redis is back: K4.)
    let started = Instant::now();
    let mut guest = loop {
        let mut guest = a.guest();
        guest
            .stream()
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("a read timeout");
        guest.send(&request("ADD", "carol", b""));
        if let Ok(Some(reply)) = guest.next_response() {
            assert_eq!(reply.code(), 503, "{reply:?}");
            assert!(reply.text().contains("Redis"), "{reply:?}");
            break guest;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no refusal");
    };
    // And a message is refused, and says so: never lost silently.
    let reply = alice.request("POST", "x", b"during");
    assert_eq!(reply.code(), 503, "{reply:?}");
    assert!(reply.text().contains("Redis"), "{reply:?}");

    let _redis = Redis::start_on(port).expect("redis-server ran a moment ago");
    // Each node finds the log reset and tells its members.
    for member in [&mut alice, &mut bob] {
        read_until(member, Duration::from_secs(10), |body| {
            body.contains("missed part of the chat")
        });
    }
    // The view is rebuilt: both members are claimed again and chat resumes across nodes.
    // (A join sent before the node noticed the outage may have been applied since: K4.)
    let started = Instant::now();
    loop {
        let listed = users(&mut b.guest());
        let names: Vec<&str> = listed.lines().skip(1).collect();
        if names.contains(&"alice") && names.contains(&"bob") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "members not back: {listed:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    bob.send(&request("POST", "x", b"after"));
    bob.read_until_body("[ bob ] : after\n");
    let seen = read_until(&mut alice, Duration::from_secs(10), |b| b.starts_with("[ "));
    assert_eq!(seen.last().map(String::as_str), Some("[ bob ] : after\n"));
    // Names are claimed again: bob's name is still his.
    let reply = guest.request("ADD", "BOB", b"");
    assert_eq!(reply.code(), 401, "{reply:?}");
}

#[test]
fn a_node_that_falls_behind_the_trimmed_log_tells_its_members() {
    let Some(redis) = Redis::start() else { return };
    // A long TTL, so that b is not reaped while stopped on a loaded machine.
    let flags = ["--log-max-len", "10", "--node-ttl", "30"];
    let a = node(Runtime::Smol, &redis, "a", &flags);
    let b = node(Runtime::Std, &redis, "b", &flags);
    let mut alice = a.member("alice");
    let mut bob = b.member("bob");
    alice.read_until_body("bob has just entered the chat room...\n");
    // Node b stops (SIGSTOP) while alice says more than the log keeps.
    b.signal("STOP");
    let mut batch = Vec::new();
    for i in 0..600 {
        batch.extend(request("POST", "x", format!("{i}").as_bytes()));
    }
    alice.send(&batch);
    // Node a itself may fall behind a log this short, and then tells alice the same way.
    read_until(&mut alice, Duration::from_secs(20), |body| {
        body == "[ alice ] : 599\n" || body.contains("missed part of the chat")
    });
    b.signal("CONT");
    // b's reader finds the gap: bob is told, and nothing is delivered across it silently.
    let seen = read_until(&mut bob, Duration::from_secs(10), |body| {
        body.contains("missed part of the chat")
    });
    let chat: Vec<usize> = seen
        .iter()
        .filter_map(|body| body.strip_prefix("[ alice ] : "))
        .map(|n| n.trim_end().parse().expect("a number"))
        .collect();
    assert!(
        chat.windows(2).all(|w| w[1] == w[0] + 1),
        "what came before the notice has no hole: {chat:?}"
    );
    assert_eq!(users(&mut bob), "Online users:\nalice\nbob\n");
}

#[test]
fn s11_a_node_shut_down_releases_its_members_at_once() {
    let Some(redis) = Redis::start() else { return };
    // A long TTL: the leaves must come from the shutdown itself, not from reaping.
    let ttl = ["--node-ttl", "60"];
    let a = node(Runtime::AsyncStd, &redis, "a", &ttl);
    let mut b = node(Runtime::Smol, &redis, "b", &ttl);
    let mut alice = a.member("alice");
    let mut bob = b.member("bob");
    alice.read_until_body("bob has just entered the chat room...\n");
    let stopped = Instant::now();
    assert!(b.terminate().success(), "S11: exit 0");
    assert_eq!(bob.read_response().code(), 503, "S11 notice");
    alice.read_until_body("bob has just left the chat room...\n");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    let mut again = a.member("bob");
    assert_eq!(users(&mut again), "Online users:\nalice\nbob\n");
}

#[test]
fn a_node_started_before_redis_refuses_joins_with_the_reason_then_serves() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        // Let Redis::start_on say it loudly (or fail under CHATHTTP_REQUIRE_REDIS=1).
        let _ = Redis::start_on(port);
        return;
    }
    let url = format!("redis://127.0.0.1:{port}");
    let a = Server::start(Runtime::Std, &["--redis", &url, "--node-id", "a"]);
    let mut guest = a.guest();
    let reply = guest.request("ADD", "alice", b"");
    assert_eq!(reply.code(), 503, "{reply:?}");
    assert!(reply.text().contains("Redis is unavailable"), "{reply:?}");
    let _redis = Redis::start_on(port).expect("redis-server runs");
    let started = Instant::now();
    loop {
        let reply = guest.request("ADD", "alice", b"");
        if reply.code() == 200 {
            break;
        }
        assert_eq!(reply.code(), 503, "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never resumed: {reply:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(users(&mut guest), "Online users:\nalice\n");
}

/// K3: an entry no node wrote (no counter) is skipped and read past, with a log line: the
/// node does not spin on it, and the room goes on.
#[test]
fn k3_a_malformed_entry_is_skipped_without_spinning() {
    let Some(redis) = Redis::start() else { return };
    let server = node(Runtime::Smol, &redis, "a", &[]);
    let mut alice = server.member("Alice");
    let added = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args([
            "XADD",
            "chathttp:{main}:log",
            "*",
            "kind",
            "say",
            "text",
            "no counter",
        ])
        .output()
        .expect("redis-cli runs");
    assert!(added.status.success(), "{added:?}");
    // A node that kept reading the entry again would burn a core in its reader.
    let busy = cpu_seconds(server.pid());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(server.pid()) - busy;
    assert!(
        used < 0.5,
        "the node used {used:.2} s of CPU in 2 s of quiet"
    );
    let echo = alice.request("POST", "Alice", b"still here");
    assert_eq!(echo.text(), "[ Alice ] : still here\n");
}

/// User plus system CPU time of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after_name = &stat[stat.rfind(')').expect("a process name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// K2: Redis over TLS (`rediss://`, redis-server's `tls-port`, a certificate made by the
/// test) with `requirepass`, the password given through `CHATHTTP_REDIS_PASSWORD` and so never
/// on the command line.
#[test]
fn k2_a_room_through_redis_over_tls_with_the_password_from_the_environment() {
    use chathttp_tests::tls::pki;
    let Some(plain) = Redis::start() else { return };
    // A free port for the TLS listener: the plaintext one is closed, the TLS one opened.
    let port = plain.kill();
    let pki = pki();
    let ca = pki.ca_file();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .args(["--tls-auth-clients", "no", "--requirepass", "s3cret"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    let nodes: Vec<Server> = ["a", "b"]
        .iter()
        .map(|id| {
            let mut command = Command::new(Runtime::Smol.binary());
            command
                .args([
                    "--bind",
                    "127.0.0.1:0",
                    "--message-rate",
                    "0",
                    "--node-id",
                    id,
                ])
                .args(["--redis", &format!("rediss://127.0.0.1:{port}")])
                .env("CHATHTTP_REDIS_PASSWORD", "s3cret")
                .env("SSL_CERT_FILE", &ca);
            Server::spawn(command)
        })
        .collect();
    // The nodes connect once Redis listens; until then joins are refused with the reason.
    let started = Instant::now();
    let join_when_up = |node: &Server, name: &str| loop {
        let mut client = node.guest();
        if client.request("ADD", name, b"").code() == 200 {
            break client;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} never joined"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let mut alice = join_when_up(&nodes[0], "Alice");
    let mut bob = join_when_up(&nodes[1], "Bob");
    read_until(&mut alice, Duration::from_secs(10), |b| {
        b == "Bob has just entered the chat room...\n"
    });
    assert_eq!(
        bob.request("POST", "Bob", b"over TLS").text(),
        "[ Bob ] : over TLS\n"
    );
    read_until(&mut alice, Duration::from_secs(10), |b| {
        b == "[ Bob ] : over TLS\n"
    });
    let _ = redis.kill();
    let _ = redis.wait();
}

/// K4: an append whose answer is lost (Redis paused past the command timeout) is retried
/// with its ticket, so the speaker gets one answer, its line, not a 503 and then its line;
/// and the line is in the log once.
#[test]
fn k4_a_message_whose_answer_is_lost_gets_one_answer_and_is_logged_once() {
    let Some(redis) = Redis::start() else { return };
    let server = node(Runtime::Smol, &redis, "a", &[]);
    let mut alice = server.member("Alice");
    let mut bob = server.member("Bob");
    read_until(&mut alice, Duration::from_secs(10), |b| {
        b == "Bob has just entered the chat room...\n"
    });
    // Longer than the command thread's 2 s timeout.
    redis.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    let reply = bob.request("POST", "Bob", b"through the pause");
    assert_eq!(
        reply.text(),
        "[ Bob ] : through the pause\n",
        "one answer, the line: {reply:?}"
    );
    read_until(&mut alice, Duration::from_secs(10), |b| {
        b == "[ Bob ] : through the pause\n"
    });
    // Nothing more comes for it: no second copy, no late refusal.
    assert_eq!(
        bob.request("POST", "Bob", b"after").text(),
        "[ Bob ] : after\n"
    );
    let logged = redis.cli(&["XRANGE", "chathttp:{main}:log", "-", "+"]);
    assert_eq!(logged.matches("through the pause").count(), 1, "{logged}");
}

/// K4: the join script releases a member's earlier claim when it claims another name, so no
/// name stays claimed by a member that does not use it; and a ticket seen before returns its
/// outcome without appending again.
#[test]
fn k4_the_join_script_releases_an_earlier_claim_and_runs_a_ticket_once() {
    let Some(redis) = Redis::start() else { return };
    let join = concat!(
        include_str!("../../cluster/src/scripts/once.lua"),
        include_str!("../../cluster/src/scripts/join.lua")
    );
    let run = |key: &str, name: &str, ticket: &str| {
        let keys = ["names", "presence", "alive", "seq", "log", "outcome:n1"]
            .map(|k| format!("chathttp:{{t}}:{k}"));
        let mut command = vec!["EVAL", join, "6"];
        command.extend(keys.iter().map(String::as_str));
        command.extend(["n1", "7", key, name, "join", "100", ticket, "5000"]);
        redis.cli(&command)
    };
    assert_eq!(run("alice", "alice", "1"), "1");
    assert_eq!(run("bob", "bob", "2"), "1");
    assert_eq!(
        redis.cli(&["HGET", "chathttp:{t}:names", "alice"]),
        "",
        "released"
    );
    assert_eq!(redis.cli(&["HGET", "chathttp:{t}:names", "bob"]), "n1\n7");
    // Ticket 2 again (a retry after a lost answer): its outcome, and no second entry.
    assert_eq!(run("bob", "bob", "2"), "1");
    assert_eq!(redis.cli(&["XLEN", "chathttp:{t}:log"]), "2");
}

/// K1 with a real Redis slowed (`CLIENT PAUSE`) while 40 members each pipeline 40 messages:
/// past 1,024 of the node's entries in flight, messages get `503` saying the log is slow and
/// their senders stay; every message a sender got its line for reaches every member; the
/// node's memory stays bounded.
#[test]
fn k1_a_slow_redis_gets_503s_past_the_bound_and_loses_nothing_acknowledged() {
    const MEMBERS: usize = 40;
    const POSTS: usize = 40;
    let Some(redis) = Redis::start() else { return };
    let server = node(Runtime::Smol, &redis, "a", &[]);
    let members: Vec<Client> = (0..MEMBERS)
        .map(|i| server.member(&format!("m{i}")))
        .collect();
    let rss_before = server.rss_kib();
    redis.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    // Each member sends everything, then reads until each of its own messages is answered.
    let (seen, acknowledged, slow): (Vec<Vec<String>>, Vec<Vec<String>>, Vec<usize>) =
        thread::scope(|scope| {
            let threads: Vec<_> = members
                .into_iter()
                .enumerate()
                .map(|(i, mut member)| {
                    scope.spawn(move || {
                        let batch: Vec<u8> = (0..POSTS)
                            .flat_map(|seq| request("POST", "x", format!("{i}.{seq}").as_bytes()))
                            .collect();
                        member.send(&batch);
                        let own = format!("[ m{i} ] : ");
                        let (mut seen, mut mine, mut slow) = (Vec::new(), Vec::new(), 0);
                        while mine.len() + slow < POSTS {
                            let reply = member.read_response();
                            let text = reply.text();
                            if reply.code() == 503 {
                                assert!(text.contains("the shared log is slow"), "{text}");
                                slow += 1;
                            } else if text.starts_with(&own) {
                                mine.push(text.clone());
                                seen.push(text);
                            } else if text.starts_with("[ ") {
                                seen.push(text);
                            }
                        }
                        (member, seen, mine, slow)
                    })
                })
                .collect();
            let results: Vec<_> = threads
                .into_iter()
                .map(|t| t.join().expect("a member"))
                .collect();
            let acknowledged: Vec<String> = results
                .iter()
                .flat_map(|(_, _, mine, _)| mine.clone())
                .collect();
            // Every member reads on until it holds every acknowledged line.
            let seen = results
                .into_iter()
                .map(|(mut member, mut seen, _, slow)| {
                    let want: std::collections::HashSet<&String> = acknowledged.iter().collect();
                    let mut have: std::collections::HashSet<String> =
                        seen.iter().cloned().collect();
                    while want.iter().any(|line| !have.contains(*line)) {
                        let text = member.read_response().text();
                        if text.starts_with("[ ") {
                            have.insert(text.clone());
                            seen.push(text);
                        }
                    }
                    (seen, slow)
                })
                .collect::<Vec<_>>();
            let (seen, slow): (Vec<_>, Vec<_>) = seen.into_iter().unzip();
            (seen, vec![acknowledged], slow)
        });
    let refused: usize = slow.iter().sum();
    assert!(refused > 0, "1,600 messages at once never met the bound");
    assert!(acknowledged[0].len() + refused == MEMBERS * POSTS);
    for lines in &seen {
        let unique: std::collections::HashSet<&String> = lines.iter().collect();
        assert_eq!(unique.len(), lines.len(), "a line arrived twice");
    }
    let grown = server.rss_kib().saturating_sub(rss_before);
    eprintln!(
        "k1: {refused} of {} refused as slow, {} acknowledged and seen by all {MEMBERS}; \
         the node grew by {grown} KiB",
        MEMBERS * POSTS,
        acknowledged[0].len()
    );
    assert!(grown < 64 * 1024, "the node grew by {grown} KiB");
}

/// C2 through a Redis blip: `chat-client` (line mode) stays in the room while the shared log
/// is down; a message it sends meanwhile is refused with the reason (or, if it was already on
/// its way, delivered once Redis is back), and it chats on afterwards.
#[test]
fn c2_the_client_stays_in_the_room_through_a_redis_blip() {
    use std::io::BufRead as _;
    use std::sync::mpsc;
    let Some(redis) = Redis::start() else { return };
    let server = node(Runtime::Smol, &redis, "a", &[]);
    let client = chathttp_tests::workspace_binary("chathttp-client", "chat-client");
    let mut child = Command::new(client)
        .args([
            "--plain",
            "--server",
            &server.addr().to_string(),
            "--name",
            "alice",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chat-client runs");
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let joined = (0..50).any(|_| {
        matches!(lines.recv_timeout(Duration::from_secs(1)), Ok(line) if line == "* joined as alice")
    });
    assert!(joined, "the client did not join");
    let port = redis.kill();
    // Until the node notices, a message may go out and wait for Redis; after, it is refused.
    let refused = (0..50).any(|i| {
        writeln!(stdin, "during {i}").expect("the client reads");
        thread::sleep(Duration::from_millis(200));
        lines
            .try_iter()
            .any(|line| line.starts_with("! POST refused: 503"))
    });
    assert!(refused, "no message was refused while Redis was down");
    let _redis = Redis::start_on(port).expect("redis-server ran a moment ago");
    // Once the node has read the new log, the member is claimed again and chats on.
    let started = Instant::now();
    let back = loop {
        writeln!(stdin, "after the blip").expect("the client reads");
        thread::sleep(Duration::from_millis(300));
        let seen: Vec<String> = lines.try_iter().collect();
        assert!(
            !seen.iter().any(|l| l.starts_with("! disconnected")),
            "{seen:?}"
        );
        if seen.iter().any(|l| l.ends_with("<alice> after the blip")) {
            break true;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(back, "the member could not chat after Redis came back");
    assert!(
        child.try_wait().expect("waitable").is_none(),
        "the client is still running"
    );
    drop(stdin);
    let _ = child.wait();
}

/// K4 with the command connection killed in the middle of its pipeline (Redis paused, the
/// pipeline sent, every client connection killed, Redis resumed): each message gets exactly
/// one answer, and each acknowledged line reaches every member exactly once.
#[test]
fn k4_a_pipeline_broken_midway_gives_one_answer_per_message() {
    const MEMBERS: usize = 5;
    const POSTS: usize = 20;
    let Some(redis) = Redis::start() else { return };
    let server = node(Runtime::Smol, &redis, "a", &[]);
    let mut members: Vec<Client> = (0..MEMBERS)
        .map(|i| server.member(&format!("m{i}")))
        .collect();
    redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    for (i, member) in members.iter_mut().enumerate() {
        let batch: Vec<u8> = (0..POSTS)
            .flat_map(|seq| request("POST", "x", format!("{i}.{seq}").as_bytes()))
            .collect();
        member.send(&batch);
    }
    thread::sleep(Duration::from_millis(500));
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    // Each member: one answer per message (its line, or a 503), then everyone's lines.
    let mut acknowledged = Vec::new();
    let mut seen = Vec::new();
    for (i, member) in members.iter_mut().enumerate() {
        let own = format!("[ m{i} ] : ");
        let (mut answers, mut lines) = (0, Vec::new());
        while answers < POSTS {
            let reply = member.read_response();
            let text = reply.text();
            if reply.code() == 503 {
                answers += 1;
            } else if text.starts_with("[ ") {
                if text.starts_with(&own) {
                    answers += 1;
                    acknowledged.push(text.clone());
                }
                lines.push(text);
            }
        }
        seen.push(lines);
    }
    for (member, lines) in members.iter_mut().zip(&mut seen) {
        while acknowledged.iter().any(|line| !lines.contains(line)) {
            let text = member.read_response().text();
            if text.starts_with("[ ") {
                lines.push(text);
            }
        }
        let unique: std::collections::HashSet<&String> = lines.iter().collect();
        assert_eq!(unique.len(), lines.len(), "a line arrived twice");
    }
    // The room goes on, and nothing arrives that was not counted: no late refusal, no copy.
    for (i, member) in members.iter_mut().enumerate() {
        member.send(&request("POST", "x", b"last"));
        let late = member.read_until_body(&format!("[ m{i} ] : last\n"));
        let own = format!("[ m{i} ] : ");
        for reply in late {
            assert_ne!(reply.code(), 503, "a late refusal: {reply:?}");
            assert!(
                !acknowledged.contains(&reply.text()),
                "a second copy: {reply:?}"
            );
            assert!(
                !reply.text().starts_with(&own),
                "a second answer: {reply:?}"
            );
        }
    }
    let logged = redis.cli(&["XLEN", "chathttp:{main}:log"]);
    eprintln!(
        "k4: {} of {} acknowledged after the kill; log length {logged}",
        acknowledged.len(),
        MEMBERS * POSTS
    );
}

/// Joins as `name` asking `History: ask`: the replayed lines as (id, body), and the marker.
fn join_with_history(
    client: &mut Client,
    name: &str,
    ask: &str,
) -> (Vec<(String, String)>, String) {
    let (replayed, marker) = client.join_with_history(name, ask);
    let lines = replayed
        .iter()
        .map(|r| (r.message_id().to_owned(), r.text()))
        .collect();
    (lines, marker)
}

#[test]
fn e5_every_node_replays_the_same_lines_and_a_member_resumes_on_another_node() {
    let Some(redis) = Redis::start() else { return };
    let a = node(Runtime::Smol, &redis, "a", &[]);
    let mut alice = a.member("alice");
    for n in 1..=3 {
        alice.request("POST", "alice", format!("line {n}").as_bytes());
    }
    // A node started after the lines were said reads them back from the stream.
    let b = node(Runtime::Std, &redis, "b", &[]);
    let mut carol = b.guest();
    let (on_b, marker) = join_with_history(&mut carol, "carol", "10");
    assert_eq!(marker, "History: 3 messages replayed\n");
    let mut dave = a.guest();
    let (on_a, _) = join_with_history(&mut dave, "dave", "10");
    assert_eq!(
        on_a, on_b,
        "the same lines under the same ids on both nodes"
    );
    let bodies: Vec<&str> = on_a.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "[ alice ] : line 1\n",
            "[ alice ] : line 2\n",
            "[ alice ] : line 3\n"
        ]
    );

    // Dave drops on node a, two lines are said, and he resumes on node b after his last id.
    let last = on_a.last().expect("three lines").0.clone();
    drop(dave);
    read_until(&mut alice, Duration::from_secs(10), |b| {
        b == "dave has just left the chat room...\n"
    });
    alice.request("POST", "alice", b"while away 1");
    alice.request("POST", "alice", b"while away 2");
    let mut dave = b.guest();
    let (resumed, marker) = join_with_history(&mut dave, "dave", &format!("after {last}"));
    let bodies: Vec<&str> = resumed.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(
        bodies,
        ["[ alice ] : while away 1\n", "[ alice ] : while away 2\n"]
    );
    assert_eq!(marker, "History: 2 messages replayed\n");
    // Live lines go on numbering from the log, the same id on every node.
    alice.request("POST", "alice", b"live");
    let on_dave = read_until(&mut dave, Duration::from_secs(10), |b| {
        b == "[ alice ] : live\n"
    });
    assert_eq!(
        on_dave.last().map(String::as_str),
        Some("[ alice ] : live\n")
    );
}
