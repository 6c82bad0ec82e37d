//! The client session machine against scripted server bytes: ours, and the original's.

mod support;

use chathttp_core::client::{ClientEvent, ClientSession, Intent};
use chathttp_core::server::Server;
use chathttp_core::server::history::{Ask, Epoch, HistoryConfig};
use chathttp_core::{ServerConfig, Timestamp, UsageError};

const ORIGINAL_GREETING: &[u8] = b"HTTP/1.1 202 Accept\nDatetime: 2015-11-29 10:17:34\nDeveloper: Soros_Liu\nServer: Python Socket Server\nContent_Length: 4\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nHi!\n";
const ORIGINAL_CHAT: &[u8] = b"HTTP/1.1 200 OK\nDatetime: 2015-11-29 10:17:48\nDeveloper: Soros_Liu\nServer: Python Socket Server\nContent_Length: 29\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n[ Alice ] : Hello, everyone!\n";
const ORIGINAL_TAKEN: &[u8] = b"HTTP/1.1 401 User Name Exist\nDatetime: 2015-11-29 10:44:14\nDeveloper: Soros_Liu\nServer: Python Socket Server\nContent_Length: 11\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nError...T.T";

fn events(session: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn now() -> Timestamp {
    Timestamp::from_millis(0)
}

#[test]
fn against_the_original_server_byte_for_byte() {
    let mut session = ClientSession::new("127.0.0.1");
    session.handle_received(ORIGINAL_GREETING);
    session
        .handle_intent(now(), Intent::Join("Alice".into()))
        .expect("guest may join");
    let sent = session.poll_transmit().expect("an ADD");
    assert!(sent.starts_with(b"ADD 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:17:34\nUser_Agent: Alice\nHost: 127.0.0.1\n"));
    session.handle_received(ORIGINAL_TAKEN);
    assert_eq!(
        events(&mut session),
        [
            ClientEvent::Connected,
            ClientEvent::NameTaken {
                name: "Alice".into()
            }
        ]
    );
    assert_eq!(session.name(), None, "a refused name is not ours");

    session
        .handle_intent(now(), Intent::Join("Alice".into()))
        .expect("may retry");
    // The original answers a good ADD with some 200 that is none of the four H3 bodies.
    session.handle_received(&ORIGINAL_CHAT[..ORIGINAL_CHAT.len() - 50]);
    session.handle_received(b"");
    let welcome = b"HTTP/1.1 200 OK\nDatetime: 2015-11-29 10:17:40\nDeveloper: Soros_Liu\nServer: Python Socket Server\nContent_Length: 4\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nOK!\n";
    let mut stream = ORIGINAL_CHAT[ORIGINAL_CHAT.len() - 50..].to_vec();
    stream.extend_from_slice(welcome);
    session.handle_received(&stream);
    assert_eq!(
        events(&mut session),
        [
            ClientEvent::ChatLine {
                from: "Alice".into(),
                text: "Hello, everyone!".into(),
                id: None,
            },
            ClientEvent::Joined {
                name: "Alice".into()
            },
        ]
    );
    assert!(session.is_joined());
}

/// Wires a session to a real room machine and returns what the session saw.
#[test]
fn a_whole_conversation_with_our_server() {
    let mut server = Server::new(ServerConfig::default(), now());
    let mut alice = ClientSession::new("127.0.0.1");
    let mut bob = ClientSession::new("127.0.0.1");
    let a = server.handle_open(now());
    let b = server.handle_open(now());
    let pump = |server: &mut Server, alice: &mut ClientSession, bob: &mut ClientSession| loop {
        let mut moved = false;
        if let Some(bytes) = alice.poll_transmit() {
            server.handle_received(now(), a, &bytes);
            moved = true;
        }
        if let Some(bytes) = bob.poll_transmit() {
            server.handle_received(now(), b, &bytes);
            moved = true;
        }
        while let Some(output) = server.poll_output() {
            moved = true;
            match output {
                chathttp_core::Output::Send { conn, frame } => {
                    if conn == a {
                        alice.handle_received(&frame)
                    } else {
                        bob.handle_received(&frame)
                    }
                }
                chathttp_core::Output::Broadcast { to, frame } => {
                    for conn in to.iter() {
                        if *conn == a {
                            alice.handle_received(&frame)
                        } else {
                            bob.handle_received(&frame)
                        }
                    }
                }
                chathttp_core::Output::Close { conn, .. } => {
                    if conn == a {
                        alice.handle_closed()
                    } else {
                        bob.handle_closed()
                    }
                }
                // Two members exchanging a few lines never fall behind (S8.1); history is
                // off, so nothing is to be recorded (E4).
                chathttp_core::Output::PauseReading
                | chathttp_core::Output::ResumeReading
                | chathttp_core::Output::Record(_)
                | chathttp_core::Output::StopRecording
                | chathttp_core::Output::Event(_) => {}
            }
        }
        if !moved {
            break;
        }
    };
    alice
        .handle_intent(now(), Intent::Join("alice".into()))
        .expect("join");
    pump(&mut server, &mut alice, &mut bob);
    bob.handle_intent(now(), Intent::Join("ALICE".into()))
        .expect("join");
    pump(&mut server, &mut alice, &mut bob);
    bob.handle_intent(now(), Intent::Join("bob".into()))
        .expect("retry");
    alice
        .handle_intent(now(), Intent::Say("hi bob\nhow are you?".into()))
        .expect("say");
    bob.handle_intent(now(), Intent::ListUsers).expect("list");
    pump(&mut server, &mut alice, &mut bob);
    assert_eq!(
        alice.handle_intent(now(), Intent::Say("  ".into())),
        Err(UsageError::EmptyMessage)
    );
    alice.handle_intent(now(), Intent::Leave).expect("leave");
    pump(&mut server, &mut alice, &mut bob);
    assert_eq!(
        alice.handle_intent(now(), Intent::ListUsers),
        Err(UsageError::NotConnected)
    );

    insta::assert_debug_snapshot!((events(&mut alice), events(&mut bob)));
}

#[test]
fn intents_out_of_phase_are_usage_errors() {
    let mut session = ClientSession::new("h");
    assert_eq!(
        session.handle_intent(now(), Intent::Say("x".into())),
        Err(UsageError::NotJoined)
    );
    assert_eq!(
        session.handle_intent(now(), Intent::Leave),
        Err(UsageError::NotJoined)
    );
    assert!(matches!(
        session.handle_intent(now(), Intent::Join("a b".into())),
        Err(UsageError::InvalidName(_))
    ));
    session
        .handle_intent(now(), Intent::Join("a".into()))
        .expect("join");
    assert_eq!(
        session.handle_intent(now(), Intent::Join("b".into())),
        Err(UsageError::AlreadyJoined)
    );
    session.handle_received(
        b"HTTP/1.1 503 Service Unavailable\nContent_Length: 27\n\nServer is shutting down...\n",
    );
    assert_eq!(
        events(&mut session),
        [ClientEvent::Disconnected {
            reason: "Server is shutting down...".into()
        }]
    );
    assert!(session.is_closed());
}

#[test]
fn c2_a_busy_503_is_shown_and_the_session_stays() {
    let mut session = ClientSession::new("h");
    session.handle_received(ORIGINAL_GREETING);
    session
        .handle_intent(now(), Intent::Join("a".into()))
        .expect("join");
    let _ = events(&mut session);
    session.handle_received(
        b"HTTP/1.1 503 Service Unavailable\nContent_Length: 43\n\ncannot join now: the shared log is down...\n",
    );
    let shown = events(&mut session);
    assert!(
        matches!(&shown[..], [ClientEvent::Refused { code: 503, reason, .. }] if reason.contains("shared log")),
        "{shown:?}"
    );
    assert!(!session.is_closed());
    // The name may be tried again once the server is back.
    session
        .handle_intent(now(), Intent::Join("a".into()))
        .expect("a refused join can be tried again");
}

/// Carries bytes both ways between `server` and the sessions until nothing moves.
fn exchange(server: &mut Server, sessions: &mut [(chathttp_core::ConnId, ClientSession)]) {
    loop {
        let mut moved = false;
        for (conn, session) in sessions.iter_mut() {
            if let Some(bytes) = session.poll_transmit() {
                server.handle_received(now(), *conn, &bytes);
                moved = true;
            }
        }
        while let Some(output) = server.poll_output() {
            moved = true;
            let (to, frame): (Vec<_>, _) = match output {
                chathttp_core::Output::Send { conn, frame } => (vec![conn], frame),
                chathttp_core::Output::Broadcast { to, frame } => (to.to_vec(), frame),
                _ => continue,
            };
            for (conn, session) in sessions.iter_mut() {
                if to.contains(conn) {
                    session.handle_received(&frame);
                }
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn e2_e3_history_is_replayed_then_live_lines_carry_ids_to_resume_after() {
    let config = ServerConfig {
        history: HistoryConfig::in_memory(10, Epoch::new("e1").expect("a valid epoch")),
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, now());
    let mut sessions = vec![
        (server.handle_open(now()), ClientSession::new("h")),
        (server.handle_open(now()), ClientSession::new("h")),
    ];
    sessions[0]
        .1
        .handle_intent(now(), Intent::Join("alice".into()))
        .expect("join");
    exchange(&mut server, &mut sessions);
    sessions[0]
        .1
        .handle_intent(now(), Intent::Say("one".into()))
        .expect("say");
    sessions[0]
        .1
        .handle_intent(now(), Intent::Say("two".into()))
        .expect("say");
    exchange(&mut server, &mut sessions);
    let ask = Ask::Last(1);
    sessions[1]
        .1
        .handle_intent(now(), Intent::JoinWithHistory("bob".into(), ask))
        .expect("join");
    sessions[1]
        .1
        .handle_intent(now(), Intent::ListUsers)
        .expect("list");
    exchange(&mut server, &mut sessions);
    sessions[0]
        .1
        .handle_intent(now(), Intent::Say("three".into()))
        .expect("say");
    exchange(&mut server, &mut sessions);
    let bob: Vec<ClientEvent> = events(&mut sessions[1].1);
    assert_eq!(
        bob,
        [
            ClientEvent::Connected,
            ClientEvent::Joined { name: "bob".into() },
            ClientEvent::Replayed {
                from: "alice".into(),
                text: "two".into(),
                id: "e1.2".into(),
                said_at: Some(now().local()),
            },
            ClientEvent::HistoryEnd {
                replayed: 1,
                missed: false
            },
            ClientEvent::UserList {
                names: vec!["alice".into(), "bob".into()]
            },
            ClientEvent::ChatLine {
                from: "alice".into(),
                text: "three".into(),
                id: Some("e1.3".into())
            },
        ]
    );
}

#[test]
fn e2_a_server_that_ignores_history_is_noticed_and_the_session_goes_on() {
    let mut session = ClientSession::new("127.0.0.1");
    session.handle_received(ORIGINAL_GREETING);
    let ask = Ask::After("e1.7".into());
    session
        .handle_intent(now(), Intent::JoinWithHistory("Alice".into(), ask))
        .expect("join");
    let sent = String::from_utf8(session.poll_transmit().expect("an ADD")).expect("text");
    assert!(
        sent.ends_with("Content_Type: text\nHistory: after e1.7\n\n"),
        "{sent}"
    );
    let welcome = b"HTTP/1.1 200 OK\nDatetime: 2015-11-29 10:17:40\nDeveloper: Soros_Liu\nServer: Python Socket Server\nContent_Length: 4\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nOK!\n";
    session.handle_received(welcome);
    session.handle_received(ORIGINAL_CHAT);
    assert_eq!(
        events(&mut session),
        [
            ClientEvent::Connected,
            ClientEvent::Joined {
                name: "Alice".into()
            },
            ClientEvent::NoHistory,
            ClientEvent::ChatLine {
                from: "Alice".into(),
                text: "Hello, everyone!".into(),
                id: None
            },
        ]
    );
}
