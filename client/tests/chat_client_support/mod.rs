//! Shared by the chat-client end-to-end tests: a real server process, and the client binary
//! in line mode with its output read line by line. Every wait has a timeout, as a failure
//! guard only: the tests wait for output, never for time to pass.

#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one expected thing may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The chat-client binary under test.
pub fn client_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chat-client"))
}

/// `chat-server-smol`, next to the client binary; built once if it is not there yet.
pub fn server_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = client_binary().with_file_name("chat-server-smol");
            if !path.exists() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args([
                        "build",
                        "-p",
                        "chathttp-runtime-smol",
                        "--bin",
                        "chat-server-smol",
                    ])
                    .status()
                    .expect("running cargo build for chat-server-smol");
                assert!(status.success(), "building chat-server-smol failed");
            }
            assert!(path.exists(), "no chat-server-smol at {}", path.display());
            path
        })
        .clone()
}

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

/// A real `chat-server-smol` on a free port, killed on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`, as the server announced it.
    pub addr: String,
}

impl Server {
    /// Starts the server on a free port and waits for its `listening on ADDR` line.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts the server on `bind` and waits for its `listening on ADDR` line.
    pub fn start_on(bind: &str) -> Self {
        let mut child = Command::new(server_binary())
            .args(["--bind", bind])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chat-server-smol");
        let stdout = child.stdout.take().expect("stdout is piped");
        let line = line_reader(stdout)
            .recv_timeout(TIMEOUT)
            .expect("the server says where it listens");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_owned();
        Self { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    pub fn start(addr: &str, name: &str) -> Self {
        let mut child = Command::new(client_binary())
            .args(["--plain", "--server", addr, "--name", name])
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
