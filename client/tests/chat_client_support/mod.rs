//! Shared by the chat-client end-to-end tests: the client binary in line mode with its output
//! read line by line, against a real server from `chathttp_tests`. Every wait has a timeout,
//! as a failure guard only: the tests wait for output, never for time to pass.

#![allow(dead_code)] // each test file uses its own part of this module

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use chathttp_tests::Runtime;

/// How long any one expected thing may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The chat-client binary under test.
pub fn client_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chat-client"))
}

/// The server the end-to-end tests run against.
pub const SERVER: Runtime = Runtime::Smol;

/// Reads `reader` line by line in a thread; the channel closes at end of stream.
fn line_reader(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `chat-client --plain`, with its standard input and output in the test's hands.
pub struct LineClient {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl LineClient {
    /// Starts `chat-client --plain --server ADDR --name NAME`.
    pub fn start(addr: impl Display, name: &str) -> Self {
        Self::start_with(addr, name, &[])
    }

    /// [`start`](Self::start), with more flags (`--ca PATH`).
    pub fn start_with(addr: impl Display, name: &str, flags: &[&str]) -> Self {
        let mut child = Command::new(client_binary())
            .args(["--plain", "--server", &addr.to_string(), "--name", name])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting chat-client");
        let stdout = child.stdout.take().expect("stdout is piped");
        Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            lines: line_reader(stdout),
            child,
            seen: Vec::new(),
        }
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        writeln!(stdin, "{line}").expect("writing to the client's stdin");
        stdin.flush().expect("flushing the client's stdin");
    }

    /// Closes standard input (end of input means /quit).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the next line that `matches`, skipping others; returns it.
    pub fn expect_that(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: timed out waiting for {what}; saw {:#?}",
                        self.name, self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: output ended before {what}; saw {:#?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// The very next line must be this one.
    pub fn expect_next(&mut self, expected: &str) {
        let line = match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(error) => panic!("{}: no line ({error}); saw {:#?}", self.name, self.seen),
        };
        self.seen.push(line.clone());
        assert_eq!(
            line, expected,
            "{}: the next line; saw {:#?}",
            self.name, self.seen
        );
    }

    /// Waits for exactly this line.
    pub fn expect_line(&mut self, expected: &str) {
        self.expect_that(&format!("{expected:?}"), |line| line == expected);
    }

    /// Waits for `[HH:MM:SS] <from> text`.
    pub fn expect_chat(&mut self, from: &str, text: &str) {
        let tail = format!("] <{from}> {text}");
        self.expect_that(&format!("[HH:MM:SS]{tail:?}"), |line| {
            let Some(time) = line.strip_prefix('[').and_then(|l| l.get(..8)) else {
                return false;
            };
            let time_ok = time.bytes().enumerate().all(|(i, b)| match i {
                2 | 5 => b == b':',
                _ => b.is_ascii_digit(),
            });
            time_ok && line[9..] == tail
        });
    }

    /// Waits for the output to end and the process to exit; returns its status and the
    /// lines that came after the last expected one.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: did not exit; last lines {rest:#?}", self.name)
                }
            }
        }
        // Standard output is closed, so the process is exiting; wait() returns promptly.
        let status = self.child.wait().expect("waiting for chat-client");
        (status, rest)
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
