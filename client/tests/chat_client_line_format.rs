//! Line mode's output format and input handling, without a socket: the front end is fed
//! session events and input lines, and prints into a buffer.

use chathttp_client::args::ServerAddr;
use chathttp_client::driver::{Action, Frontend};
use chathttp_client::line::LineMode;
use chathttp_core::client::{ClientEvent, Intent};
use chathttp_core::{Method, UsageError};
use chrono::NaiveTime;

fn at(h: u32, m: u32, s: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, s).expect("a valid time")
}

fn front() -> LineMode<Vec<u8>> {
    let server = ServerAddr::parse("127.0.0.1:9994").expect("a valid address");
    LineMode::new(Vec::new(), server, "alice".into())
}

fn output(front: &LineMode<Vec<u8>>) -> String {
    String::from_utf8(front.output().clone()).expect("UTF-8 output")
}

#[test]
fn one_line_per_event() {
    let mut f = front();
    assert_eq!(
        f.on_connected(),
        vec![Action::Send(Intent::Join("alice".into()))]
    );
    f.on_event(ClientEvent::Connected, at(12, 0, 0));
    f.on_event(
        ClientEvent::Joined {
            name: "alice".into(),
        },
        at(12, 0, 0),
    );
    f.on_event(
        ClientEvent::MemberJoined { name: "bob".into() },
        at(12, 0, 1),
    );
    let chat = |from: &str, text: &str| ClientEvent::ChatLine {
        from: from.into(),
        text: text.into(),
        id: None,
    };
    f.on_event(chat("bob", "hi"), at(12, 0, 1));
    f.on_event(chat("bob", "two\nlines\n"), at(12, 0, 2));
    f.on_event(
        ClientEvent::UserList {
            names: vec!["alice".into(), "bob".into()],
        },
        at(12, 0, 3),
    );
    f.on_event(
        ClientEvent::Refused {
            request: Some(Method::Post),
            code: 400,
            reason: "empty message".into(),
        },
        at(12, 0, 4),
    );
    f.on_event(ClientEvent::MemberLeft { name: "bob".into() }, at(12, 0, 5));
    assert_eq!(
        output(&f),
        "* connected to 127.0.0.1:9994\n\
         * joined as alice\n\
         * bob joined\n\
         [12:00:01] <bob> hi\n\
         [12:00:02] <bob> two\n\
         [12:00:02] <bob> lines\n\
         * online: alice, bob\n\
         ! POST refused: 400 empty message\n\
         * bob left\n"
    );
}

#[test]
fn input_waits_for_the_join_then_goes_out_in_order() {
    let mut f = front();
    assert_eq!(f.on_line("first"), vec![]);
    assert_eq!(f.on_line("/users"), vec![]);
    assert_eq!(f.on_eof(), vec![]);
    let actions = f.on_event(
        ClientEvent::Joined {
            name: "alice".into(),
        },
        at(12, 0, 0),
    );
    assert_eq!(
        actions,
        vec![
            Action::Send(Intent::Say("first".into())),
            Action::Send(Intent::ListUsers),
            Action::Send(Intent::Leave),
        ]
    );
    assert!(f.is_quitting());
    assert_eq!(
        f.on_event(ClientEvent::Left, at(12, 0, 1)),
        vec![Action::Exit(0)]
    );
}

#[test]
fn refusals_and_disconnects_end_with_exit_code_1() {
    let mut f = front();
    let taken = f.on_event(
        ClientEvent::NameTaken {
            name: "alice".into(),
        },
        at(12, 0, 0),
    );
    assert_eq!(taken, vec![Action::Exit(1)]);

    let mut f = front();
    let invalid = f.on_send_error(
        Intent::Join("a b".into()),
        UsageError::InvalidName(chathttp_core::NameError::Whitespace(' ')),
    );
    assert_eq!(invalid, vec![Action::Exit(1)]);
    assert_eq!(output(&f), "! user name contains whitespace (U+0020)\n");

    let mut f = front();
    f.on_event(
        ClientEvent::Joined {
            name: "alice".into(),
        },
        at(12, 0, 0),
    );
    let gone = f.on_event(
        ClientEvent::Disconnected {
            reason: "Server is shutting down...".into(),
        },
        at(12, 0, 1),
    );
    assert_eq!(gone, vec![Action::Exit(1)]);
    assert!(output(&f).ends_with("! disconnected: Server is shutting down...\n"));
}

#[test]
fn an_invalid_name_is_refused_before_connecting() {
    let server = ServerAddr::parse("127.0.0.1:9994").expect("a valid address");
    let mut f = LineMode::new(Vec::new(), server.clone(), "[bot]".into());
    assert_eq!(f.start(), vec![Action::Exit(1)]);
    assert_eq!(
        output(&f),
        "! invalid name: user name contains '[', which is reserved\n"
    );
    let mut f = LineMode::new(Vec::new(), server.clone(), "  émile ".into());
    assert_eq!(
        f.start(),
        vec![Action::Connect(server)],
        "trimmed, then valid"
    );
}
