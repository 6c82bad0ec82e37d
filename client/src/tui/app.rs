//! The TUI's state and how it changes: a plain struct, changed only through `on_*` methods
//! that return the [`Action`]s for the driver. Nothing here touches a terminal or a socket,
//! so tests build an [`App`], feed it keys and session events, and render it.

use std::collections::VecDeque;

use chathttp_core::client::{ClientEvent, Intent};
use chathttp_core::server::history::Ask;
use chathttp_core::{Method, UsageError, UserName};
use chrono::NaiveTime;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use crate::args::ServerAddr;
use crate::command::{Command, HELP, chat_text};
use crate::driver::{Action, Frontend};
use crate::tui::editor::{Editor, History};
use crate::tui::view::entry_lines;

/// Log entries kept; older ones are dropped.
const MAX_LOG: usize = 10_000;
/// Bytes of text the log keeps (C3): a room of long messages drops old entries sooner, so
/// what a busy room costs the client is bounded however the peers write.
const MAX_LOG_BYTES: usize = 8 * 1024 * 1024;
/// Chat lines asked for on joining (E2), unless `--history` says otherwise.
pub const DEFAULT_HISTORY: usize = 50;
/// Rows one mouse-wheel step scrolls.
const WHEEL_ROWS: usize = 3;

/// The whole TUI state.
#[derive(Debug)]
pub struct App {
    /// What is on screen.
    pub screen: Screen,
    /// The state of the connection, as far as the UI is concerned.
    pub link: Link,
    /// Connections are TLS (`--tls`, `--ca`): the chat screen shows a lock.
    pub secure: bool,
    /// Chat lines to ask for on joining (E2); 0 asks for none.
    pub history: usize,
    exit: bool,
}

/// The two screens.
#[derive(Debug)]
pub enum Screen {
    /// Choosing host, port and name.
    Login(LoginForm),
    /// In the room.
    Chat(ChatView),
}

/// The connection, as the UI tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No connection.
    Offline,
    /// Connecting to this server.
    Connecting(ServerAddr),
    /// Connected to this server (joined or not).
    Open(ServerAddr),
}

/// The login form's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Host name or address.
    Host,
    /// TCP port.
    Port,
    /// User name.
    Name,
}

/// The login screen.
#[derive(Debug)]
pub struct LoginForm {
    /// Host name or address.
    pub host: Editor,
    /// Port.
    pub port: Editor,
    /// User name.
    pub name: Editor,
    /// The field keys go to.
    pub focus: Field,
    /// What is happening, or what went wrong.
    pub status: Status,
}

/// A line of feedback on the login screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing to say.
    Idle,
    /// Working on it (connecting, joining).
    Busy(String),
    /// It went wrong; the user can correct the form and retry.
    Error(String),
}

/// Where the chat screen's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Joined.
    Online,
    /// `/quit` sent; waiting for the server to confirm.
    Leaving,
    /// The connection is gone; Enter reconnects.
    Offline(String),
    /// Reconnecting and rejoining.
    Rejoining,
}

/// The chat screen.
#[derive(Debug)]
pub struct ChatView {
    /// Our name in the room.
    pub me: String,
    /// The server we are in.
    pub server: ServerAddr,
    /// Over TLS, its name verified (T3).
    pub secure: bool,
    /// What happened, oldest first. Change it through [`push`](Self::push), which keeps
    /// [`log_bytes`](Self::log_bytes) in step.
    pub log: VecDeque<Entry>,
    /// The bytes of text in `log`.
    log_bytes: usize,
    /// Who is online, in join order.
    pub members: Vec<String>,
    /// The message being typed.
    pub input: Editor,
    /// Sent inputs.
    pub history: History,
    /// How many rows the log is scrolled up from its end; 0 follows new entries.
    pub scroll: usize,
    /// Rows of log shown by the last render: the page size for PgUp/PgDn.
    pub page: usize,
    /// Columns of log in the last render, to count the rows a new entry adds.
    pub log_width: usize,
    /// The connection.
    pub presence: Presence,
    /// For each `GET` waiting for its answer: whether the user asked (then the list is
    /// logged) or the client did (then it only refreshes the member pane).
    lists_to_log: VecDeque<bool>,
    /// The id of the last chat line received (E2): a rejoin resumes after it.
    pub last_id: Option<String>,
    /// This connection rejoined after a drop: its replay is what was missed.
    resuming: bool,
}

/// One thing in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was received (local time); `None` for the client's own notes.
    pub at: Option<NaiveTime>,
    /// What it was.
    pub kind: EntryKind,
}

impl Entry {
    /// The bytes of text it holds, what the log's byte bound counts.
    pub fn text_bytes(&self) -> usize {
        match &self.kind {
            EntryKind::Chat { from, text } | EntryKind::Replayed { from, text } => {
                from.len() + text.len()
            }
            EntryKind::Rule(s) => s.len(),
            EntryKind::Joined(s)
            | EntryKind::Left(s)
            | EntryKind::Info(s)
            | EntryKind::Error(s) => s.len(),
            EntryKind::Users(names) => names.iter().map(String::len).sum(),
        }
    }
}

/// The kinds of log entry, each styled its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A chat message.
    Chat {
        /// Who said it.
        from: String,
        /// What they said (may hold newlines).
        text: String,
    },
    /// A chat message said before we joined, replayed (E3): shown dimmed.
    Replayed {
        /// Who said it.
        from: String,
        /// What they said.
        text: String,
    },
    /// A rule across the log, with a note in it: where history ends.
    Rule(String),
    /// Someone joined.
    Joined(String),
    /// Someone left.
    Left(String),
    /// The answer to `/users`.
    Users(Vec<String>),
    /// A note from the client.
    Info(String),
    /// Something went wrong.
    Error(String),
}

impl App {
    /// The login screen, pre-filled from the command line.
    pub fn new(server: &ServerAddr, name: Option<&str>) -> Self {
        Self {
            screen: Screen::Login(LoginForm {
                host: Editor::with_text(&server.host),
                port: Editor::with_text(&server.port.to_string()),
                name: Editor::with_text(name.unwrap_or_default()),
                focus: Field::Name,
                status: Status::Idle,
            }),
            link: Link::Offline,
            secure: false,
            history: DEFAULT_HISTORY,
            exit: false,
        }
    }

    /// Whether the program should end.
    pub fn should_exit(&self) -> bool {
        self.exit
    }

    /// A key was pressed.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        match &mut self.screen {
            Screen::Login(form) => {
                if ctrl_c || key.code == KeyCode::Esc {
                    return self.quit();
                }
                if matches!(form.status, Status::Busy(_)) {
                    // The form is what we are connecting with: it waits for the answer.
                    return Vec::new();
                }
                match key.code {
                    KeyCode::Enter => return self.submit_login(),
                    KeyCode::Tab | KeyCode::Down => form.focus = form.focus.next(),
                    KeyCode::BackTab | KeyCode::Up => form.focus = form.focus.prev(),
                    _ => {
                        form.field_mut().handle_key(&key);
                    }
                }
            }
            Screen::Chat(chat) => {
                if ctrl_c {
                    return self.quit();
                }
                let alt = key.modifiers.contains(KeyModifiers::ALT);
                match key.code {
                    KeyCode::Enter if alt => chat.input.insert("\n"),
                    KeyCode::Enter => return self.submit_chat(),
                    KeyCode::PageUp => chat.scroll_up(chat.page.saturating_sub(1).max(1)),
                    KeyCode::PageDown => chat.scroll_down(chat.page.saturating_sub(1).max(1)),
                    KeyCode::Esc => chat.scroll = 0,
                    KeyCode::Up if !chat.input.text().contains('\n') => {
                        if let Some(entry) = chat.history.older(chat.input.text()) {
                            chat.input.set(entry);
                        }
                    }
                    KeyCode::Down if !chat.input.text().contains('\n') => {
                        if let Some(entry) = chat.history.newer() {
                            chat.input.set(entry);
                        }
                    }
                    _ => {
                        chat.input.handle_key(&key);
                    }
                }
            }
        }
        Vec::new()
    }

    /// Text was pasted (bracketed paste): it goes into the input as it is, newlines
    /// included, and is sent as one message. The login fields take it without newlines.
    pub fn on_paste(&mut self, text: &str) {
        match &mut self.screen {
            Screen::Login(form) => form.field_mut().insert(&text.replace(['\r', '\n'], "")),
            Screen::Chat(chat) => chat.input.insert(text),
        }
    }

    /// The mouse was used: the wheel scrolls the log.
    pub fn on_mouse(&mut self, mouse: MouseEvent) {
        if let Screen::Chat(chat) = &mut self.screen {
            match mouse.kind {
                MouseEventKind::ScrollUp => chat.scroll_up(WHEEL_ROWS),
                MouseEventKind::ScrollDown => chat.scroll_down(WHEEL_ROWS),
                _ => {}
            }
        }
    }

    /// Ctrl-C, Esc on the login screen, or `/quit`: leave politely if we are in the room,
    /// else exit at once. A second request while leaving exits without waiting.
    fn quit(&mut self) -> Vec<Action> {
        match &mut self.screen {
            Screen::Chat(chat) if chat.presence == Presence::Online => {
                chat.presence = Presence::Leaving;
                vec![Action::Send(Intent::Leave)]
            }
            _ => {
                self.exit = true;
                vec![Action::Exit(0)]
            }
        }
    }

    fn submit_login(&mut self) -> Vec<Action> {
        let Screen::Login(form) = &mut self.screen else {
            return Vec::new();
        };
        let server = match ServerAddr::from_parts(form.host.text(), form.port.text()) {
            Ok(server) => server,
            Err(reason) => {
                form.focus = if form.host.text().trim().is_empty() {
                    Field::Host
                } else {
                    Field::Port
                };
                form.status = Status::Error(format!("Invalid address: {reason}"));
                return Vec::new();
            }
        };
        let name = match UserName::parse(form.name.text()) {
            Ok(name) => name.as_str().to_owned(),
            Err(reason) => {
                form.focus = Field::Name;
                form.status = Status::Error(format!("Invalid name: {reason}"));
                return Vec::new();
            }
        };
        // After a refused name the connection is still open and the session is back to
        // guest: retry on it rather than reconnecting.
        if self.link == Link::Open(server.clone()) {
            form.status = Status::Busy(format!("Joining as {name}…"));
            return vec![Action::Send(self.join(name, None))];
        }
        form.status = Status::Busy(format!("Connecting to {server}…"));
        self.link = Link::Connecting(server.clone());
        vec![Action::Connect(server)]
    }

    fn submit_chat(&mut self) -> Vec<Action> {
        let Screen::Chat(chat) = &mut self.screen else {
            return Vec::new();
        };
        match chat.presence {
            Presence::Offline(_) => {
                chat.presence = Presence::Rejoining;
                chat.note(EntryKind::Info(format!(
                    "Reconnecting to {} as {}…",
                    chat.server, chat.me
                )));
                self.link = Link::Connecting(chat.server.clone());
                return vec![Action::Connect(chat.server.clone())];
            }
            Presence::Leaving | Presence::Rejoining => return Vec::new(),
            Presence::Online => {}
        }
        let input = chat.input.take();
        let command = Command::parse(&input);
        if command != Command::Empty {
            chat.history.push(&input);
        }
        chat.scroll = 0;
        match command {
            Command::Say(text) => vec![Action::Send(Intent::Say(text))],
            Command::Users => {
                chat.lists_to_log.push_back(true);
                vec![Action::Send(Intent::ListUsers)]
            }
            Command::Quit => self.quit(),
            Command::Help => {
                for line in HELP {
                    chat.note(EntryKind::Info((*line).to_owned()));
                }
                chat.note(EntryKind::Info(
                    "Keys: Enter send · Alt-Enter new line · Up/Down history · PgUp/PgDn or wheel scroll · Esc back to the end".into(),
                ));
                Vec::new()
            }
            Command::Unknown(word) => {
                chat.note(EntryKind::Error(format!(
                    "Unknown command {word}; try /help"
                )));
                Vec::new()
            }
            Command::Empty => Vec::new(),
        }
    }

    /// `ADD` as `name`, always history-aware (E2), so that a rejoin can resume: the last
    /// `--history` lines at first (none with `--history 0`), after `last_id` when rejoining.
    fn join(&self, name: String, last_id: Option<&str>) -> Intent {
        match last_id {
            Some(id) => Intent::JoinWithHistory(name, Ask::After(id.into())),
            None => Intent::JoinWithHistory(name, Ask::Last(self.history)),
        }
    }

    /// Back to the login screen with an error, keeping the server and name.
    fn back_to_login(&mut self, server: ServerAddr, name: &str, error: String) {
        self.screen = Screen::Login(LoginForm {
            host: Editor::with_text(&server.host),
            port: Editor::with_text(&server.port.to_string()),
            name: Editor::with_text(name),
            focus: Field::Name,
            status: Status::Error(error),
        });
    }
}

impl Frontend for App {
    fn on_connected(&mut self) -> Vec<Action> {
        if let Link::Connecting(server) = &self.link {
            self.link = Link::Open(server.clone());
        }
        let (name, last_id) = match &mut self.screen {
            Screen::Login(form) => {
                let name = form.name.text().trim().to_owned();
                form.status = Status::Busy(format!("Joining as {name}…"));
                (name, None)
            }
            Screen::Chat(chat) => {
                chat.resuming = true;
                (chat.me.clone(), chat.last_id.clone())
            }
        };
        vec![Action::Send(self.join(name, last_id.as_deref()))]
    }

    fn on_connect_failed(&mut self, reason: String) -> Vec<Action> {
        self.link = Link::Offline;
        match &mut self.screen {
            Screen::Login(form) => form.status = Status::Error(capitalize(&reason)),
            Screen::Chat(chat) => {
                chat.note(EntryKind::Error(format!(
                    "{}. Press Enter to reconnect as {}, Ctrl-C to quit.",
                    capitalize(&reason),
                    chat.me
                )));
                chat.go_offline(reason);
            }
        }
        Vec::new()
    }

    fn on_event(&mut self, event: ClientEvent, at: NaiveTime) -> Vec<Action> {
        if let ClientEvent::Disconnected { .. } | ClientEvent::Left = event {
            self.link = Link::Offline;
        }
        match (&mut self.screen, event) {
            (Screen::Login(_), ClientEvent::Joined { name }) => {
                let Link::Open(server) = &self.link else {
                    return Vec::new();
                };
                let mut chat = ChatView::new(name.clone(), server.clone());
                chat.secure = self.secure;
                chat.push(Entry {
                    at: Some(at),
                    kind: EntryKind::Info(format!(
                        "Joined {server} as {name}. Type /help for commands."
                    )),
                });
                chat.lists_to_log.push_back(false);
                self.screen = Screen::Chat(chat);
                return vec![Action::Send(Intent::ListUsers)];
            }
            (Screen::Login(form), ClientEvent::NameTaken { name }) => {
                form.focus = Field::Name;
                form.status = Status::Error(format!(
                    "The name \"{name}\" is taken. Choose another and press Enter."
                ));
            }
            (Screen::Login(form), ClientEvent::Refused { code, reason, .. }) => {
                form.focus = Field::Name;
                form.status = Status::Error(format!("The server refused: {code} {reason}"));
            }
            (Screen::Login(form), ClientEvent::Disconnected { reason }) => {
                form.status = Status::Error(format!("Disconnected: {reason}"));
            }
            (Screen::Login(_), _) => {}
            (Screen::Chat(chat), event) => {
                let at_entry = |kind| Entry { at: Some(at), kind };
                match event {
                    ClientEvent::Joined { name } => {
                        chat.presence = Presence::Online;
                        chat.log
                            .push_back(at_entry(EntryKind::Info(format!("Rejoined as {name}."))));
                        chat.lists_to_log.push_back(false);
                        return vec![Action::Send(Intent::ListUsers)];
                    }
                    ClientEvent::NameTaken { name } => {
                        let error = format!(
                            "The name \"{name}\" was taken while you were away. Choose another."
                        );
                        let server = chat.server.clone();
                        self.back_to_login(server, &name, error);
                    }
                    ClientEvent::Refused {
                        request: Some(Method::Add),
                        code,
                        reason,
                    } => {
                        let error = format!("Rejoining was refused: {code} {reason}");
                        let (server, me) = (chat.server.clone(), chat.me.clone());
                        self.back_to_login(server, &me, error);
                    }
                    ClientEvent::ChatLine { from, text, id } => {
                        // A tab in a terminal cell would move the cursor past the cells
                        // ratatui drew; the TUI lays it out as spaces instead.
                        let text = chat_text(&text).replace('\t', "    ");
                        chat.push(at_entry(EntryKind::Chat { from, text }));
                        if id.is_some() {
                            chat.last_id = id;
                        }
                    }
                    ClientEvent::Replayed {
                        from,
                        text,
                        id,
                        said_at,
                    } => {
                        let text = chat_text(&text).replace('\t', "    ");
                        chat.push(Entry {
                            at: Some(said_at.map_or(at, |t| t.time())),
                            kind: EntryKind::Replayed { from, text },
                        });
                        if !id.is_empty() {
                            chat.last_id = Some(id);
                        }
                    }
                    ClientEvent::HistoryEnd { replayed, missed } => {
                        let noun = if replayed == 1 { "message" } else { "messages" };
                        let rule = match (std::mem::take(&mut chat.resuming), missed) {
                            (false, _) if replayed == 0 => None,
                            (false, _) => Some("history".to_owned()),
                            (true, false) => Some(format!("{replayed} {noun} while you were away")),
                            (true, true) => Some(format!(
                                "{replayed} {noun} while you were away; some were missed"
                            )),
                        };
                        if let Some(rule) = rule {
                            chat.note(EntryKind::Rule(rule));
                        }
                    }
                    ClientEvent::NoHistory if std::mem::take(&mut chat.resuming) => {
                        chat.note(EntryKind::Error(
                            "This server keeps no history: anything said while you were away is not shown.".into(),
                        ));
                    }
                    ClientEvent::MemberJoined { name } => {
                        if !chat.members.contains(&name) {
                            chat.members.push(name.clone());
                        }
                        chat.push(at_entry(EntryKind::Joined(name)));
                    }
                    ClientEvent::MemberLeft { name } => {
                        chat.members.retain(|m| *m != name);
                        chat.push(at_entry(EntryKind::Left(name)));
                    }
                    ClientEvent::UserList { names } => {
                        chat.members.clone_from(&names);
                        if chat.lists_to_log.pop_front().unwrap_or(true) {
                            chat.push(at_entry(EntryKind::Users(names)));
                        }
                    }
                    ClientEvent::Refused {
                        request,
                        code,
                        reason,
                    } => {
                        if request == Some(Method::Get) {
                            chat.lists_to_log.pop_front();
                        }
                        let what = request.map_or("request", |m| m.as_str());
                        chat.push(at_entry(EntryKind::Error(format!(
                            "The server refused {what}: {code} {reason}"
                        ))));
                    }
                    ClientEvent::Left | ClientEvent::Disconnected { .. }
                        if chat.presence == Presence::Leaving =>
                    {
                        self.exit = true;
                        return vec![Action::Exit(0)];
                    }
                    // A connection that was in the room is tried once more at once, and
                    // resumes where it stopped (E2); if that fails too, Enter tries again.
                    ClientEvent::Disconnected { reason } if chat.presence == Presence::Online => {
                        chat.push(at_entry(EntryKind::Error(format!(
                            "Disconnected: {reason}. Reconnecting to {} as {}…",
                            chat.server, chat.me
                        ))));
                        chat.go_offline(reason);
                        chat.presence = Presence::Rejoining;
                        self.link = Link::Connecting(chat.server.clone());
                        return vec![Action::Connect(chat.server.clone())];
                    }
                    ClientEvent::Disconnected { reason } => {
                        chat.push(at_entry(EntryKind::Error(format!(
                            "Disconnected: {reason}. Press Enter to reconnect as {}, Ctrl-C to quit.",
                            chat.me
                        ))));
                        chat.go_offline(reason);
                    }
                    _ => {}
                }
            }
        }
        Vec::new()
    }

    fn on_send_error(&mut self, intent: Intent, error: UsageError) -> Vec<Action> {
        match &mut self.screen {
            Screen::Login(form) => form.status = Status::Error(capitalize(&error.to_string())),
            Screen::Chat(chat) => {
                if intent == Intent::Leave {
                    // Nothing to leave: the connection is gone already.
                    self.exit = true;
                    return vec![Action::Exit(0)];
                }
                chat.note(EntryKind::Error(format!("Not sent: {error}")));
            }
        }
        Vec::new()
    }
}

impl LoginForm {
    /// The focused field's editor.
    pub fn field_mut(&mut self) -> &mut Editor {
        match self.focus {
            Field::Host => &mut self.host,
            Field::Port => &mut self.port,
            Field::Name => &mut self.name,
        }
    }
}

impl Field {
    fn next(self) -> Self {
        match self {
            Self::Host => Self::Port,
            Self::Port => Self::Name,
            Self::Name => Self::Host,
        }
    }

    fn prev(self) -> Self {
        self.next().next()
    }
}

impl ChatView {
    /// A chat screen for `me` in `server`, with an empty log.
    pub fn new(me: String, server: ServerAddr) -> Self {
        Self {
            me,
            server,
            secure: false,
            log: VecDeque::new(),
            log_bytes: 0,
            members: Vec::new(),
            input: Editor::default(),
            history: History::default(),
            scroll: 0,
            page: 1,
            log_width: 0,
            presence: Presence::Online,
            lists_to_log: VecDeque::new(),
            last_id: None,
            resuming: false,
        }
    }

    /// Adds an entry to the log, dropping the oldest past the limit. While the log is
    /// scrolled back, the view stays on what the user is reading.
    pub fn push(&mut self, entry: Entry) {
        if self.scroll > 0 && self.log_width > 0 {
            let rows = entry_lines(&entry, &self.me, self.log_width).len();
            self.scroll = self.scroll.saturating_add(rows);
        }
        self.log_bytes += entry.text_bytes();
        self.log.push_back(entry);
        while self.log.len() > MAX_LOG || (self.log_bytes > MAX_LOG_BYTES && self.log.len() > 1) {
            let dropped = self
                .log
                .pop_front()
                .expect("the log holds more than one entry");
            self.log_bytes -= dropped.text_bytes();
        }
    }

    /// The bytes of text the log holds (C3).
    pub fn log_bytes(&self) -> usize {
        self.log_bytes
    }

    /// Adds a note from the client itself (help, errors); these carry no time.
    fn note(&mut self, kind: EntryKind) {
        self.push(Entry { at: None, kind });
    }

    fn go_offline(&mut self, reason: String) {
        self.presence = Presence::Offline(reason);
        self.members.clear();
        self.lists_to_log.clear();
    }

    fn scroll_up(&mut self, rows: usize) {
        // The renderer clamps this to the log's height.
        self.scroll = self.scroll.saturating_add(rows);
    }

    fn scroll_down(&mut self, rows: usize) {
        self.scroll = self.scroll.saturating_sub(rows);
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> ChatView {
        let server = ServerAddr::parse("127.0.0.1:9994").expect("a valid address");
        ChatView::new("me".into(), server)
    }

    fn line(text: String) -> Entry {
        let from = "eve".into();
        Entry {
            at: None,
            kind: EntryKind::Chat { from, text },
        }
    }

    #[test]
    fn c3_the_log_is_bounded_by_bytes_as_well_as_entries() {
        let mut chat = chat();
        for _ in 0..1_000 {
            chat.push(line("x".repeat(64 * 1024)));
        }
        assert!(chat.log_bytes() <= MAX_LOG_BYTES, "{}", chat.log_bytes());
        assert!(chat.log.len() < 1_000);
        let counted: usize = chat.log.iter().map(Entry::text_bytes).sum();
        assert_eq!(counted, chat.log_bytes());
    }

    #[test]
    fn c3_the_log_is_bounded_by_entries() {
        let mut chat = chat();
        for i in 0..MAX_LOG + 10 {
            chat.push(line(i.to_string()));
        }
        assert_eq!(chat.log.len(), MAX_LOG);
        let first = chat.log.front().map(|e| e.kind.clone());
        assert_eq!(first, Some(line("10".into()).kind), "the oldest go first");
    }
}
