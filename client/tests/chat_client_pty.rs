//! The interactive TUI of the real `chat-client` binary, driven through a pseudo-terminal
//! (portable-pty) against a real `chat-server-smol`. The test reads the screen with a
//! terminal emulator (vt100), types like a user, and checks that the terminal is restored.
//! Unix only: it reads the pty's termios flags.
#![cfg(unix)]

mod chat_client_support;

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use chat_client_support::{LineClient, SERVER, TIMEOUT, client_binary};
use chathttp_tests::redis::Redis;
use chathttp_tests::{Relay, Server};
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

const ROWS: u16 = 24;
const COLS: u16 = 80;

/// What the program under test has drawn: the emulated screen and every byte it wrote.
struct Screen {
    parser: vt100::Parser,
    raw: Vec<u8>,
    output: Receiver<Vec<u8>>,
    /// Whether the program's side of the pty has closed.
    ended: bool,
}

impl Screen {
    fn new(master: &dyn MasterPty) -> Self {
        let mut reader = master.try_clone_reader().expect("a reader for the pty");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0; 8192];
            // Ends with EOF or EIO once the program has exited.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Self {
            parser: vt100::Parser::new(ROWS, COLS, 0),
            raw: Vec::new(),
            output: rx,
            ended: false,
        }
    }

    fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Takes whatever output has arrived, without waiting.
    fn pump(&mut self) {
        while let Ok(bytes) = self.output.try_recv() {
            self.parser.process(&bytes);
            self.raw.extend_from_slice(&bytes);
        }
    }

    /// Feeds output to the emulator until `done` holds for the screen.
    fn wait_for(&mut self, what: &str, done: impl Fn(&vt100::Screen) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done(self.parser.screen()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => {
                    self.parser.process(&bytes);
                    self.raw.extend_from_slice(&bytes);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}; the screen:\n{}", self.text())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    assert!(
                        done(self.parser.screen()),
                        "the program ended before {what}; the screen:\n{}",
                        self.text()
                    );
                    return;
                }
            }
        }
    }

    fn wait_for_text(&mut self, needle: &str) {
        self.wait_for(&format!("{needle:?} on screen"), |s| {
            s.contents().contains(needle)
        });
    }

    /// Reads everything until the program's side of the pty closes.
    fn wait_for_end(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => {
                    self.parser.process(&bytes);
                    self.raw.extend_from_slice(&bytes);
                }
                Err(RecvTimeoutError::Disconnected) => self.ended = true,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the program did not exit; the screen:\n{}", self.text())
                }
            }
        }
    }
}

/// Whether the pty's line discipline is in canonical mode with echo: a shell's terminal.
fn is_cooked(master: &dyn MasterPty) -> bool {
    let termios = master.get_termios().expect("the pty's termios");
    let flags = termios.local_flags.bits();
    let wanted: libc::tcflag_t = libc::ICANON | libc::ECHO;
    flags & wanted == wanted
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// chat-client running in a pty, with its screen and keyboard.
struct Tui {
    master: Box<dyn MasterPty + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: Screen,
    keys: Box<dyn Write + Send>,
}

impl Tui {
    fn start(server: impl std::fmt::Display, name: &str) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        assert!(is_cooked(&*pair.master), "a fresh pty starts cooked");
        let mut command = CommandBuilder::new(client_binary());
        command.args(["--server", &server.to_string(), "--name", name]);
        command.env("TERM", "xterm-256color");
        let child = pair
            .slave
            .spawn_command(command)
            .expect("starting chat-client in the pty");
        drop(pair.slave);
        let screen = Screen::new(&*pair.master);
        let keys = pair.master.take_writer().expect("a writer for the pty");
        Self {
            master: pair.master,
            child,
            screen,
            keys,
        }
    }

    fn type_keys(&mut self, bytes: &[u8]) {
        self.keys.write_all(bytes).expect("typing");
        self.keys.flush().expect("flushing the keys");
    }

    /// Logs in with the pre-filled form and waits for the chat screen.
    fn log_in(&mut self, others: &str) {
        self.screen.wait_for_text("join a chat room");
        assert!(self.screen.parser.screen().alternate_screen());
        assert!(self.screen.parser.screen().bracketed_paste());
        assert!(!is_cooked(&*self.master), "raw mode while the TUI runs");
        self.type_keys(b"\r");
        self.screen.wait_for_text("Joined ");
        self.screen.wait_for_text(" online ");
        self.screen.wait_for_text(others);
    }

    /// Waits for the program to exit 0, then checks the terminal is as the shell had it.
    fn assert_exits_and_restores(&mut self) {
        self.screen.wait_for_end();
        let status = self.child.wait().expect("waiting for chat-client");
        assert!(
            status.success(),
            "exit status {status:?}; the screen:\n{}",
            self.screen.text()
        );
        assert!(is_cooked(&*self.master), "raw mode is off again");
        let s = self.screen.parser.screen();
        assert!(!s.alternate_screen(), "back on the main screen");
        assert!(!s.bracketed_paste(), "bracketed paste is off");
        assert_eq!(
            s.mouse_protocol_mode(),
            vt100::MouseProtocolMode::None,
            "mouse reporting is off"
        );
        assert!(!s.hide_cursor(), "the cursor is visible");
        let raw = &self.screen.raw;
        let entered = find(raw, b"\x1b[?1049h").expect("entered the alternate screen");
        let left = find(raw, b"\x1b[?1049l").expect("left the alternate screen");
        assert!(left > entered);
    }
}

#[test]
fn log_in_talk_paste_and_quit_through_a_terminal() {
    let server = Server::start(SERVER, &[]);
    let mut watcher = LineClient::start(server.addr(), "watcher");
    watcher.expect_line("* joined as watcher");

    let mut tui = Tui::start(server.addr(), "alice");
    tui.log_in("watcher");
    watcher.expect_line("* alice joined");

    tui.type_keys("hello from a pty, 你好\r".as_bytes());
    tui.screen.wait_for_text("<alice> hello from a pty, 你好");
    watcher.expect_chat("alice", "hello from a pty, 你好");

    // A bracketed paste of two lines is one message.
    tui.type_keys(b"\x1b[200~first pasted line\nsecond pasted line\x1b[201~\r");
    tui.screen.wait_for_text("<alice> first pasted line");
    tui.screen.wait_for_text("         second pasted line");
    watcher.expect_chat("alice", "first pasted line");
    watcher.expect_chat("alice", "second pasted line");

    tui.type_keys(b"/quit\r");
    tui.assert_exits_and_restores();
    watcher.expect_line("* alice left");
}

#[test]
fn resize_redraws_and_ctrl_c_leaves_cleanly() {
    let server = Server::start(SERVER, &[]);
    let mut watcher = LineClient::start(server.addr(), "watcher");
    watcher.expect_line("* joined as watcher");

    let mut tui = Tui::start(server.addr(), "bob");
    tui.log_in("watcher");
    // The state badge sits at the right edge: " online " ends one column before it.
    let badge_end =
        |s: &vt100::Screen, cols: u16| s.cell(0, cols - 2).is_some_and(|c| c.contents() == "e");
    tui.screen
        .wait_for("the badge at column 78", |s| badge_end(s, COLS));

    tui.master
        .resize(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("resizing the pty");
    tui.screen.parser.set_size(30, 100);
    tui.screen
        .wait_for("the badge at column 98 after the resize", |s| {
            badge_end(s, 100)
        });
    tui.screen
        .wait_for("the input box on the new last row", |s| {
            s.cell(29, 0).is_some_and(|c| c.contents() == "└")
        });

    tui.type_keys(b"\x03");
    tui.assert_exits_and_restores();
    watcher.expect_line("* bob left");
}

#[test]
fn server_gone_then_back_and_enter_rejoins_with_the_same_name() {
    let server = Server::start(SERVER, &[]);
    let addr = server.addr().to_string();
    let mut tui = Tui::start(&addr, "carol");
    tui.log_in("carol (you)");

    drop(server);
    tui.screen.wait_for_text("Disconnected: ");
    tui.screen.wait_for_text("Offline · Enter reconnects");
    tui.screen.wait_for_text(" offline ");

    // The same port again (the servers bind with SO_REUSEADDR, so no wait for TIME_WAIT).
    let server = Server::start_on(SERVER, &addr, &[]);
    let mut watcher = LineClient::start(server.addr(), "watcher");
    watcher.expect_line("* joined as watcher");
    tui.type_keys(b"\r");
    tui.screen.wait_for_text("Rejoined as carol.");
    tui.screen.wait_for_text(" online ");
    watcher.expect_line("* carol joined");
    tui.type_keys(b"back again\r");
    watcher.expect_chat("carol", "back again");

    tui.type_keys(b"/quit\r");
    tui.assert_exits_and_restores();
    watcher.expect_line("* carol left");
}

/// Set in the environment of the child that [`a_panic_restores_the_terminal`] runs.
const PANIC_CHILD: &str = "CHAT_CLIENT_TEST_PANIC_CHILD";

/// Not a test on its own: [`a_panic_restores_the_terminal`] runs it inside a pty, where it
/// enters the TUI's terminal modes and panics, leaving the restoring to the panic hook alone
/// (the guard is forgotten, so its drop cannot do it).
#[test]
#[ignore = "run as a child by a_panic_restores_the_terminal"]
fn panic_child() {
    assert!(
        std::env::var_os(PANIC_CHILD).is_some(),
        "only a_panic_restores_the_terminal runs this, inside a pty"
    );
    chathttp_client::tui::install_panic_hook();
    let guard = chathttp_client::tui::TerminalGuard::enter().expect("entering the TUI's modes");
    std::mem::forget(guard);
    panic!("a deliberate panic in the TUI");
}

#[test]
fn a_panic_restores_the_terminal() {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut command = CommandBuilder::new(std::env::current_exe().expect("the test binary's path"));
    command.args([
        "--exact",
        "panic_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command.env(PANIC_CHILD, "1");
    command.env("RUST_BACKTRACE", "0");
    let mut child = pair
        .slave
        .spawn_command(command)
        .expect("re-running this test binary");
    drop(pair.slave);
    let mut screen = Screen::new(&*pair.master);
    screen.wait_for_end();
    let status = child.wait().expect("waiting for the child");
    assert!(!status.success(), "the child panicked");

    let raw = &screen.raw;
    let entered = find(raw, b"\x1b[?1049h").expect("the child entered the alternate screen");
    let left = find(raw, b"\x1b[?1049l").expect("the hook left the alternate screen");
    let message = find(raw, b"a deliberate panic in the TUI").expect("the panic message");
    assert!(
        entered < left && left < message,
        "restored before the message was printed"
    );
    assert!(is_cooked(&*pair.master), "raw mode is off again");
    let s = screen.parser.screen();
    assert!(!s.alternate_screen() && !s.bracketed_paste());
    assert!(
        s.contents().contains("a deliberate panic in the TUI"),
        "{}",
        s.contents()
    );
}

/// C2 through a Redis blip: the TUI on a node sharing its room through Redis stays in the
/// room while Redis is away (a message is refused with a `503` shown in the log, and nothing
/// says offline), and chats on once Redis is back.
#[test]
fn the_tui_stays_in_the_room_through_a_redis_blip() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let server = Server::start(SERVER, &["--redis", &url, "--node-id", "a"]);
    let mut tui = Tui::start(server.addr(), "dora");
    tui.log_in("dora (you)");
    let port = redis.kill();
    // Until the node notices, a message may be on its way (and is answered once Redis is
    // back); after, it is refused.
    let started = Instant::now();
    let mut sent = 0;
    while !tui.screen.text().contains("refused POST: 503") {
        assert!(
            started.elapsed() < TIMEOUT,
            "no refusal shown:\n{}",
            tui.screen.text()
        );
        tui.type_keys(format!("during {sent}\r").as_bytes());
        sent += 1;
        thread::sleep(std::time::Duration::from_millis(300));
        tui.screen.pump();
    }
    assert!(
        !tui.screen.text().contains(" offline "),
        "{}",
        tui.screen.text()
    );
    let _redis = Redis::start_on(port).expect("redis-server ran a moment ago");
    let started = Instant::now();
    while !tui.screen.text().contains("<dora> after the blip") {
        assert!(
            started.elapsed() < TIMEOUT,
            "not back:\n{}",
            tui.screen.text()
        );
        tui.type_keys(b"after the blip\r");
        thread::sleep(std::time::Duration::from_millis(500));
        tui.screen.pump();
    }
    assert!(
        !tui.screen.text().contains("Disconnected"),
        "{}",
        tui.screen.text()
    );
    tui.type_keys(b"/quit\r");
    tui.assert_exits_and_restores();
}

#[test]
fn e2_a_dropped_link_reconnects_and_shows_what_was_said_meanwhile() {
    let server = Server::start(SERVER, &[]);
    let relay = Relay::start(server.addr());
    let mut tui = Tui::start(relay.addr, "carol");
    tui.log_in("carol (you)");
    let mut watcher = LineClient::start(server.addr(), "watcher");
    watcher.expect_line("* joined as watcher");
    watcher.send("before the drop");
    tui.screen.wait_for_text("before the drop");

    relay.drop_link();
    // The one immediate attempt is turned away too; then the TUI waits for Enter.
    tui.screen.wait_for_text("Offline · Enter reconnects");
    watcher.expect_line("* carol left");
    for text in [
        "said while away 1",
        "said while away 2",
        "said while away 3",
    ] {
        watcher.send(text);
        watcher.expect_chat("watcher", text);
    }

    relay.restore_link();
    tui.type_keys(b"\r");
    tui.screen.wait_for_text("3 messages while you were away");
    let screen = tui.screen.text();
    for text in [
        "said while away 1",
        "said while away 2",
        "said while away 3",
    ] {
        assert_eq!(
            screen.matches(text).count(),
            1,
            "{text} shown once:\n{screen}"
        );
    }
    assert_eq!(
        screen.matches("before the drop").count(),
        1,
        "nothing doubled:\n{screen}"
    );
    watcher.expect_line("* carol joined");
    tui.type_keys(b"/quit\r");
    tui.assert_exits_and_restores();
}
