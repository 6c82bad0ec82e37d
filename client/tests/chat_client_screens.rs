//! Snapshot tests of the TUI's screens, rendered on ratatui's `TestBackend` from an `App`
//! driven by keys and session events alone: no terminal, no socket.

use chathttp_client::args::ServerAddr;
use chathttp_client::driver::{Action, Frontend};
use chathttp_client::tui::App;
use chathttp_client::tui::app::Screen;
use chathttp_client::tui::view::{self, name_color};
use chathttp_core::client::{ClientEvent, Intent};
use chathttp_core::server::history::Ask;
use chrono::NaiveTime;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};

fn server() -> ServerAddr {
    ServerAddr::parse("127.0.0.1:9994").expect("a valid address")
}

fn at(h: u32, m: u32, s: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, s).expect("a valid time")
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

fn render(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| view::draw(frame, app))
        .expect("drawing on a test backend");
    terminal
}

/// An app that has logged in as `name`, the way the driver would get it there.
fn joined(name: &str) -> App {
    let mut app = App::new(&server(), Some(name));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Connect(server())]
    );
    assert_eq!(app.on_connected(), vec![Action::Send(first_join(name))]);
    let actions = app.on_event(ClientEvent::Joined { name: name.into() }, at(12, 0, 0));
    assert_eq!(
        actions,
        vec![Action::Send(Intent::ListUsers)],
        "the member pane is filled by GET"
    );
    app.on_event(
        ClientEvent::UserList {
            names: vec!["alice".into(), name.into()],
        },
        at(12, 0, 0),
    );
    app
}

/// The `ADD` of a first join: the last 50 lines asked for (E2).
fn first_join(name: &str) -> Intent {
    Intent::JoinWithHistory(name.into(), Ask::Last(50))
}

fn say(app: &mut App, from: &str, text: &str, time: NaiveTime) {
    app.on_event(
        ClientEvent::ChatLine {
            from: from.into(),
            text: text.into(),
            id: None,
        },
        time,
    );
}

/// The connection of a member drops: the app tries once at once to reconnect.
fn drop_connection(app: &mut App, reason: &str, time: NaiveTime) {
    let event = ClientEvent::Disconnected {
        reason: reason.into(),
    };
    let actions = app.on_event(event, time);
    assert_eq!(
        actions,
        vec![Action::Connect(server())],
        "one attempt at once"
    );
}

fn replayed(app: &mut App, from: &str, text: &str, id: &str, said: NaiveTime) {
    app.on_event(
        ClientEvent::Replayed {
            from: from.into(),
            text: text.into(),
            id: id.into(),
            said_at: Some(
                chrono::NaiveDate::from_ymd_opt(2026, 12, 5)
                    .expect("a date")
                    .and_time(said),
            ),
        },
        at(13, 0, 0),
    );
}

#[test]
fn e3_history_on_joining_is_dimmed_above_a_rule() {
    let mut app = App::new(&server(), Some("bob"));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.on_connected(), vec![Action::Send(first_join("bob"))]);
    app.on_event(ClientEvent::Joined { name: "bob".into() }, at(13, 0, 0));
    replayed(&mut app, "alice", "is anyone here?", "e1.1", at(11, 58, 0));
    replayed(
        &mut app,
        "carol",
        "sorry, I was away",
        "e1.2",
        at(11, 59, 30),
    );
    app.on_event(
        ClientEvent::HistoryEnd {
            replayed: 2,
            missed: false,
        },
        at(13, 0, 0),
    );
    say(&mut app, "alice", "hi bob", at(13, 0, 5));
    let terminal = render(&mut app, 80, 12);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    let row_of = |needle: &str| {
        (0..buffer.area.height)
            .find(|&y| {
                let row: String = (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect();
                row.contains(needle)
            })
            .unwrap_or_else(|| panic!("{needle} is on screen"))
    };
    let (old, rule, new) = (row_of("anyone"), row_of(" history "), row_of("hi bob"));
    assert!(
        old < rule && rule < new,
        "replayed lines above the rule, live ones below"
    );
    let x = (0..buffer.area.width)
        .find(|&x| buffer[(x, old)].symbol() == "i" && buffer[(x + 1, old)].symbol() == "s")
        .expect("the replayed text");
    assert!(
        buffer[(x, old)].modifier.contains(Modifier::DIM),
        "replayed lines are dimmed"
    );
}

#[test]
fn e2_a_dropped_connection_reconnects_and_resumes_after_the_last_id() {
    let mut app = joined("bob");
    app.on_event(
        ClientEvent::ChatLine {
            from: "alice".into(),
            text: "brb".into(),
            id: Some("e1.5".into()),
        },
        at(12, 0, 1),
    );
    drop_connection(&mut app, "connection reset", at(12, 0, 2));
    assert_eq!(
        app.on_connected(),
        vec![Action::Send(Intent::JoinWithHistory(
            "bob".into(),
            Ask::After("e1.5".into())
        ))]
    );
    app.on_event(ClientEvent::Joined { name: "bob".into() }, at(12, 0, 3));
    for (n, text) in ["one", "two", "three"].into_iter().enumerate() {
        replayed(
            &mut app,
            "alice",
            text,
            &format!("e1.{}", 6 + n),
            at(12, 0, 2),
        );
    }
    app.on_event(
        ClientEvent::HistoryEnd {
            replayed: 3,
            missed: false,
        },
        at(12, 0, 3),
    );
    insta::assert_snapshot!(render(&mut app, 80, 14).backend());
    let text = format!("{}", render(&mut app, 80, 14).backend());
    assert!(text.contains("3 messages while you were away"), "{text}");

    // The next drop resumes after the last replayed line; a gap is said plainly.
    app.on_event(
        ClientEvent::Disconnected {
            reason: "gone".into(),
        },
        at(12, 1, 0),
    );
    assert_eq!(
        app.on_connected(),
        vec![Action::Send(Intent::JoinWithHistory(
            "bob".into(),
            Ask::After("e1.8".into())
        ))]
    );
    app.on_event(ClientEvent::Joined { name: "bob".into() }, at(12, 5, 0));
    app.on_event(
        ClientEvent::HistoryEnd {
            replayed: 0,
            missed: true,
        },
        at(12, 5, 0),
    );
    let text = format!("{}", render(&mut app, 120, 14).backend());
    assert!(
        text.contains("0 messages while you were away; some were missed"),
        "{text}"
    );
}

#[test]
fn e2_resuming_on_a_server_without_history_says_that_lines_are_lost() {
    let mut app = joined("bob");
    drop_connection(&mut app, "gone", at(12, 0, 1));
    app.on_connected();
    app.on_event(ClientEvent::Joined { name: "bob".into() }, at(12, 0, 2));
    app.on_event(ClientEvent::NoHistory, at(12, 0, 2));
    let text = format!("{}", render(&mut app, 100, 14).backend());
    assert!(text.contains("This server keeps no history"), "{text}");
}

#[test]
fn login() {
    let mut app = App::new(&server(), Some("bob"));
    insta::assert_snapshot!(render(&mut app, 80, 20).backend());
}

#[test]
fn login_refused_name_taken_then_retried_on_the_same_connection() {
    let mut app = App::new(&server(), Some("alice"));
    app.on_key(key(KeyCode::Enter));
    app.on_connected();
    app.on_event(ClientEvent::Connected, at(12, 0, 0));
    app.on_event(
        ClientEvent::NameTaken {
            name: "alice".into(),
        },
        at(12, 0, 0),
    );
    insta::assert_snapshot!(render(&mut app, 80, 20).backend());

    // Correct the name in place; Enter retries on the open connection, no reconnect.
    for _ in 0.."alice".len() {
        app.on_key(key(KeyCode::Backspace));
    }
    type_text(&mut app, "bob");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(first_join("bob"))]
    );
}

#[test]
fn login_refused_invalid_name_and_unreachable_server() {
    let mut app = App::new(&server(), Some("a:b"));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![],
        "checked before connecting"
    );
    insta::assert_snapshot!("login_invalid_name", render(&mut app, 80, 20).backend());

    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Enter));
    app.on_connect_failed(
        "cannot connect to 127.0.0.1:9994: Connection refused (os error 111)".into(),
    );
    insta::assert_snapshot!("login_unreachable", render(&mut app, 80, 20).backend());
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Connect(server())],
        "retry reconnects"
    );
}

#[test]
fn chat_with_joins_leaves_and_messages() {
    let mut app = joined("bob");
    say(&mut app, "alice", "Hello, everyone!", at(12, 0, 1));
    say(&mut app, "bob", "hi alice", at(12, 0, 2));
    app.on_event(
        ClientEvent::MemberJoined {
            name: "carol".into(),
        },
        at(12, 0, 3),
    );
    say(
        &mut app,
        "carol",
        "a long message that has to wrap onto a second row, indented under the timestamp",
        at(12, 0, 4),
    );
    say(&mut app, "carol", "and one\nwith two lines", at(12, 0, 5));
    app.on_event(
        ClientEvent::MemberLeft {
            name: "alice".into(),
        },
        at(12, 0, 6),
    );
    type_text(&mut app, "typing…");
    insta::assert_snapshot!(render(&mut app, 80, 20).backend());
}

#[test]
fn user_list() {
    let mut app = joined("bob");
    type_text(&mut app, "/users");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(Intent::ListUsers)]
    );
    app.on_event(
        ClientEvent::UserList {
            names: vec!["alice".into(), "bob".into(), "carol".into(), "dave".into()],
        },
        at(12, 0, 9),
    );
    insta::assert_snapshot!(render(&mut app, 80, 14).backend());
}

#[test]
fn long_log_scrolled_with_page_up_and_the_wheel() {
    let mut app = joined("bob");
    for i in 1..=60 {
        say(
            &mut app,
            "alice",
            &format!("message number {i}"),
            at(12, 1, i % 60),
        );
    }
    render(&mut app, 80, 16); // learns the page size, as the first frame does
    app.on_key(key(KeyCode::PageUp));
    app.on_key(key(KeyCode::PageUp));
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    });
    insta::assert_snapshot!(render(&mut app, 80, 16).backend());

    // New messages while scrolled back do not move what is being read.
    let before = format!("{}", render(&mut app, 80, 16).backend());
    say(&mut app, "carol", "a new message", at(12, 2, 0));
    say(
        &mut app,
        "carol",
        "and a long one that takes two rows at this width, to be sure it counts rows",
        at(12, 2, 1),
    );
    let after = format!("{}", render(&mut app, 80, 16).backend());
    let log_rows = |screen: &str| {
        screen
            .lines()
            .skip(2)
            .take(11)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(log_rows(&after), log_rows(&before), "the view stays put");

    app.on_key(key(KeyCode::Esc));
    let screen = render(&mut app, 80, 16);
    let text = format!("{}", screen.backend());
    assert!(
        text.contains("to be sure it counts rows"),
        "Esc follows the end again:\n{text}"
    );
}

#[test]
fn narrow_terminal_hides_the_member_pane() {
    let mut app = joined("bob");
    say(
        &mut app,
        "alice",
        "Hello, everyone! This wraps a lot here.",
        at(12, 0, 1),
    );
    app.on_event(
        ClientEvent::MemberJoined {
            name: "carol".into(),
        },
        at(12, 0, 2),
    );
    type_text(&mut app, "a reply long enough to wrap in the input box");
    insta::assert_snapshot!(render(&mut app, 32, 14).backend());
}

#[test]
fn cjk_and_emoji_text() {
    let mut app = joined("小明");
    app.on_event(
        ClientEvent::MemberJoined {
            name: "José".into(),
        },
        at(12, 0, 1),
    );
    say(
        &mut app,
        "小明",
        "大家好！今天我们用中文聊天，这一行很长，需要换行才能显示完整。",
        at(12, 0, 2),
    );
    say(
        &mut app,
        "José",
        "¡Hola! 👋🏽 café ☕ 日本語もOK",
        at(12, 0, 3),
    );
    type_text(&mut app, "你好👍");
    insta::assert_snapshot!(render(&mut app, 60, 16).backend());
}

#[test]
fn offline_offers_to_reconnect_with_the_same_name() {
    let mut app = joined("bob");
    say(&mut app, "alice", "brb", at(12, 0, 1));
    drop_connection(&mut app, "the server closed the connection", at(12, 0, 2));
    app.on_connect_failed("connection refused".into());
    insta::assert_snapshot!(render(&mut app, 80, 12).backend());

    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Connect(server())]
    );
    assert_eq!(app.on_connected(), vec![Action::Send(first_join("bob"))]);
    assert_eq!(
        app.on_event(ClientEvent::Joined { name: "bob".into() }, at(12, 0, 3)),
        vec![Action::Send(Intent::ListUsers)]
    );
    let text = format!("{}", render(&mut app, 80, 12).backend());
    assert!(
        text.contains("Rejoined as bob") && text.contains(" online "),
        "{text}"
    );
}

#[test]
fn rejoin_refused_goes_back_to_the_login_form() {
    let mut app = joined("bob");
    drop_connection(&mut app, "gone", at(12, 0, 1));
    app.on_connected();
    app.on_event(ClientEvent::NameTaken { name: "bob".into() }, at(12, 0, 2));
    assert!(matches!(app.screen, Screen::Login(_)));
    let text = format!("{}", render(&mut app, 80, 20).backend());
    assert!(text.contains("was taken while you were away"), "{text}");
}

#[test]
fn sender_colors_are_consistent_and_notices_are_styled_apart() {
    let mut app = joined("bob");
    say(&mut app, "alice", "one", at(12, 0, 1));
    say(&mut app, "carol", "two", at(12, 0, 2));
    say(&mut app, "alice", "three", at(12, 0, 3));
    app.on_event(
        ClientEvent::MemberJoined {
            name: "dave".into(),
        },
        at(12, 0, 4),
    );
    let terminal = render(&mut app, 80, 12);
    let buffer = terminal.backend().buffer();
    let row_of = |needle: &str| {
        (0..buffer.area.height)
            .find(|&y| {
                let row: String = (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect();
                row.contains(needle)
            })
            .expect("the row is on screen")
    };
    // Column 10 is the first letter of the name after "HH:MM:SS <".
    let one = &buffer[(10, row_of("one"))];
    let three = &buffer[(10, row_of("three"))];
    let two = &buffer[(10, row_of("two"))];
    assert_eq!(one.fg, name_color("alice"));
    assert_eq!(
        three.fg, one.fg,
        "the same sender has the same color on every line"
    );
    assert_eq!(two.fg, name_color("carol"));
    assert_ne!(name_color("alice"), name_color("carol"));
    assert_eq!(
        name_color("Alice"),
        name_color("alice"),
        "names compare ignoring case"
    );

    let text_cell = &buffer[(17, row_of("three"))];
    let notice_cell = &buffer[(9, row_of("dave joined"))];
    assert!(!text_cell.modifier.contains(Modifier::ITALIC));
    assert!(
        notice_cell.modifier.contains(Modifier::ITALIC),
        "join notices are italic"
    );
    assert_ne!(notice_cell.fg, Color::Reset);
}

#[test]
fn input_editing_history_and_multi_line_paste() {
    let mut app = joined("bob");
    app.on_paste("first line\r\nsecond line");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(Intent::Say("first line\nsecond line".into()))],
        "a multi-line paste is one message"
    );
    type_text(&mut app, "helo");
    app.on_key(key(KeyCode::Left));
    type_text(&mut app, "l");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(Intent::Say("hello".into()))]
    );
    type_text(&mut app, "draft");
    app.on_key(key(KeyCode::Up));
    app.on_key(key(KeyCode::Down));
    type_text(&mut app, "!");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(Intent::Say("draft!".into()))],
        "Down past the newest entry brings the draft back"
    );
    app.on_key(key(KeyCode::Up));
    app.on_key(key(KeyCode::Up));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(Intent::Say("hello".into()))],
        "Up walks back through what was sent"
    );
}

#[test]
fn quit_and_ctrl_c_leave_before_exiting() {
    let mut app = joined("bob");
    type_text(&mut app, "/quit");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        vec![Action::Send(Intent::Leave)]
    );
    assert!(!app.should_exit(), "waits for the server to confirm");
    assert_eq!(
        app.on_event(ClientEvent::Left, at(12, 0, 1)),
        vec![Action::Exit(0)]
    );
    assert!(app.should_exit());

    let mut app = joined("bob");
    assert_eq!(app.on_key(ctrl('c')), vec![Action::Send(Intent::Leave)]);
    assert_eq!(
        app.on_key(ctrl('c')),
        vec![Action::Exit(0)],
        "a second Ctrl-C does not wait"
    );
}

#[test]
fn a_multi_line_input_grows_the_input_box() {
    let mut app = joined("bob");
    say(&mut app, "alice", "paste your stack trace?", at(12, 0, 1));
    app.on_paste(
        "thread 'main' panicked at src/main.rs:2:5:\nboom\nnote: run with `RUST_BACKTRACE=1`",
    );
    insta::assert_snapshot!(render(&mut app, 60, 14).backend());
}

#[test]
fn a_tls_connection_shows_a_lock_in_the_title_bar() {
    let plain = joined("bob");
    let mut secure = App::new(&server(), Some("bob"));
    secure.secure = true;
    secure.on_key(key(KeyCode::Enter));
    secure.on_connected();
    secure.on_event(ClientEvent::Joined { name: "bob".into() }, at(12, 0, 0));
    let title = |app: &mut App| {
        let terminal = render(app, 60, 8);
        let buffer = terminal.backend().buffer();
        (0..60)
            .map(|x| buffer[(x, 0)].symbol().to_owned())
            .collect::<String>()
    };
    let mut plain = plain;
    assert!(!title(&mut plain).contains("TLS"), "{}", title(&mut plain));
    let shown = title(&mut secure);
    assert!(shown.contains("🔒") && shown.contains("TLS"), "{shown}");
}
