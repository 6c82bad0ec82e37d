//! E4: the history file (`--history-db`) survives a SIGKILL, and a file that cannot be used
//! is a clear error.

use chathttp_tests::{Response, Server, conformance};

fn bodies(responses: &[Response]) -> Vec<String> {
    responses.iter().map(Response::text).collect()
}

fn id(response: &Response) -> String {
    response.message_id().to_owned()
}

/// A path for a history file no other test uses, in a fresh directory.
fn history_file(test: &str, rt: chathttp_tests::Runtime) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chathttp-e4-{}-{test}-{}",
        std::process::id(),
        rt.binary_name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir.join("history.db")
}

conformance! {
    fn e4_history_survives_sigkill_and_a_resume_across_the_restart_misses_nothing(rt: Runtime) {
        let path = history_file("sigkill", rt);
        let db = path.to_str().expect("a UTF-8 path");
        let mut server = Server::start(rt, &["--history-db", db]);
        let mut alice = server.member("alice");
        let (mut bob, _, _) = server.join_with_history("bob", "0");
        assert_eq!(alice.read_response().text(), "bob has just entered the chat room...\n");
        let mut ids = Vec::new();
        for n in 1..=5 {
            alice.request("POST", "alice", format!("line {n}").as_bytes());
            ids.push(id(&bob.read_response()));
        }
        // Every line bob received was committed before it was sent: a SIGKILL loses none.
        server.signal("KILL");
        server.wait();
        let server = Server::start(rt, &["--history-db", db]);
        let (mut bob, replayed, marker) =
            server.join_with_history("bob", &format!("after {}", ids[1]));
        assert_eq!(
            bodies(&replayed),
            ["[ alice ] : line 3\n", "[ alice ] : line 4\n", "[ alice ] : line 5\n"]
        );
        assert_eq!(marker, "History: 3 messages replayed\n");
        let replayed_ids: Vec<String> = replayed.iter().map(id).collect();
        assert_eq!(replayed_ids, ids[2..], "the same ids after the restart");
        let mut carol = server.member("carol");
        assert_eq!(bob.read_response().text(), "carol has just entered the chat room...\n");
        carol.request("POST", "carol", b"after the restart");
        let next = bob.read_response();
        assert_eq!(next.text(), "[ carol ] : after the restart\n");
        assert!(!ids.contains(&id(&next)), "no id is given twice");
        let _ = std::fs::remove_dir_all(path.parent().expect("a directory"));
    }

    fn e4_a_history_file_that_cannot_be_used_is_a_one_line_error(rt: Runtime) {
        let path = history_file("unusable", rt);
        std::fs::write(&path, vec![b'x'; 4096]).expect("a file that is not a database");
        let output = std::process::Command::new(rt.binary())
            .args(["--bind", "127.0.0.1:0", "--history-db"])
            .arg(&path)
            .output()
            .expect("the server runs");
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("history file "), "{stderr}");
        assert!(output.stdout.is_empty(), "it never listened");
        let output = std::process::Command::new(rt.binary())
            .args(["--bind", "127.0.0.1:0", "--history", "0", "--history-db"])
            .arg(&path)
            .output()
            .expect("the server runs");
        assert_eq!(output.status.code(), Some(2), "--history-db without history is a bad flag");
        let _ = std::fs::remove_dir_all(path.parent().expect("a directory"));
    }
}
