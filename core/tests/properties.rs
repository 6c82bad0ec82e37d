//! quickcheck properties of the codec and the room.

mod support;

use chathttp_core::server::{Disconnect, Output, Server};
use chathttp_core::wire::encode::{RequestFields, ResponseFields, write_request, write_response};
use chathttp_core::wire::{HeaderValue, Method, Progress, RequestDecoder, ResponseDecoder, Status};
use chathttp_core::{FrameLimits, ServerConfig, Timestamp, UserName};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::collections::HashSet;

/// A valid request as a client would send it.
#[derive(Debug, Clone)]
struct ValidRequest {
    method: Method,
    name: String,
    body: Vec<u8>,
    crlf: bool,
}

impl Arbitrary for ValidRequest {
    fn arbitrary(g: &mut Gen) -> Self {
        let method = *g
            .choose(&[Method::Add, Method::Post, Method::Get, Method::Delete])
            .expect("non-empty");
        let name: String = {
            let chars = ['a', 'Z', '9', 'é', '小', '🦀', '-', '_'];
            let len = usize::arbitrary(g) % 12 + 1;
            (0..len)
                .map(|_| *g.choose(&chars).expect("non-empty"))
                .collect()
        };
        let body = if method == Method::Post {
            Vec::<u8>::arbitrary(g)
        } else {
            Vec::new()
        };
        Self {
            method,
            name,
            body,
            crlf: bool::arbitrary(g),
        }
    }
}

impl ValidRequest {
    fn encode(&self) -> Vec<u8> {
        let fields = RequestFields {
            host: "127.0.0.1",
            datetime: b"2015-11-29 10:07:40",
            user_agent: &self.name,
        };
        let mut out = Vec::new();
        write_request(&mut out, self.method, &fields, &self.body);
        if self.crlf {
            // W2: the same message with CRLF line ends in the head.
            let head_len = out.len() - self.body.len();
            let head = String::from_utf8(out[..head_len].to_vec()).expect("heads are UTF-8");
            let mut crlf = head.replace('\n', "\r\n").into_bytes();
            crlf.extend_from_slice(&self.body);
            return crlf;
        }
        out
    }
}

/// Decodes a whole stream fed in the given chunks; renders every outcome.
fn decode_requests(chunks: &[&[u8]], limits: FrameLimits) -> Vec<String> {
    let mut decoder = RequestDecoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let (used, progress) = decoder.decode(input);
            assert!(used <= input.len());
            input = &input[used..];
            match progress {
                Progress::NeedMore => {
                    assert!(input.is_empty(), "NeedMore must consume everything");
                    break;
                }
                Progress::Message(r) => out.push(format!(
                    "{:?} {:?} {:?} {:?} {:?}",
                    r.method_token, r.target, r.version, r.user_agent, r.body
                )),
                Progress::Error(e) => out.push(format!("error: {e}")),
            }
        }
    }
    out
}

fn split_at_points<'a>(stream: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|p| {
            if stream.is_empty() {
                0
            } else {
                p % (stream.len() + 1)
            }
        })
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&stream[start..cut]);
        start = cut;
    }
    chunks.push(&stream[start..]);
    chunks
}

#[test]
fn request_round_trip() {
    fn prop(request: ValidRequest) -> bool {
        let bytes = request.encode();
        let mut decoder = RequestDecoder::new(FrameLimits::default());
        let (used, progress) = decoder.decode(&bytes);
        let Progress::Message(decoded) = progress else {
            return false;
        };
        used == bytes.len()
            && decoded.method() == Some(request.method)
            && decoded.target == b"127.0.0.1"
            && decoded.version == b"HTTP/1.1"
            && decoded.user_agent == HeaderValue::Value(request.name.as_bytes())
            && decoded.body == request.body.as_slice()
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(ValidRequest) -> bool);
}

#[test]
fn response_round_trip() {
    fn prop(code: u16, body: Vec<u8>) -> bool {
        let status = [
            Status::OK,
            Status::ACCEPT,
            Status::USER_NAME_EXIST,
            Status::SERVICE_UNAVAILABLE,
        ][code as usize % 4];
        let fields = ResponseFields {
            datetime: b"2015-11-29 10:17:48",
            developer: "d",
            server: "s",
        };
        let mut bytes = Vec::new();
        write_response(&mut bytes, status, &fields, &body);
        let mut decoder = ResponseDecoder::new(FrameLimits::for_responses());
        let (used, progress) = decoder.decode(&bytes);
        let Progress::Message(decoded) = progress else {
            return false;
        };
        used == bytes.len()
            && decoded.code == status.code()
            && decoded.reason == status.reason().as_bytes()
            && decoded.body == body.as_slice()
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(u16, Vec<u8>) -> bool);
}

#[test]
fn decoding_does_not_depend_on_the_split() {
    fn prop(
        requests: Vec<ValidRequest>,
        garbage: Vec<u8>,
        blank_lines: u8,
        points: Vec<usize>,
    ) -> bool {
        let mut stream = Vec::new();
        for request in &requests {
            stream.extend(std::iter::repeat_n(b'\n', usize::from(blank_lines % 3)));
            stream.extend(request.encode());
        }
        // Whatever garbage follows, the split must not change the outcome either.
        stream.extend(&garbage);
        let limits = FrameLimits {
            max_head_bytes: 512,
            max_header_lines: 16,
            max_body_bytes: 64,
        };
        let whole = decode_requests(&[&stream], limits);
        let split = decode_requests(&split_at_points(&stream, &points), limits);
        let bytes = decode_requests(&stream.chunks(1).collect::<Vec<_>>(), limits);
        whole == split && whole == bytes
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<ValidRequest>, Vec<u8>, u8, Vec<usize>) -> bool);
}

/// Up to 40 steps, each one of `pieces` or, one time in `one_in`, a random byte.
fn noise(g: &mut Gen, pieces: &[&[u8]], one_in: u8) -> Vec<u8> {
    let len = usize::arbitrary(g) % 40;
    let mut out = Vec::new();
    for _ in 0..len {
        if u8::arbitrary(g) % one_in != 0 {
            out.extend_from_slice(g.choose(pieces).expect("non-empty"));
        } else {
            out.push(u8::arbitrary(g));
        }
    }
    out
}

/// Bytes biased towards the protocol's own alphabet, so random streams reach deep states.
#[derive(Debug, Clone)]
struct ProtocolNoise(Vec<u8>);

impl Arbitrary for ProtocolNoise {
    fn arbitrary(g: &mut Gen) -> Self {
        let pieces: &[&[u8]] = &[
            b"ADD / HTTP/1.1\n",
            b"POST x HTTP/1.1\r\n",
            b"GET / HTTP/1.1\n",
            b"Content_Length: 3\n",
            b"Content-Length: 99999\n",
            b"User_Agent: a\n",
            b"\n",
            b"\r\n",
            b" ",
            b":",
            b"\t",
            b"\0",
            b"abc",
            b"\xff",
        ];
        Self(noise(g, pieces, 2))
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(Self))
    }
}

#[test]
fn random_bytes_give_messages_or_typed_errors_never_a_panic() {
    fn prop(noise: ProtocolNoise, points: Vec<usize>) -> bool {
        let limits = FrameLimits {
            max_head_bytes: 64,
            max_header_lines: 4,
            max_body_bytes: 16,
        };
        let outcomes = decode_requests(&split_at_points(&noise.0, &points), limits);
        // After an error nothing else comes out: the stream is unframeable.
        match outcomes.iter().position(|o| o.starts_with("error: ")) {
            Some(at) => at == outcomes.len() - 1,
            None => true,
        }
    }
    QuickCheck::new()
        .tests(5000)
        .quickcheck(prop as fn(ProtocolNoise, Vec<usize>) -> bool);
}

/// Bytes biased towards what a server sends: status lines, headers and the H3 bodies, so
/// random streams decode into responses of every kind as well as into garbage.
#[derive(Debug, Clone)]
struct ServerNoise(Vec<u8>);

impl Arbitrary for ServerNoise {
    fn arbitrary(g: &mut Gen) -> Self {
        let pieces: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\n",
            b"HTTP/1.1 202 Accept\n",
            b"HTTP/1.1 401 User Name Exist\n",
            b"HTTP/1.1 403 Forbidden\n",
            b"HTTP/1.1 503 Service Unavailable\n",
            b"Content_Length: 12\n",
            b"Content_Length: 35\n",
            b"Server: x\n",
            b"\n",
            b"\r\n",
            b"[ a ] : hi\n",
            b"a has just entered the chat room...\n",
            b"a has just left the chat room...\n",
            b"Online users:\na\n",
            b"Welcome, a!\n",
            b"Goodbye, a!\n",
            b" ",
            b"\xff",
        ];
        Self(noise(g, pieces, 4))
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(Self))
    }
}

/// Whatever a server sends, a session that only asked who is online never tells its user
/// that it joined or left the room, and once it reports the connection over it reports
/// nothing more and stays closed.
#[test]
fn random_server_bytes_never_make_the_client_session_claim_what_it_did_not_ask() {
    use chathttp_core::client::{ClientEvent, ClientSession, Intent};
    fn prop(noise: ServerNoise, points: Vec<usize>) -> TestResult {
        let mut session = ClientSession::new("127.0.0.1");
        session
            .handle_intent(Timestamp::from_millis(0), Intent::ListUsers)
            .expect("a fresh session may ask who is online");
        let mut disconnected = false;
        for chunk in split_at_points(&noise.0, &points) {
            session.handle_received(chunk);
            while let Some(event) = session.poll_event() {
                if disconnected {
                    return TestResult::error(format!("{event:?} after the end"));
                }
                match event {
                    ClientEvent::Joined { .. } | ClientEvent::Left => {
                        return TestResult::error(format!("{event:?} without ADD or DELETE"));
                    }
                    ClientEvent::Disconnected { .. } => disconnected = true,
                    _ => {}
                }
            }
            if session.is_joined() || session.name().is_some() {
                return TestResult::error("joined without ADD");
            }
            if session.is_closed() != disconnected {
                return TestResult::error("closed without saying so, or said so and is open");
            }
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(3000)
        .quickcheck(prop as fn(ServerNoise, Vec<usize>) -> TestResult);
}

/// One step of a script against the room.
#[derive(Debug, Clone)]
enum Op {
    Open,
    Add(usize, &'static str),
    Delete(usize),
    Hangup(usize),
    Post(usize),
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        // Names that collide ignoring case or width, or look alike, in several scripts.
        let names = [
            "alice",
            "Alice",
            "ALICE",
            "\u{430}lice",
            "aIice",
            "ａｌｉｃｅ",
            "émile",
            "Émile",
            "ÉMILE",
            "σίσυφος",
            "ΣΊΣΥΦΟΣ",
            "bob",
            "b0b",
            "moe",
            "rnoe",
            "paypal",
            "paypa1",
            "ß",
            "SS",
        ];
        let who = usize::arbitrary(g) % 8;
        match u8::arbitrary(g) % 5 {
            0 => Op::Open,
            1 | 2 => Op::Add(who, g.choose(&names).expect("non-empty")),
            3 => Op::Delete(who),
            _ => {
                if bool::arbitrary(g) {
                    Op::Hangup(who)
                } else {
                    Op::Post(who)
                }
            }
        }
    }
}

#[test]
fn s2_2_two_admitted_names_never_share_a_comparison_form_or_a_confusable_key() {
    fn prop(ops: Vec<Op>) -> TestResult {
        let mut server = Server::new(ServerConfig::default(), Timestamp::from_millis(0));
        let mut conns = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            let now = Timestamp::from_millis(step as u64);
            match op {
                Op::Open => conns.push(server.handle_open(now)),
                Op::Add(i, name) if !conns.is_empty() => {
                    let conn = conns[i % conns.len()];
                    server.handle_received(now, conn, &support::add(name));
                }
                Op::Delete(i) if !conns.is_empty() => {
                    let conn = conns[i % conns.len()];
                    server.handle_received(now, conn, &support::request("DELETE", None, ""));
                }
                Op::Post(i) if !conns.is_empty() => {
                    let conn = conns[i % conns.len()];
                    server.handle_received(now, conn, &support::post("hi"));
                }
                Op::Hangup(i) if !conns.is_empty() => {
                    let conn = conns[i % conns.len()];
                    server.handle_closed(now, conn, Disconnect::Eof);
                    server.handle_released(conn);
                }
                _ => {}
            }
            while let Some(output) = server.poll_output() {
                if let Output::Close { conn, .. } = output {
                    server.handle_released(conn);
                }
            }
            let (mut forms, mut confusables) = (HashSet::new(), HashSet::new());
            for (conn, name) in server.room().members() {
                let again = UserName::parse(name.as_str()).expect("members have valid names");
                let keys: HashSet<_> = again.confusable_keys().into_iter().collect();
                if !forms.insert(again.key().to_owned())
                    || keys.iter().any(|k| confusables.contains(*k))
                    || !server.is_open(conn)
                {
                    return TestResult::failed();
                }
                confusables.extend(keys.into_iter().map(str::to_owned));
            }
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Op>) -> TestResult);
}
