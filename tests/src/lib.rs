//! The conformance suite's helpers, and the one place where any test of the workspace gets a
//! server binary: [`workspace_binary`] builds it in the test's own profile, [`Server`] starts
//! it on a free loopback port and stops it through its handle, [`Client`] talks to it.
//!
//! The suite is black-box on purpose: it frames responses with its own small reader and
//! builds requests by hand, so a fault in the core's codec cannot hide itself. Every case is
//! written once as `fn case(rt: Runtime)` inside [`conformance!`], which instantiates it for
//! each server binary (`on_std::case`, `on_smol::case`, `on_asyncstd::case`).
//!
//! Waiting is done by reading: a case blocks until the byte it expects arrives. Read
//! timeouts ([`GUARD`]) only turn a hang into a failure; they are generous so that a loaded
//! machine does not fail a correct server.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod http;
pub mod redis;
mod relay;
pub mod tls;

pub use relay::Relay;

/// How long any single wait may take before the case fails.
pub const GUARD: Duration = Duration::from_secs(30);

/// The `Server` header value the binaries send.
pub const SERVER_HEADER: &str = concat!("chathttp/", env!("CARGO_PKG_VERSION"));

/// One of the three server binaries, spoken to in plaintext or, [`with_tls`](Self::with_tls),
/// over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    binary: Binary,
    tls: bool,
    websocket: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Std,
    Smol,
    AsyncStd,
}

// Named as the binaries they stand for, as enum variants would be.
#[allow(non_upper_case_globals)]
impl Runtime {
    /// `chat-server-std`.
    pub const Std: Runtime = Runtime::plain(Binary::Std);
    /// `chat-server-smol`.
    pub const Smol: Runtime = Runtime::plain(Binary::Smol);
    /// `chat-server-asyncstd`.
    pub const AsyncStd: Runtime = Runtime::plain(Binary::AsyncStd);
}

impl Runtime {
    const fn plain(binary: Binary) -> Runtime {
        Runtime {
            binary,
            tls: false,
            websocket: false,
        }
    }

    /// The same binary, started with the tests' certificate (see [`tls::pki`]) and spoken
    /// to over TLS by [`Server::connect`].
    pub const fn with_tls(self) -> Runtime {
        Runtime { tls: true, ..self }
    }

    /// The same binary, started with the browser gateway (`--http`), and spoken to through
    /// `/ws` by [`Server::connect`], one request or response per message (B1).
    pub const fn over_websocket(self) -> Runtime {
        Runtime {
            websocket: true,
            ..self
        }
    }

    /// The binary's name.
    pub fn binary_name(self) -> &'static str {
        match self.binary {
            Binary::Std => "chat-server-std",
            Binary::Smol => "chat-server-smol",
            Binary::AsyncStd => "chat-server-asyncstd",
        }
    }

    fn package(self) -> &'static str {
        match self.binary {
            Binary::Std => "chathttp-runtime-std",
            Binary::Smol => "chathttp-runtime-smol",
            Binary::AsyncStd => "chathttp-runtime-asyncstd",
        }
    }

    /// The binary, in the test's own profile (see [`workspace_binary`]).
    pub fn binary(self) -> PathBuf {
        workspace_binary(self.package(), self.binary_name())
    }
}

/// The binary `name` of the workspace package `package`, built with `cargo build` in the
/// profile this test was built in, once per test process: `cargo test -p X` builds only X's
/// own binaries, and a binary left over from an earlier build may be older than its sources.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test> -> target/<profile>/<binary>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    // One build at a time: concurrent cargo runs would only wait for each other's lock.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !built.iter().any(|b| b == name) {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", package, "--bin", name]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo can be run");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    assert!(path.exists(), "no {name} at {}", path.display());
    path
}

/// Writes every case once per runtime: `fn case(rt: Runtime) { .. }` becomes the tests
/// `on_std::case`, `on_smol::case` and `on_asyncstd::case`. Starting with `also_over_tls;`,
/// each case runs once more per runtime over TLS: `on_std_tls::case`, and so on (T1); with
/// `also_over_tls_and_websocket;`, once more again through the browser gateway's WebSocket:
/// `on_std_ws::case`, and so on (B1).
#[macro_export]
macro_rules! conformance {
    (also_over_tls_and_websocket; $($(#[$meta:meta])* fn $name:ident($rt:ident: Runtime) $body:block)*) => {
        $crate::conformance! { also_over_tls; $( $(#[$meta])* fn $name($rt: Runtime) $body )* }
        mod on_std_ws { $( #[test] fn $name() { super::$name($crate::Runtime::Std.over_websocket()) } )* }
        mod on_smol_ws { $( #[test] fn $name() { super::$name($crate::Runtime::Smol.over_websocket()) } )* }
        mod on_asyncstd_ws {
            $( #[test] fn $name() { super::$name($crate::Runtime::AsyncStd.over_websocket()) } )*
        }
    };
    (also_over_tls; $($(#[$meta:meta])* fn $name:ident($rt:ident: Runtime) $body:block)*) => {
        $crate::conformance! { $( $(#[$meta])* fn $name($rt: Runtime) $body )* }
        mod on_std_tls { $( #[test] fn $name() { super::$name($crate::Runtime::Std.with_tls()) } )* }
        mod on_smol_tls { $( #[test] fn $name() { super::$name($crate::Runtime::Smol.with_tls()) } )* }
        mod on_asyncstd_tls {
            $( #[test] fn $name() { super::$name($crate::Runtime::AsyncStd.with_tls()) } )*
        }
    };
    ($($(#[$meta:meta])* fn $name:ident($rt:ident: Runtime) $body:block)*) => {
        $( $(#[$meta])* fn $name($rt: $crate::Runtime) $body )*
        mod on_std { $( #[test] fn $name() { super::$name($crate::Runtime::Std) } )* }
        mod on_smol { $( #[test] fn $name() { super::$name($crate::Runtime::Smol) } )* }
        mod on_asyncstd { $( #[test] fn $name() { super::$name($crate::Runtime::AsyncStd) } )* }
    };
}

/// A running server process, killed (through its own handle) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    /// Started with `--http`: where the gateway listens.
    http: Option<SocketAddr>,
    /// Started with TLS: how its clients connect.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Clients connect through the gateway's `/ws`.
    websocket: bool,
}

impl Server {
    /// Starts `rt` on a free port of `127.0.0.1` with `flags` and waits for its
    /// `listening on` line.
    ///
    /// Flood control (S12) is off unless `flags` turn it on (`--message-rate R`; a flag's last
    /// value wins): most cases send far faster than a person types, and the S12 cases say so.
    pub fn start(rt: Runtime, flags: &[&str]) -> Server {
        Self::start_on(rt, "127.0.0.1:0", flags)
    }

    /// Starts `rt` on `bind` (for example an address a stopped server had) with `flags`.
    pub fn start_on(rt: Runtime, bind: &str, flags: &[&str]) -> Server {
        let mut command = Command::new(rt.binary());
        command.args(["--bind", bind, "--message-rate", "0"]);
        if rt.tls {
            let pki = tls::pki();
            command.arg("--tls-cert").arg(&pki.cert);
            command.arg("--tls-key").arg(&pki.key);
        }
        if rt.websocket {
            command.args(["--http", "127.0.0.1:0"]);
        }
        command.args(flags);
        let mut server = Self::spawn(command);
        if rt.tls {
            server.tls = Some(tls::pki().client_config());
        }
        server.websocket = rt.websocket;
        server
    }

    /// Starts a prepared command, which must print a `listening on` line (after an `http
    /// listening on` line, with `--http`).
    pub fn spawn(mut command: Command) -> Server {
        // Server logs are noise in a passing run; CHATHTTP_TEST_LOG=1 shows them.
        let logs = if std::env::var_os("CHATHTTP_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout);
        let mut http = None;
        let addr = loop {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("the server writes its stdout");
            let line = line.trim_end();
            if let Some(addr) = line.strip_prefix("http listening on ") {
                http = addr.parse().ok();
                continue;
            }
            break line
                .strip_prefix("listening on ")
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"));
        };
        Server {
            child,
            addr,
            http,
            tls: None,
            websocket: false,
        }
    }

    /// Over TLS: how clients connect to it (trusting the tests' CA only).
    pub fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id, for reading its memory use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Descriptors the server's process holds open, from `/proc/PID/fd`.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the server's /proc entry is readable")
            .count()
    }

    /// The server's resident memory in KiB, from `/proc/PID/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc entry is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS is listed")
    }

    /// With `--http`: where the gateway listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("the server was started with --http")
    }

    /// A connection that has not read anything yet (over TLS if the server speaks it, through
    /// the gateway's `/ws` for a runtime [`over_websocket`](Runtime::over_websocket)).
    pub fn connect(&self) -> Client {
        if self.websocket {
            return self
                .connect_websocket(None)
                .expect("the gateway upgrades /ws");
        }
        let tcp = TcpStream::connect(self.addr).expect("the server accepts connections");
        match &self.tls {
            None => Client::new(tcp),
            Some(config) => Client::over_tls(tls::connect(config, tcp)),
        }
    }

    /// A WebSocket to the gateway's `/ws` (over TLS if the server speaks it), sending
    /// `origin` as a browser would; the gateway's refusal is the error.
    pub fn connect_websocket(&self, origin: Option<&str>) -> Result<Client, tungstenite::Error> {
        let addr = self.http_addr();
        let tcp = TcpStream::connect(addr).expect("the gateway accepts connections");
        tcp.set_read_timeout(Some(GUARD))
            .expect("a read timeout can be set");
        let (link, scheme) = match &self.tls {
            None => (Link::Plain(tcp), "ws"),
            Some(config) => (Link::Tls(Box::new(tls::connect(config, tcp))), "wss"),
        };
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{scheme}://{addr}/ws"
        ))?;
        if let Some(origin) = origin {
            let value = origin.parse().expect("an origin is a header value");
            request.headers_mut().insert("Origin", value);
        }
        let (ws, _) = tungstenite::client::client(request, link).map_err(|error| match error {
            tungstenite::HandshakeError::Failure(error) => error,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(io::ErrorKind::WouldBlock.into())
            }
        })?;
        Ok(Client::with_io(Io::WebSocket(Box::new(ws))))
    }

    /// A connection that has read its greeting (S1).
    pub fn guest(&self) -> Client {
        let mut client = self.connect();
        let greeting = client.read_response();
        assert_eq!(greeting.status_line, "HTTP/1.1 202 Accept", "S1 greeting");
        client
    }

    /// A connection that has read its greeting, once the server has a place for it: past
    /// `--max-connections`, connections that close, or whose closes end, free places (S10,
    /// S13), and the server may learn of it a moment after the peer. Until then each try gets
    /// `503` and is dropped.
    pub fn guest_once_a_place_is_free(&self) -> Client {
        let started = Instant::now();
        loop {
            let mut client = self.connect();
            let reply = client.read_response();
            match reply.code() {
                202 => return client,
                503 => assert!(started.elapsed() < GUARD, "no place was freed"),
                _ => panic!("expected a greeting or 503, got {reply:?}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A guest that joins as `name` asking `History: ask` (E2); with the replayed lines and
    /// the marker (see [`Client::join_with_history`]).
    pub fn join_with_history(&self, name: &str, ask: &str) -> (Client, Vec<Response>, String) {
        let mut client = self.guest();
        let (replayed, marker) = client.join_with_history(name, ask);
        (client, replayed, marker)
    }

    /// A member joined as `name` on the ChatHTTP port, plaintext, whatever this server's
    /// clients otherwise use (a TCP member beside browser members).
    pub fn tcp_member(&self, name: &str) -> Client {
        let tcp = TcpStream::connect(self.addr).expect("the server accepts connections");
        let mut client = Client::new(tcp);
        assert_eq!(client.read_response().code(), 202, "S1 greeting");
        let reply = client.request("ADD", name, b"");
        assert_eq!(reply.code(), 200, "ADD {name}: {reply:?}");
        client
    }

    /// A connection that has joined as `name` (S2).
    pub fn member(&self, name: &str) -> Client {
        let mut client = self.guest();
        let reply = client.request("ADD", name, b"");
        assert_eq!(reply.code(), 200, "ADD {name}: {reply:?}");
        client
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    /// Sends the signal `name` (`TERM`, `INT`) to this server's process, by its id.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill can be run");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, failing after [`GUARD`].
    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return status;
            }
            assert!(started.elapsed() < GUARD, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request with the ten headers of the seed's examples (R2), LF line ends.
pub fn request(method: &str, name: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:17:48\nUser_Agent: {name}\n\
         Host: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\n\
         Content_Length: {}\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `ADD` as `name` with the ten headers of R2 and `History: ask` after them (E2).
pub fn add_with_history(name: &str, ask: &str) -> Vec<u8> {
    let plain = String::from_utf8(request("ADD", name, b"")).expect("a request is ASCII");
    plain
        .replacen("\n\n", &format!("\nHistory: {ask}\n\n"), 1)
        .into_bytes()
}

/// One response as it came off the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1 CODE REASON`.
    pub status_line: String,
    /// The header lines, in order, split at the first `": "`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Every byte of the response.
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

impl Response {
    /// The status code.
    pub fn code(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {:?}", self.status_line))
    }

    /// The `Message_Id` of a chat line to a history-aware connection (E2).
    pub fn message_id(&self) -> &str {
        self.header("Message_Id")
            .unwrap_or_else(|| panic!("no Message_Id in {self:?}"))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name` (exact spelling).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses one response from the front of `buffer`, if it is complete. Responses use LF
    /// line ends only (W2), so the head ends at the first empty line.
    fn parse(buffer: &[u8]) -> Option<(Response, usize)> {
        let head_end = buffer.windows(2).position(|w| w == b"\n\n")?;
        let head = std::str::from_utf8(&buffer[..head_end]).expect("the head is UTF-8");
        let mut lines = head.split('\n');
        let status_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a header has `: `");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "Content_Length")
            .map(|(_, value)| value.parse().expect("Content_Length is decimal"))
            .unwrap_or(0);
        let end = head_end + 2 + length;
        if buffer.len() < end {
            return None;
        }
        let response = Response {
            status_line,
            headers,
            body: buffer[head_end + 2..end].to_vec(),
            raw: buffer[..end].to_vec(),
        };
        Some((response, end))
    }
}

/// A blocking client connection with its own response framing.
#[derive(Debug)]
pub struct Client {
    io: Io,
    buffer: Vec<u8>,
}

/// How a [`Client`] reaches its server: a byte stream, or WebSocket messages over one.
#[derive(Debug)]
enum Io {
    Stream(Link),
    WebSocket(Box<tungstenite::WebSocket<Link>>),
}

/// A connection to the server, plaintext or TLS.
#[derive(Debug)]
enum Link {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Link {
    fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(stream) => stream,
            Link::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(stream) => stream.read(buf),
            Link::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(stream) => stream.write(buf),
            Link::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(stream) => stream.flush(),
            Link::Tls(tls) => tls.flush(),
        }
    }
}

impl Client {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Client {
        Self::with_io(Io::Stream(Link::Plain(stream)))
    }

    /// Wraps a TLS stream (its handshake happens with the first read or write).
    pub fn over_tls(stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Client {
        Self::with_io(Io::Stream(Link::Tls(Box::new(stream))))
    }

    fn with_io(io: Io) -> Client {
        let client = Client {
            io,
            buffer: Vec::new(),
        };
        let stream = client.stream();
        stream
            .set_read_timeout(Some(GUARD))
            .expect("a read timeout can be set");
        stream.set_nodelay(true).expect("nodelay can be set");
        client
    }

    /// The socket, for options and shutdowns.
    pub fn stream(&self) -> &TcpStream {
        match &self.io {
            Io::Stream(link) => link.tcp(),
            Io::WebSocket(ws) => ws.get_ref().tcp(),
        }
    }

    /// Over TLS: the certificate the server presented (DER), once the handshake is done.
    pub fn server_certificate(&self) -> Option<Vec<u8>> {
        let link = match &self.io {
            Io::Stream(link) => link,
            Io::WebSocket(ws) => ws.get_ref(),
        };
        match link {
            Link::Plain(_) => None,
            Link::Tls(tls) => Some(tls.conn.peer_certificates()?.first()?.to_vec()),
        }
    }

    /// Sends raw bytes (sealed first, over TLS; as one message over a WebSocket, a binary
    /// one if they are not UTF-8).
    pub fn send(&mut self, bytes: &[u8]) {
        match &mut self.io {
            Io::Stream(link) => link
                .write_all(bytes)
                .and_then(|()| link.flush())
                .expect("the server reads"),
            Io::WebSocket(ws) => {
                let message = match String::from_utf8(bytes.to_vec()) {
                    Ok(text) => tungstenite::Message::text(text),
                    Err(bytes) => tungstenite::Message::binary(bytes.into_bytes()),
                };
                ws.send(message).expect("the gateway reads");
            }
        }
    }

    /// Sends a request (see [`request`]) and reads one response.
    pub fn request(&mut self, method: &str, name: &str, body: &[u8]) -> Response {
        self.send(&request(method, name, body));
        self.read_response()
    }

    /// Joins as `name` asking `History: ask` (E2); returns the replayed chat lines, read up
    /// to the marker (E3: nothing else comes before it), and the marker's body.
    pub fn join_with_history(&mut self, name: &str, ask: &str) -> (Vec<Response>, String) {
        self.send(&add_with_history(name, ask));
        let welcome = self.read_response();
        assert_eq!(welcome.text(), format!("Welcome, {name}!\n"), "{welcome:?}");
        let mut replayed = Vec::new();
        loop {
            let response = self.read_response();
            if response.text().starts_with("History: ") {
                return (replayed, response.text());
            }
            assert!(
                response.text().starts_with("[ "),
                "only chat lines before the marker: {response:?}"
            );
            replayed.push(response);
        }
    }

    /// Reads the next response; fails on end of stream or after [`GUARD`].
    pub fn read_response(&mut self) -> Response {
        match self.next_response() {
            Ok(Some(response)) => response,
            Ok(None) => panic!("the server closed instead of responding"),
            Err(error) => panic!("no response: {error}"),
        }
    }

    /// Reads the next response, or `None` at a clean end of stream.
    pub fn next_response(&mut self) -> io::Result<Option<Response>> {
        let mut chunk = [0; 16 * 1024];
        loop {
            if let Some((response, used)) = Response::parse(&self.buffer) {
                self.buffer.drain(..used);
                return Ok(Some(response));
            }
            let link = match &mut self.io {
                Io::Stream(link) => link,
                Io::WebSocket(ws) => return read_message(ws),
            };
            let read = link.read(&mut chunk);
            match read {
                Ok(0) if self.buffer.is_empty() => return Ok(None),
                Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "cut response")),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads until `count` chat lines (S3) have come, skipping other bodies; returns them.
    pub fn read_chat_lines(&mut self, count: usize) -> Vec<String> {
        let mut chat = Vec::with_capacity(count);
        while chat.len() < count {
            let body = self.read_response().text();
            if body.starts_with("[ ") {
                chat.push(body);
            }
        }
        chat
    }

    /// Reads responses until one whose body is `body`, returning those skipped.
    pub fn read_until_body(&mut self, body: &str) -> Vec<Response> {
        let mut skipped = Vec::new();
        loop {
            let response = self.read_response();
            if response.body == body.as_bytes() {
                return skipped;
            }
            skipped.push(response);
        }
    }

    /// Asserts that the server closes the connection (cleanly, no reset) without sending
    /// anything more.
    pub fn expect_closed(&mut self) {
        match self.next_response() {
            Ok(None) => {}
            Ok(Some(response)) => panic!("expected the close, got {response:?}"),
            Err(error) => panic!("expected a clean close, got {error}"),
        }
    }

    /// Asserts that nothing arrives for `quiet` (a check of an absence; use sparingly).
    pub fn expect_silence(&mut self, quiet: Duration) {
        let stream = self.stream();
        stream
            .set_read_timeout(Some(quiet))
            .expect("a read timeout can be set");
        let mut byte = [0; 1];
        let result = stream.peek(&mut byte);
        stream
            .set_read_timeout(Some(GUARD))
            .expect("a read timeout can be set");
        match result {
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("the server closed the connection"),
            other => panic!("expected silence, got {other:?}"),
        }
        assert!(
            self.buffer.is_empty(),
            "expected silence, have buffered bytes"
        );
    }

    /// Resets the connection (RST instead of FIN), as a crashed peer would.
    pub fn reset(self) {
        socket2::SockRef::from(self.stream())
            .set_linger(Some(Duration::ZERO))
            .expect("linger can be set");
        drop(self);
    }
}

/// The next message of `ws` as a response (B1: each message is exactly one), or `None` once
/// the gateway has closed it.
fn read_message(ws: &mut tungstenite::WebSocket<Link>) -> io::Result<Option<Response>> {
    loop {
        let text = match ws.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(tungstenite::Message::Close(_))
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                // The close handshake's end: the gateway closes the socket after its reply.
                return Ok(None);
            }
            Ok(other) if other.is_ping() || other.is_pong() => continue,
            Ok(other) => panic!("B1: only text messages, got {other:?}"),
            Err(tungstenite::Error::Io(error)) => return Err(error),
            Err(error) => return Err(io::Error::other(error)),
        };
        let Some((response, used)) = Response::parse(text.as_bytes()) else {
            panic!("B1: a message that is not a whole response: {text:?}");
        };
        assert_eq!(used, text.len(), "B1: one response per message: {text:?}");
        return Ok(Some(response));
    }
}

/// Checks that a fresh client is still served normally (after a bad input elsewhere).
pub fn assert_still_serving(server: &Server) {
    let mut client = server.guest();
    let reply = client.request("GET", "probe", b"");
    assert_eq!(reply.code(), 200, "a fresh client is served: {reply:?}");
    assert!(reply.text().starts_with("Online users:\n"));
}

/// S7's exchange: each of the first `senders` members pipelines `messages` POSTs (bodies
/// "0", "1", …) while every member reads until it holds all `senders × messages` chat lines.
/// Returns each member's chat lines, in member order.
pub fn exchange_posts(members: Vec<Client>, senders: usize, messages: usize) -> Vec<Vec<String>> {
    exchange_posts_with(members, senders, messages, "", |mut member| {
        member.read_chat_lines(senders * messages)
    })
}

/// [`exchange_posts`] with longer bodies ("0" and `padding`, …) and each member's connection
/// handed to `read`, on a thread of its own; returns what each `read` returned, in member
/// order.
pub fn exchange_posts_with<T: Send>(
    members: Vec<Client>,
    senders: usize,
    messages: usize,
    padding: &str,
    read: impl Fn(Client) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let read = &read;
        let readers: Vec<_> = members
            .into_iter()
            .enumerate()
            .map(|(i, member)| {
                if i < senders {
                    let stream = member.stream().try_clone().expect("clone");
                    scope.spawn(move || {
                        let mut batch = Vec::new();
                        for seq in 0..messages {
                            batch.extend(request(
                                "POST",
                                "x",
                                format!("{seq}{padding}").as_bytes(),
                            ));
                        }
                        (&stream).write_all(&batch).expect("send all");
                    });
                }
                scope.spawn(move || read(member))
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a reader ends"))
            .collect()
    })
}

/// S7's verdict on [`exchange_posts`]: every member saw the same lines in the same order,
/// and in it each sender `m{k}`'s messages appear once each, in the order sent. `who` names
/// member `i` in failure messages.
pub fn assert_one_order_exactly_once(
    received: &[Vec<String>],
    senders: usize,
    messages: usize,
    who: impl Fn(usize) -> String,
) {
    let reference = &received[0];
    for (i, copy) in received.iter().enumerate() {
        assert!(copy == reference, "{} saw another order than m0", who(i));
    }
    for sender in 0..senders {
        let prefix = format!("[ m{sender} ] : ");
        let sequence: Vec<usize> = reference
            .iter()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|seq| seq.trim_end().parse().expect("a number"))
            .collect();
        assert!(
            sequence == (0..messages).collect::<Vec<_>>(),
            "m{sender}'s messages: once each, in order"
        );
    }
}
