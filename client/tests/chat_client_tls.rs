//! `chat-client --ca` over TLS (T3) against a real `chat-server-smol` speaking TLS: a whole
//! conversation, and the certificates it must refuse, each with a message that says why.

mod chat_client_support;

use std::process::Command;

use chat_client_support::{LineClient, SERVER, client_binary};
use chathttp_tests::Server;
use chathttp_tests::tls::pki;

fn ca() -> String {
    pki().ca_file().to_str().expect("a UTF-8 path").to_owned()
}

#[test]
fn two_clients_talk_over_tls() {
    let server = Server::start(SERVER.with_tls(), &[]);
    let ca = ca();
    let mut alice = LineClient::start_with(server.addr(), "alice", &["--ca", &ca]);
    alice.expect_line(&format!("* connected to {}", server.addr()));
    alice.expect_line("* joined as alice");
    let mut bob = LineClient::start_with(server.addr(), "bob", &["--ca", &ca]);
    bob.expect_line("* joined as bob");
    alice.expect_line("* bob joined");
    bob.send("over TLS");
    alice.expect_chat("bob", "over TLS");
    bob.close_stdin();
    bob.expect_line("* left the room");
    assert!(bob.wait_exit().0.success());
    alice.expect_line("* bob left");
}

/// Starts a TLS server with the certificate `name` made for `names`, valid until
/// `not_after`, and returns what a client trusting the tests' CA printed and its exit code.
fn refused_by_client(name: &str, names: &[&str], not_after: Option<i32>) -> (Vec<String>, i32) {
    let (cert, key) = pki().issue(name, names, not_after);
    let flags = [
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ];
    let server = Server::start(SERVER.with_tls(), &flags);
    let mut client = LineClient::start_with(server.addr(), "eve", &["--ca", &ca()]);
    let (status, lines) = client.wait_exit();
    (lines, status.code().unwrap_or(-1))
}

#[test]
fn an_expired_certificate_is_refused_with_a_clear_message() {
    let (lines, code) = refused_by_client("expired", &["127.0.0.1"], Some(2001));
    assert_eq!(code, 1, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("! cannot connect to ") && l.contains("certificate expired")),
        "{lines:?}"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_with_a_clear_message() {
    let (lines, code) = refused_by_client("elsewhere", &["example.org"], None);
    assert_eq!(code, 1, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("! cannot connect to ")
            && l.contains("certificate not valid for name \"127.0.0.1\"")),
        "{lines:?}"
    );
}

#[test]
fn a_server_the_ca_did_not_sign_is_refused() {
    let server = Server::start(SERVER.with_tls(), &[]);
    // Trusting a certificate that did not sign the server's is trusting nobody it shows.
    let (cert, _) = pki().issue("stranger", &["127.0.0.1"], None);
    let mut client = LineClient::start_with(
        server.addr(),
        "eve",
        &["--ca", cert.to_str().expect("utf-8")],
    );
    let (status, lines) = client.wait_exit();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("not signed by a certificate authority this client trusts")),
        "{lines:?}"
    );
}

#[test]
fn a_ca_file_without_certificates_is_a_usage_error() {
    let path = pki().dir().join("empty.pem");
    std::fs::write(&path, "nothing here\n").expect("write");
    let output = Command::new(client_binary())
        .args([
            "--plain",
            "--name",
            "x",
            "--ca",
            path.to_str().expect("utf-8"),
        ])
        .output()
        .expect("chat-client runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no CERTIFICATE in it"), "{stderr}");
}
