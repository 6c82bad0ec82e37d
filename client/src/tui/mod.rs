//! The interactive face: a ratatui + crossterm interface over the same driver as line mode.
//!
//! [`run`] puts the terminal in raw mode on the alternate screen (with mouse reporting and
//! bracketed paste), starts a thread that reads terminal events, and then loops: draw, wait
//! for a terminal or network event, hand it to the [`App`] or the driver, repeat. The
//! terminal is restored when [`run`] returns, and by the panic hook if anything panics.

pub mod app;
pub mod editor;
pub mod view;
pub mod wrap;

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event, KeyEventKind,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub use app::{App, DEFAULT_HISTORY};

use crate::args::ServerAddr;
use crate::driver::{Action, Driver};
use crate::net::Tagged;

/// How long `/quit` waits for the server's answer before exiting anyway.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// What the TUI loop waits for.
#[derive(Debug)]
enum Input {
    Net(Tagged),
    Term(Event),
    /// The terminal can no longer be read.
    TermGone,
}

impl From<Tagged> for Input {
    fn from(tagged: Tagged) -> Self {
        Self::Net(tagged)
    }
}

/// Runs the interactive client until the user quits. Returns the process exit code.
pub fn run(
    server: &ServerAddr,
    name: Option<&str>,
    history: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> io::Result<u8> {
    install_panic_hook();
    let _restore = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let (tx, rx) = mpsc::channel();
    let term_tx = tx.clone();
    thread::spawn(move || {
        loop {
            let input = match event::read() {
                Ok(event) => Input::Term(event),
                Err(_) => Input::TermGone,
            };
            let gone = matches!(input, Input::TermGone);
            if term_tx.send(input).is_err() || gone {
                return;
            }
        }
    });
    let mut app = App::new(server, name);
    app.history = history;
    app.secure = tls.is_some();
    let mut driver = Driver::new(tx, tls);
    event_loop(&mut terminal, &mut app, &mut driver, &rx)
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    driver: &mut Driver<Input>,
    rx: &Receiver<Input>,
) -> io::Result<u8> {
    let mut leave_deadline: Option<Instant> = None;
    loop {
        terminal.draw(|frame| view::draw(frame, app))?;
        if let Some(code) = driver.exit_code() {
            return Ok(code);
        }
        if app.is_leaving() {
            leave_deadline.get_or_insert_with(|| Instant::now() + LEAVE_GRACE);
        }
        let first = match leave_deadline {
            Some(deadline) => rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let first = match first {
            Ok(input) => input,
            // The server did not confirm /quit in time (the original server never does).
            Err(_) => return Ok(0),
        };
        // Handle everything that is already waiting before drawing again.
        for input in std::iter::once(first).chain(rx.try_iter()) {
            match input {
                Input::Net(tagged) => driver.handle_net(app, tagged),
                Input::Term(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    let actions = app.on_key(key);
                    driver.run(app, actions);
                }
                Input::Term(Event::Paste(text)) => app.on_paste(&text),
                Input::Term(Event::Mouse(mouse)) => app.on_mouse(mouse),
                // Resize and focus changes only need the redraw that follows.
                Input::Term(_) => {}
                Input::TermGone => {
                    let actions = app.on_terminal_gone();
                    driver.run(app, actions);
                }
            }
            if driver.exit_code().is_some() {
                break;
            }
        }
    }
}

/// Puts the terminal in the TUI's modes (raw, alternate screen, mouse reporting, bracketed
/// paste); [`restore`] on drop.
#[derive(Debug)]
pub struct TerminalGuard;

impl TerminalGuard {
    /// Enters the TUI's modes on standard output's terminal.
    pub fn enter() -> io::Result<Self> {
        enable_raw_mode()?;
        let guard = Self;
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as the shell had it. Safe to call more than once.
pub fn restore() {
    // Nothing useful can be done if the terminal refuses; carry on restoring the rest.
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Makes a panic [`restore`] the terminal before the panic message is printed, so the
/// message is readable and the shell usable. Call before [`TerminalGuard::enter`].
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

impl App {
    /// Whether `/quit` was sent and the app waits for the server to confirm.
    pub fn is_leaving(&self) -> bool {
        matches!(&self.screen, app::Screen::Chat(chat) if chat.presence == app::Presence::Leaving)
    }

    /// The terminal cannot be read any more (closed): leave as Ctrl-C does.
    fn on_terminal_gone(&mut self) -> Vec<Action> {
        let ctrl_c = event::KeyEvent::new(event::KeyCode::Char('c'), event::KeyModifiers::CONTROL);
        let mut actions = self.on_key(ctrl_c);
        if !self.is_leaving() {
            actions.push(Action::Exit(0));
        }
        actions
    }
}
