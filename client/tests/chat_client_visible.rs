//! C1 as a property: whatever bytes a server sends, no control character reaches the terminal,
//! in line mode or in the TUI. Events take the driver's path: the session, then
//! `visible_event`, then the front end.

use chathttp_client::args::ServerAddr;
use chathttp_client::driver::Frontend;
use chathttp_client::line::LineMode;
use chathttp_client::tui::App;
use chathttp_client::visible::visible_event;
use chathttp_core::Timestamp;
use chathttp_core::client::{ClientSession, Intent};
use chrono::NaiveTime;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// A response a hostile server might send: a well-framed status and a body of one of the H3
/// shapes, with names and text full of controls.
#[derive(Debug, Clone)]
struct Hostile {
    code: u16,
    body: Vec<u8>,
}

fn nasty(g: &mut Gen) -> String {
    let pool = [
        "\u{1b}", "\r", "\u{7}", "\u{9b}", "\u{202e}", "\u{2066}", "\u{7f}", "\0", "\t", "\n", "a",
        "é", " ", "[", "]", ":", "]0;", "[2J", "<bob>", "小",
    ];
    let len = usize::arbitrary(g) % 12;
    (0..len)
        .map(|_| *g.choose(&pool).expect("non-empty"))
        .collect()
}

impl Arbitrary for Hostile {
    fn arbitrary(g: &mut Gen) -> Self {
        let (name, text) = (nasty(g), nasty(g));
        let body = match u8::arbitrary(g) % 5 {
            0 => format!("[ {name} ] : {text}\n"),
            1 => format!("{name} has just entered the chat room...\n"),
            2 => format!("{name} has just left the chat room...\n"),
            3 => format!("Online users:\n{name}\n{text}\n"),
            _ => format!("{text}\n"),
        };
        let code = *g
            .choose(&[200, 200, 200, 401, 403, 429, 503])
            .expect("non-empty");
        Self {
            code,
            body: body.into_bytes(),
        }
    }
}

fn frame(code: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {code} X\nContent_Length: {}\n\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[test]
fn c1_no_control_character_reaches_line_mode_or_the_tui() {
    fn prop(responses: Vec<Hostile>) -> TestResult {
        let server = ServerAddr::parse("127.0.0.1:9994").expect("a valid address");
        let at = NaiveTime::from_hms_opt(12, 0, 0).expect("a valid time");
        let mut session = ClientSession::new("127.0.0.1");
        let mut line = LineMode::new(Vec::new(), server.clone(), "me".into());
        let mut app = App::new(&server, Some("me"));
        let _ = app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        let _ = app.on_connected();
        let _ = line.on_connected();
        session.handle_received(&frame(202, b"hi\n"));
        let now = Timestamp::from_millis(0);
        if session
            .handle_intent(now, Intent::Join("me".into()))
            .is_err()
        {
            return TestResult::discard();
        }
        session.handle_received(&frame(200, b"Welcome, me!\n"));
        for response in &responses {
            session.handle_received(&frame(response.code, &response.body));
        }
        while let Some(event) = session.poll_event() {
            let event = visible_event(event);
            let _ = line.on_event(event.clone(), at);
            let _ = app.on_event(event, at);
        }
        let printed = String::from_utf8_lossy(line.output()).into_owned();
        if let Some(c) = printed
            .chars()
            .find(|&c| is_control(c) && c != '\n' && c != '\t')
        {
            return TestResult::error(format!("line mode printed U+{:04X}: {printed:?}", c as u32));
        }
        let mut terminal = Terminal::new(TestBackend::new(60, 20)).expect("a test terminal");
        terminal
            .draw(|frame| chathttp_client::tui::view::draw(frame, &mut app))
            .expect("drawing on a test backend");
        for cell in terminal.backend().buffer().content() {
            if let Some(c) = cell.symbol().chars().find(|&c| is_control(c)) {
                return TestResult::error(format!("the TUI drew U+{:04X}", c as u32));
            }
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(Vec<Hostile>) -> TestResult);
}
