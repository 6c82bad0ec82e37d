//! A scripted host for the room machine: inputs at virtual times, outputs rendered one line
//! each, so a whole conversation reads as a transcript.
#![allow(dead_code)]

use std::fmt::Write as _;

use chathttp_core::server::{CloseMode, Disconnect, Event, Output, Server};
use chathttp_core::wire::{Progress, RESPONSE_HEADER_NAMES, ResponseDecoder};
use chathttp_core::{ConnId, FrameLimits, ServerConfig, Timestamp};

pub const SEED_ADD: &[u8] = b"ADD 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:07:40\nUser_Agent: Alice\nHost: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 0\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n";
pub const SEED_POST: &[u8] = b"POST 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:17:48\nUser_Agent: Alice\nHost: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 17\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nHello, everyone!\n";
pub const SEED_GET: &[u8] = b"GET 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:19:52\nUser_Agent: Alice\nHost: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 0\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n";
pub const SEED_DELETE: &[u8] = b"DELETE 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:21:28\nUser_Agent: Alice\nHost: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 0\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n";

/// A minimal request: only the headers the server needs (R2).
pub fn request(method: &str, user_agent: Option<&str>, body: &str) -> Vec<u8> {
    let mut out = format!("{method} / HTTP/1.1\n");
    if let Some(ua) = user_agent {
        out.push_str(&format!("User_Agent: {ua}\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content_Length: {}\n", body.len()));
    }
    out.push('\n');
    out.push_str(body);
    out.into_bytes()
}

pub fn add(name: &str) -> Vec<u8> {
    request("ADD", Some(name), "")
}

/// `ADD` with a `History` header (E2).
pub fn add_with_history(name: &str, history: &str) -> Vec<u8> {
    format!("ADD / HTTP/1.1\nUser_Agent: {name}\nHistory: {history}\n\n").into_bytes()
}

pub fn post(text: &str) -> Vec<u8> {
    request("POST", None, &format!("{text}\n"))
}

/// The host: drives a `Server`, renders what happens.
pub struct Script {
    pub server: Server,
    pub now_ms: u64,
    pub transcript: String,
    /// Show whole frames, headers included, instead of status and body.
    pub full_frames: bool,
    /// Keep closed connections' ids until [`Script::release`], as a host does while a
    /// socket lingers (S13). Otherwise each is released as soon as it is closed, as by a
    /// host whose sockets close at once.
    pub hold_releases: bool,
}

impl Script {
    pub fn new(config: ServerConfig) -> Self {
        Self {
            server: Server::new(config, Timestamp::from_millis(0)),
            now_ms: 0,
            transcript: String::new(),
            full_frames: false,
            hold_releases: false,
        }
    }

    pub fn with_defaults() -> Self {
        Self::new(ServerConfig {
            server_header: "chathttp-test".into(),
            ..ServerConfig::default()
        })
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms)
    }

    fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(
            self.transcript,
            "{:>7.3}s {}",
            self.now_ms as f64 / 1000.0,
            text.as_ref()
        );
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.transcript, "# {text}");
    }

    pub fn open(&mut self) -> ConnId {
        let now = self.now();
        let conn = self.server.handle_open(now);
        self.line(format!("{conn:?} connects"));
        self.pump();
        conn
    }

    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now();
        self.line(format!("{conn:?} >> {}", escape(bytes)));
        self.server.handle_received(now, conn, bytes);
        self.pump();
    }

    /// Sends without logging the bytes (for long inputs).
    pub fn send_quietly(&mut self, conn: ConnId, bytes: &[u8], label: &str) {
        let now = self.now();
        self.line(format!("{conn:?} >> ({label}, {} bytes)", bytes.len()));
        self.server.handle_received(now, conn, bytes);
        self.pump();
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        let now = self.now();
        self.line(format!("{conn:?} hangs up"));
        self.server.handle_closed(now, conn, Disconnect::Eof);
        self.pump();
        self.closed(conn);
    }

    /// The host let go of `conn`'s socket (see `hold_releases`).
    pub fn release(&mut self, conn: ConnId) {
        self.line(format!("{conn:?} released by the host"));
        self.server.handle_released(conn);
        self.pump();
    }

    fn closed(&mut self, conn: ConnId) {
        if !self.hold_releases {
            self.server.handle_released(conn);
        }
    }

    pub fn drained(&mut self, conn: ConnId, count: usize) {
        let now = self.now();
        self.line(format!("{conn:?} drained {count} bytes"));
        self.server.handle_drained(now, conn, count);
        self.pump();
    }

    /// Advances virtual time, firing timeouts on the way as a host would.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while let Some(deadline) = self.server.poll_timeout() {
            let due = deadline.monotonic().as_millis() as u64;
            if due > end {
                break;
            }
            self.now_ms = due.max(self.now_ms);
            let now = self.now();
            self.server.handle_timeout(now);
            self.pump();
        }
        self.now_ms = end;
    }

    /// The host reports every line up to `seq` recorded (E4).
    pub fn recorded(&mut self, seq: u64) {
        let now = self.now();
        self.line(format!("host recorded up to line {seq}"));
        self.server.handle_recorded(now, seq);
        self.pump();
    }

    /// The host could not record a line (E4).
    pub fn record_failed(&mut self, reason: &str) {
        let now = self.now();
        self.line(format!("host failed to record: {reason}"));
        self.server.handle_record_failed(now, reason.to_owned());
        self.pump();
    }

    pub fn shutdown(&mut self) {
        let now = self.now();
        self.line("host shuts down");
        self.server.handle_shutdown(now);
        self.pump();
    }

    pub fn pump(&mut self) {
        while let Some(output) = self.server.poll_output() {
            if let Output::Close { conn, .. } = output {
                self.closed(conn);
            }
            let text = match output {
                Output::Send { conn, frame } => format!("{conn:?} << {}", self.render(&frame)),
                Output::Broadcast { to, frame } => {
                    let to: Vec<String> = to.iter().map(|c| format!("{c:?}")).collect();
                    format!("{} << {}", to.join(","), self.render(&frame))
                }
                Output::Close { conn, mode } => match mode {
                    CloseMode::AfterFlush => format!("{conn:?} closed after flush"),
                    CloseMode::Now => format!("{conn:?} closed now"),
                },
                Output::PauseReading => "host pauses reading".to_owned(),
                Output::StopRecording => "host stops recording".to_owned(),
                Output::Record(line) => {
                    format!("host records line {} ({:?})", line.seq, &*line.text)
                }
                Output::ResumeReading => "host resumes reading".to_owned(),
                Output::Event(event) => format!("  log: {}", render_event(&event)),
            };
            self.line(text);
        }
    }

    fn render(&self, frame: &[u8]) -> String {
        if self.full_frames {
            return escape(frame);
        }
        render_frame(frame)
    }
}

/// `200 OK "body"` when the frame has exactly the seven headers of H2 in order with a
/// correct length; the whole frame, escaped, otherwise (so a deviation shows in the diff).
pub fn render_frame(frame: &[u8]) -> String {
    let mut decoder = ResponseDecoder::new(FrameLimits::for_responses());
    let (used, progress) = decoder.decode(frame);
    let Progress::Message(response) = progress else {
        return format!("UNDECODABLE {}", escape(frame));
    };
    if used != frame.len() {
        return format!("TRAILING BYTES {}", escape(frame));
    }
    let head_end = frame.len() - response.body.len();
    let head = String::from_utf8_lossy(&frame[..head_end]);
    let names: Vec<&str> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": ").map(|(n, _)| n))
        .collect();

    // E2: a chat line to a history-aware connection carries an eighth header, its id.
    let seven = names.get(..7) == Some(&RESPONSE_HEADER_NAMES[..]);
    let id = match (names.len(), response.message_id) {
        (7, None) => String::new(),
        (8, Some(id)) if names[7] == "Message_Id" => format!("[{}] ", escape(id)),
        _ => return format!("NONSTANDARD HEAD {}", escape(frame)),
    };
    if !seven || !head.ends_with("\n\n") || head.contains('\r') {
        return format!("NONSTANDARD HEAD {}", escape(frame));
    }
    format!(
        "{} {} {id}{}",
        response.code,
        String::from_utf8_lossy(response.reason),
        escape(response.body)
    )
}

fn render_event(event: &Event) -> String {
    match event {
        Event::Joined { conn, name } => format!("{conn:?} joined as {name}"),
        Event::Left { conn, name, cause } => format!("{conn:?} ({name}) left: {cause:?}"),
        Event::Refused {
            conn,
            status,
            reason,
        } => format!("{conn:?} refused {} ({reason})", status.code()),
        Event::GuestClosed { conn, cause } => format!("{conn:?} (guest) closed: {cause:?}"),
        Event::OverCapacity { conn } => format!("{conn:?} over capacity"),
        Event::HistoryOff { reason } => format!("history off: {reason}"),
        other => format!("{other:?}"),
    }
}

pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}
