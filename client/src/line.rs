//! Line mode: one line per event on standard output, one message per line of standard input.
//!
//! ```text
//! * connected to 127.0.0.1:9994
//! * joined as alice
//! [12:00:01] <alice> hi
//! * bob joined
//! * online: alice, bob
//! * bob left
//! ! the name "bob" is taken
//! ```
//!
//! Lines that start with `* ` are notices, `! ` errors, `[` chat. Each line of a multi-line
//! message is printed as its own chat line, so every output line stands on its own.
//! End of input is `/quit`.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use chathttp_core::client::{ClientEvent, Intent};
use chathttp_core::server::history::Ask;
use chathttp_core::{UsageError, UserName};
use chrono::NaiveTime;

use crate::args::ServerAddr;
use crate::command::{Command, HELP, chat_text};
use crate::driver::{Action, Driver, Frontend};
use crate::net::Tagged;

/// How long to wait for the server to confirm `/quit` before exiting anyway.
/// The original server never answers `DELETE`, so against it this is how long `/quit` takes.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// The line-mode front end: prints events to `out` and turns input lines into actions.
#[derive(Debug)]
pub struct LineMode<W> {
    out: W,
    server: ServerAddr,
    name: String,
    joined: bool,
    quitting: bool,
    /// Input read before the server accepted our name; sent once it has.
    pending: Vec<Command>,
    /// `--history N`: chat lines to ask for on joining (E2).
    history: Option<usize>,
}

impl<W: Write> LineMode<W> {
    /// A front end that will join `server` as `name`, printing to `out`.
    pub fn new(out: W, server: ServerAddr, name: String) -> Self {
        Self {
            out,
            server,
            name,
            joined: false,
            quitting: false,
            pending: Vec::new(),
            history: None,
        }
    }

    /// Asks for the last `lines` chat lines on joining (E2).
    pub fn with_history(mut self, lines: Option<usize>) -> Self {
        self.history = lines;
        self
    }

    /// The actions that start the session: connect, unless the name is one the server
    /// would refuse anyway.
    pub fn start(&mut self) -> Vec<Action> {
        if let Err(error) = UserName::parse(&self.name) {
            self.print(&format!("! invalid name: {error}"));
            return vec![Action::Exit(1)];
        }
        vec![Action::Connect(self.server.clone())]
    }

    /// What has been printed so far.
    pub fn output(&self) -> &W {
        &self.out
    }

    /// Whether `/quit` (or end of input) has been sent and we wait for the server.
    pub fn is_quitting(&self) -> bool {
        self.quitting
    }

    /// One line of input.
    pub fn on_line(&mut self, line: &str) -> Vec<Action> {
        let command = Command::parse(line);
        if !self.joined {
            if command != Command::Empty {
                self.pending.push(command);
            }
            return Vec::new();
        }
        self.command(command)
    }

    /// Standard input ended: leave as `/quit` does.
    pub fn on_eof(&mut self) -> Vec<Action> {
        self.on_line("/quit")
    }

    fn command(&mut self, command: Command) -> Vec<Action> {
        match command {
            Command::Say(text) => vec![Action::Send(Intent::Say(text))],
            Command::Users => vec![Action::Send(Intent::ListUsers)],
            Command::Quit if !self.quitting => {
                self.quitting = true;
                vec![Action::Send(Intent::Leave)]
            }
            Command::Quit | Command::Empty => Vec::new(),
            Command::Help => {
                for line in HELP {
                    self.print(&format!("* {line}"));
                }
                Vec::new()
            }
            Command::Unknown(word) => {
                self.print(&format!("! unknown command {word} (try /help)"));
                Vec::new()
            }
        }
    }

    fn print(&mut self, line: &str) {
        // Standard output gone (a closed pipe) leaves nobody to tell; the session goes on
        // until input ends.
        let _ = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
    }
}

impl<W: Write> Frontend for LineMode<W> {
    fn on_connected(&mut self) -> Vec<Action> {
        self.print(&format!("* connected to {}", self.server));
        let name = self.name.clone();
        match self.history {
            Some(lines) => vec![Action::Send(Intent::JoinWithHistory(
                name,
                Ask::Last(lines),
            ))],
            None => vec![Action::Send(Intent::Join(name))],
        }
    }

    fn on_connect_failed(&mut self, reason: String) -> Vec<Action> {
        self.print(&format!("! {reason}"));
        vec![Action::Exit(1)]
    }

    fn on_event(&mut self, event: ClientEvent, at: NaiveTime) -> Vec<Action> {
        match event {
            ClientEvent::Joined { name } => {
                self.joined = true;
                self.print(&format!("* joined as {name}"));
                let pending = std::mem::take(&mut self.pending);
                return pending.into_iter().flat_map(|c| self.command(c)).collect();
            }
            ClientEvent::NameTaken { name } => {
                self.print(&format!("! the name \"{name}\" is taken"));
                return vec![Action::Exit(1)];
            }
            ClientEvent::ChatLine { from, text, .. } => {
                let time = at.format("%H:%M:%S");
                for line in chat_text(&text).split('\n') {
                    self.print(&format!("[{time}] <{from}> {line}"));
                }
            }
            ClientEvent::Replayed {
                from,
                text,
                said_at,
                ..
            } => {
                let time = said_at.map_or(at, |t| t.time()).format("%H:%M:%S");
                for line in chat_text(&text).split('\n') {
                    self.print(&format!("[{time}] <{from}> {line}"));
                }
            }
            ClientEvent::HistoryEnd { replayed, missed } => {
                let noun = if replayed == 1 { "message" } else { "messages" };
                let missed = if missed {
                    "; older ones were not kept"
                } else {
                    ""
                };
                self.print(&format!("* history: {replayed} earlier {noun}{missed}"));
            }
            ClientEvent::NoHistory => self.print("* this server keeps no history"),
            ClientEvent::MemberJoined { name } => self.print(&format!("* {name} joined")),
            ClientEvent::MemberLeft { name } => self.print(&format!("* {name} left")),
            ClientEvent::UserList { names } => {
                self.print(&format!("* online: {}", names.join(", ")));
            }
            ClientEvent::Refused {
                request,
                code,
                reason,
            } => {
                let what = request.map_or("request", |m| m.as_str());
                self.print(&format!("! {what} refused: {code} {reason}"));
                if !self.joined {
                    return vec![Action::Exit(1)];
                }
            }
            ClientEvent::Left => {
                self.print("* left the room");
                return vec![Action::Exit(0)];
            }
            ClientEvent::Disconnected { reason } => {
                if self.quitting {
                    return vec![Action::Exit(0)];
                }
                self.print(&format!("! disconnected: {reason}"));
                return vec![Action::Exit(1)];
            }
            // The greeting, and any event a newer core adds, need no line.
            _ => {}
        }
        Vec::new()
    }

    fn on_send_error(&mut self, intent: Intent, error: UsageError) -> Vec<Action> {
        self.print(&format!("! {error}"));
        match intent {
            Intent::Join(_) | Intent::JoinWithHistory(..) => vec![Action::Exit(1)],
            Intent::Leave => vec![Action::Exit(0)],
            Intent::Say(_) | Intent::ListUsers => Vec::new(),
        }
    }
}

/// What the line-mode loop waits for.
#[derive(Debug)]
enum Input {
    Net(Tagged),
    Line(String),
    Eof,
}

impl From<Tagged> for Input {
    fn from(tagged: Tagged) -> Self {
        Self::Net(tagged)
    }
}

/// Runs line mode on standard input and output until the session ends. Returns the exit
/// code: 0 after `/quit` or end of input, 1 when the server refused us or went away.
pub fn run(
    server: ServerAddr,
    name: String,
    history: Option<usize>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> u8 {
    let (tx, rx) = mpsc::channel();
    spawn_stdin_reader(tx.clone());
    let mut frontend = LineMode::new(io::stdout().lock(), server, name).with_history(history);
    let mut driver = Driver::new(tx, tls);
    let start = frontend.start();
    driver.run(&mut frontend, start);
    let mut leave_deadline = None;
    while driver.exit_code().is_none() {
        if frontend.is_quitting() && leave_deadline.is_none() {
            leave_deadline = Some(Instant::now() + LEAVE_GRACE);
        }
        let input = match leave_deadline {
            Some(deadline) => rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match input {
            Ok(Input::Net(tagged)) => driver.handle_net(&mut frontend, tagged),
            Ok(Input::Line(line)) => {
                let actions = frontend.on_line(&line);
                driver.run(&mut frontend, actions);
            }
            Ok(Input::Eof) => {
                let actions = frontend.on_eof();
                driver.run(&mut frontend, actions);
            }
            Err(RecvTimeoutError::Timeout) => {
                frontend.print("! the server did not confirm /quit; exiting");
                return 0;
            }
            Err(RecvTimeoutError::Disconnected) => return 1,
        }
    }
    driver.exit_code().unwrap_or(0)
}

/// Reads standard input line by line in a thread. Bytes that are not UTF-8 are replaced.
fn spawn_stdin_reader(tx: Sender<Input>) {
    thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.send(Input::Line(line)).is_err() {
                        return;
                    }
                }
            }
        }
        // The receiver may be gone already; then nobody is waiting for this.
        let _ = tx.send(Input::Eof);
    });
}
