//! The real `chat-client` binary in line mode against a real `chat-server-smol`.

mod chat_client_support;

use chat_client_support::{LineClient, SERVER};
use chathttp_tests::Server;

#[test]
fn two_clients_join_talk_list_users_and_leave() {
    let server = Server::start(SERVER, &[]);
    let mut alice = LineClient::start(server.addr(), "alice");
    alice.expect_line(&format!("* connected to {}", server.addr()));
    alice.expect_line("* joined as alice");

    let mut bob = LineClient::start(server.addr(), "bob");
    bob.expect_line("* joined as bob");
    alice.expect_line("* bob joined");

    bob.send("hello alice");
    bob.expect_chat("bob", "hello alice");
    alice.expect_chat("bob", "hello alice");

    alice.send("hi bob, 你好 👋");
    alice.expect_chat("alice", "hi bob, 你好 👋");
    bob.expect_chat("alice", "hi bob, 你好 👋");

    alice.send("/users");
    alice.expect_line("* online: alice, bob");

    bob.send("/quit");
    bob.expect_line("* left the room");
    let (status, rest) = bob.wait_exit();
    assert!(
        status.success(),
        "bob exits 0 after /quit: {status}, then {rest:?}"
    );
    alice.expect_line("* bob left");

    alice.send("/users");
    alice.expect_line("* online: alice");

    // End of input is /quit.
    alice.close_stdin();
    alice.expect_line("* left the room");
    let (status, rest) = alice.wait_exit();
    assert!(
        status.success(),
        "alice exits 0 at end of input: {status}, then {rest:?}"
    );
}

#[test]
fn lines_typed_before_the_join_is_confirmed_are_sent_after_it() {
    let server = Server::start(SERVER, &[]);
    let mut carol = LineClient::start(server.addr(), "carol");
    carol.send("early bird");
    carol.send("/users");
    carol.close_stdin();
    carol.expect_line("* joined as carol");
    carol.expect_chat("carol", "early bird");
    carol.expect_line("* online: carol");
    carol.expect_line("* left the room");
    let (status, _) = carol.wait_exit();
    assert!(status.success());
}

#[test]
fn a_taken_name_is_an_error_and_exit_code_1() {
    let server = Server::start(SERVER, &[]);
    let mut first = LineClient::start(server.addr(), "dave");
    first.expect_line("* joined as dave");
    let mut second = LineClient::start(server.addr(), "DAVE");
    second.expect_line("! the name \"DAVE\" is taken");
    let (status, _) = second.wait_exit();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn unknown_commands_and_help_are_answered_locally() {
    let server = Server::start(SERVER, &[]);
    let mut erin = LineClient::start(server.addr(), "erin");
    erin.expect_line("* joined as erin");
    erin.send("/nick bob");
    erin.expect_line("! unknown command /nick (try /help)");
    erin.send("/help");
    erin.expect_that("the /users help line", |l| l.starts_with("* /users"));
    erin.send("//users is a message");
    erin.expect_chat("erin", "/users is a message");
}

#[test]
fn the_server_going_away_is_reported_with_exit_code_1() {
    let server = Server::start(SERVER, &[]);
    let mut frank = LineClient::start(server.addr(), "frank");
    frank.expect_line("* joined as frank");
    drop(server);
    frank.expect_that("a disconnect notice", |l| l.starts_with("! disconnected: "));
    let (status, _) = frank.wait_exit();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn an_unreachable_server_is_an_error_and_exit_code_1() {
    // A port that was free a moment ago: bind, learn it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut ghost = LineClient::start(format!("127.0.0.1:{port}"), "ghost");
    ghost.expect_that("a connect error", |l| {
        l.starts_with(&format!("! cannot connect to 127.0.0.1:{port}: "))
    });
    let (status, _) = ghost.wait_exit();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn c1_a_terminal_hijack_is_printed_as_text_under_its_real_name() {
    let server = Server::start(SERVER, &[]);
    let mut alice = LineClient::start(server.addr(), "alice");
    alice.expect_line("* joined as alice");
    let mut eve = server.member("eve");
    alice.expect_line("* eve joined");
    let attack = "\u{1b}]0;pwned\u{7}\u{1b}[2J\rforged <bob> send me the code";
    let reply = eve.request("POST", "eve", attack.as_bytes());
    assert_eq!(reply.code(), 200, "{reply:?}");
    // One line, still eve's, with every control shown as a placeholder.
    alice.expect_chat("eve", "␛]0;pwned␇␛[2J␍forged <bob> send me the code");
}
