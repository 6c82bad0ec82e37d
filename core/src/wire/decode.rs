//! Incremental decoders for requests and responses.
//!
//! # Theory of operation
//!
//! A decoder is fed with [`decode`](Decoder::decode) each time bytes arrive. It returns how
//! many bytes it consumed and a [`Progress`]: a complete message, a frame error, or "need
//! more". The caller calls again with the unconsumed rest until it gets
//! [`Progress::NeedMore`], which always consumes everything it was given.
//!
//! A message that arrives whole is decoded straight out of the caller's slice and borrows
//! from it; no byte is copied. Only a message cut by the end of a read is copied, once, into
//! the decoder's own buffer, and the complete message then borrows from that buffer. The
//! buffer is released after each such message, so a quiet connection holds none.
//!
//! The head is parsed line by line as lines complete, remembering the line being read and
//! how far it has been searched for its end (as h11's receive buffer does). Every byte is
//! therefore examined a bounded number of times, whatever the split: decoding is linear in
//! the bytes received, byte-by-byte feeding included.
//!
//! Limits (W5) are checked while reading: the decoder never holds more than
//! `max_head_bytes` of an unfinished head, and refuses a body whose announced length is over
//! `max_body_bytes` before reading any of it.
//!
//! After a frame error the stream has no trustworthy message boundary: the decoder stays
//! failed and discards whatever it is given.

use std::marker::PhantomData;

use super::{HeaderValue, Request, Response};
use crate::error::FrameError;
use crate::limits::FrameLimits;

/// What one call to [`Decoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Progress<M> {
    /// All input was consumed and no message is complete yet.
    NeedMore,
    /// One complete message. Call again with the unconsumed input.
    Message(M),
    /// The stream cannot be framed (W8). The decoder discards all further input.
    Error(FrameError),
}

/// Decodes requests (server side).
pub type RequestDecoder = Decoder<RequestKind>;
/// Decodes responses (client side).
pub type ResponseDecoder = Decoder<ResponseKind>;

/// An incremental decoder for one direction of one connection. See the module docs.
#[derive(Debug)]
pub struct Decoder<K: Kind> {
    limits: FrameLimits,
    /// The unfinished message, from its first byte; empty when none is unfinished.
    buf: Vec<u8>,
    head: Head<K::Start>,
    phase: Phase,
    kind: PhantomData<K>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between messages. `pending_cr`: the last byte seen was a CR that may start a blank line.
    Idle { pending_cr: bool },
    /// Part of a head is in `buf`.
    Head,
    /// The head and part of the body (of `total` message bytes) are in `buf`.
    Body { total: usize },
    /// A message was just returned from `buf`; release it on the next call.
    Returned,
    /// A frame error was returned; the stream is unframeable.
    Failed,
}

impl<K: Kind> Decoder<K> {
    /// A decoder that enforces `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            head: Head::default(),
            phase: Phase::Idle { pending_cr: false },
            kind: PhantomData,
        }
    }

    /// Whether part of a message has arrived and the rest has not (blank lines between
    /// messages do not count). Drives the request timeout (S9).
    pub fn is_mid_message(&self) -> bool {
        matches!(self.phase, Phase::Head | Phase::Body { .. })
    }

    /// Whether a frame error has been returned.
    pub fn has_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// Bytes held for an unfinished message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds `input`; returns the number of bytes consumed and what they completed.
    ///
    /// Call again with `&input[consumed..]` until the result is [`Progress::NeedMore`]
    /// (which consumes everything). A message borrows from `input` or from the decoder, so
    /// it must be dropped before the next call.
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> (usize, Progress<K::Message<'a>>) {
        match self.phase {
            Phase::Failed => (input.len(), Progress::NeedMore),
            Phase::Returned => {
                self.buf = Vec::new();
                self.phase = Phase::Idle { pending_cr: false };
                self.decode(input)
            }
            Phase::Idle { pending_cr } => self.decode_from_idle(input, pending_cr),
            Phase::Head => self.continue_head(input),
            Phase::Body { total } => {
                let more = (total - self.buf.len()).min(input.len());
                self.grow(more, total);
                self.buf.extend_from_slice(&input[..more]);
                (more, self.finish_if_complete(total))
            }
        }
    }

    /// Decodes every complete message in `input`, in order, handing each to `each`; a frame
    /// error is handed over last, as the decoder discards everything after it. All of
    /// `input` is consumed. This is the form for callers that never stop between messages;
    /// [`decode`](Self::decode) is the step-by-step one.
    pub fn decode_each(
        &mut self,
        mut input: &[u8],
        mut each: impl FnMut(Result<K::Message<'_>, FrameError>),
    ) {
        loop {
            let (used, progress) = self.decode(input);
            input = &input[used..];
            match progress {
                Progress::NeedMore => return,
                Progress::Message(message) => each(Ok(message)),
                Progress::Error(error) => return each(Err(error)),
            }
        }
    }

    fn decode_from_idle<'a>(
        &'a mut self,
        input: &'a [u8],
        mut pending_cr: bool,
    ) -> (usize, Progress<K::Message<'a>>) {
        let mut at = 0;
        // W7: blank lines before a start line are skipped, LF or CRLF, split anywhere.
        while at < input.len() {
            match (pending_cr, input[at]) {
                (_, b'\n') => pending_cr = false,
                (false, b'\r') => pending_cr = true,
                (false, _) => break,
                // A CR not followed by LF: the message would start with a control byte.
                (true, _) => return (input.len(), self.fail(FrameError::BadStartLine)),
            }
            at += 1;
        }
        let rest = &input[at..];
        if rest.is_empty() {
            self.phase = Phase::Idle { pending_cr };
            return (input.len(), Progress::NeedMore);
        }
        self.head = Head::default();
        let head_len = match self.head.advance::<K>(rest, &self.limits) {
            Err(e) => return (input.len(), self.fail(e)),
            Ok(None) => {
                self.buf.extend_from_slice(rest);
                self.phase = Phase::Head;
                return (input.len(), Progress::NeedMore);
            }
            Ok(Some(head_len)) => head_len,
        };
        let total = match self.body_end(head_len) {
            Ok(total) => total,
            Err(e) => return (input.len(), self.fail(e)),
        };
        if rest.len() >= total {
            // The fast path: the whole message is in the caller's slice. A CR remembered from
            // an earlier slice was answered by this one's LF; the next message starts afresh.
            self.phase = Phase::Idle { pending_cr: false };
            let message = K::assemble(&rest[..total], &self.head, head_len);
            return (at + total, Progress::Message(message));
        }
        self.grow(rest.len(), total);
        self.buf.extend_from_slice(rest);
        self.phase = Phase::Body { total };
        (input.len(), Progress::NeedMore)
    }

    fn continue_head<'a>(&'a mut self, input: &'a [u8]) -> (usize, Progress<K::Message<'a>>) {
        // Never hold more than the head limit: take only what could still belong to a head.
        let take = input.len().min(self.limits.max_head_bytes - self.buf.len());
        self.buf.extend_from_slice(&input[..take]);
        let head_len = match self.head.advance::<K>(&self.buf, &self.limits) {
            Err(e) => return (input.len(), self.fail(e)),
            Ok(None) => return (take, Progress::NeedMore),
            Ok(Some(head_len)) => head_len,
        };
        let total = match self.body_end(head_len) {
            Ok(total) => total,
            Err(e) => return (input.len(), self.fail(e)),
        };
        if self.buf.len() >= total {
            // The bytes taken ran past this message: give the surplus back to the caller.
            let surplus = self.buf.len() - total;
            self.buf.truncate(total);
            return (take - surplus, self.finish_if_complete(total));
        }
        let more = (total - self.buf.len()).min(input.len() - take);
        self.grow(more, total);
        self.buf.extend_from_slice(&input[take..take + more]);
        (take + more, self.finish_if_complete(total))
    }

    /// The message's total length once its head (of `head_len` bytes) is known.
    fn body_end(&self, head_len: usize) -> Result<usize, FrameError> {
        let length = self.head.content_length.unwrap_or(0);
        let limit = self.limits.max_body_bytes;
        match usize::try_from(length) {
            Ok(body) if body <= limit => head_len
                .checked_add(body)
                .ok_or(FrameError::BodyTooLarge { length, limit }),
            _ => Err(FrameError::BodyTooLarge { length, limit }),
        }
    }

    /// Makes room for `incoming` more bytes of a message `total` bytes long. The buffer grows
    /// with what arrives (doubling, so a trickled body is still copied in linear time) and
    /// never past `total`: an announced `Content_Length` reserves nothing by itself, so a
    /// peer that announces a large body and sends none holds only what it sent.
    fn grow(&mut self, incoming: usize, total: usize) {
        let needed = self.buf.len() + incoming;
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity() * 2).min(total);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    fn finish_if_complete(&mut self, total: usize) -> Progress<K::Message<'_>> {
        if self.buf.len() < total {
            self.phase = Phase::Body { total };
            return Progress::NeedMore;
        }
        self.phase = Phase::Returned;
        let head_len = self.head.line_start;
        Progress::Message(K::assemble(&self.buf, &self.head, head_len))
    }

    fn fail<M>(&mut self, error: FrameError) -> Progress<M> {
        self.phase = Phase::Failed;
        self.buf = Vec::new();
        Progress::Error(error)
    }
}

/// A byte range within one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of<'a>(&self, message: &'a [u8]) -> &'a [u8] {
        &message[self.start..self.end]
    }
}

/// What is known of a head so far. Offsets are relative to the message's first byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head<S> {
    /// Where the line being read starts; once the head is complete, the head's length.
    line_start: usize,
    /// How far the line being read has been searched for its LF.
    searched: usize,
    start: Option<S>,
    header_lines: usize,
    content_length: Option<u64>,
    user_agent: Seen,
    /// Requests: `History` (E2).
    history: Seen,
    /// Responses: `Message_Id` (E2).
    message_id: Seen,
    /// Responses: `Datetime` (H2), which dates a replayed line (E3).
    datetime: Seen,
}

/// A header that may appear more than once: its first value, and whether a later one
/// disagreed.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    first: Option<Span>,
    conflict: bool,
}

impl Seen {
    fn record(&mut self, value: Span, message: &[u8]) {
        match self.first {
            Some(previous) if previous.of(message) != value.of(message) => self.conflict = true,
            Some(_) => {}
            None => self.first = Some(value),
        }
    }

    fn value<'a>(&self, message: &'a [u8]) -> HeaderValue<'a> {
        match (self.conflict, self.first) {
            (true, _) => HeaderValue::Conflicting,
            (false, Some(span)) => HeaderValue::Value(span.of(message)),
            (false, None) => HeaderValue::Missing,
        }
    }
}

impl<S: Copy> Head<S> {
    /// Reads the complete lines of `message` not read before. Returns the head's length once
    /// its empty line has been read.
    fn advance<K: Kind<Start = S>>(
        &mut self,
        message: &[u8],
        limits: &FrameLimits,
    ) -> Result<Option<usize>, FrameError> {
        loop {
            let Some(found) = find_lf(&message[self.searched..]) else {
                self.searched = message.len();
                if message.len() >= limits.max_head_bytes {
                    return Err(FrameError::HeadTooLarge {
                        limit: limits.max_head_bytes,
                    });
                }
                return Ok(None);
            };
            let lf = self.searched + found;
            let end = lf + 1;
            if end > limits.max_head_bytes {
                return Err(FrameError::HeadTooLarge {
                    limit: limits.max_head_bytes,
                });
            }
            let line_start = self.line_start;
            let line = strip_cr(&message[line_start..lf]);
            self.line_start = end;
            self.searched = end;
            if self.start.is_none() {
                self.start = Some(K::parse_start(line, line_start)?);
            } else if line.is_empty() {
                return Ok(Some(end));
            } else {
                self.header_lines += 1;
                if self.header_lines > limits.max_header_lines {
                    return Err(FrameError::TooManyHeaders {
                        limit: limits.max_header_lines,
                    });
                }
                self.header(line, line_start, message)?;
            }
        }
    }

    fn header(&mut self, line: &[u8], at: usize, message: &[u8]) -> Result<(), FrameError> {
        if matches!(line[0], b' ' | b'\t') {
            return Err(FrameError::ObsoleteLineFolding);
        }
        let colon = find_byte(line, b':').ok_or(FrameError::HeaderWithoutColon)?;
        let name = &line[..colon];
        // Branch-free over the name's bytes: names are short and almost always valid.
        let invalid = name
            .iter()
            .fold(false, |bad, &b| bad | !TOKEN[usize::from(b)]);
        if invalid {
            return Err(match name.iter().rposition(|&b| !is_ows(b)) {
                Some(last)
                    if last + 1 < name.len()
                        && name[..=last].iter().all(|&b| TOKEN[usize::from(b)]) =>
                {
                    FrameError::WhitespaceBeforeColon
                }
                _ => FrameError::BadHeaderName,
            });
        }
        if name.is_empty() {
            return Err(FrameError::BadHeaderName);
        }
        let raw = &line[colon + 1..];
        let leading = raw.iter().take_while(|&&b| is_ows(b)).count();
        let trailing = raw[leading..]
            .iter()
            .rev()
            .take_while(|&&b| is_ows(b))
            .count();
        let value = Span {
            start: at + colon + 1 + leading,
            end: at + line.len() - trailing,
        };
        // Values are not scanned for control bytes: unknown headers are ignored whole, and
        // those that are read are checked by what reads them (digits; S2.1's name rules; E2).
        let bytes = value.of(message);
        if header_name_is(name, b"content-length") {
            let length = parse_decimal(bytes).ok_or(FrameError::BadContentLength)?;
            match self.content_length {
                Some(previous) if previous != length => {
                    return Err(FrameError::ConflictingContentLength);
                }
                _ => self.content_length = Some(length),
            }
        } else if header_name_is(name, b"user-agent") {
            self.user_agent.record(value, message);
        } else if header_name_is(name, b"history") {
            self.history.record(value, message);
        } else if header_name_is(name, b"message-id") {
            self.message_id.record(value, message);
        } else if header_name_is(name, b"datetime") {
            self.datetime.record(value, message);
        }
        Ok(())
    }
}

/// The start line and message type of one direction. Sealed: requests and responses only.
pub trait Kind: sealed::Sealed {
    /// The parsed start line, as spans.
    type Start: Copy + Default + std::fmt::Debug;
    /// The decoded message.
    type Message<'a>;
    #[doc(hidden)]
    fn parse_start(line: &[u8], at: usize) -> Result<Self::Start, FrameError>;
    #[doc(hidden)]
    fn assemble<'a>(
        message: &'a [u8],
        head: &Head<Self::Start>,
        head_len: usize,
    ) -> Self::Message<'a>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::RequestKind {}
    impl Sealed for super::ResponseKind {}
}

/// Marker for [`RequestDecoder`].
#[derive(Debug)]
pub struct RequestKind;

/// Marker for [`ResponseDecoder`].
#[derive(Debug)]
pub struct ResponseKind;

/// A request line: three spans.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLine([Span; 3]);

/// A status line: version, code and reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLine {
    version: Span,
    code: u16,
    reason: Span,
}

impl Kind for RequestKind {
    type Start = RequestLine;
    type Message<'a> = Request<'a>;

    fn parse_start(line: &[u8], at: usize) -> Result<RequestLine, FrameError> {
        // W8: exactly three non-empty tokens, single spaces, no control bytes anywhere.
        let mut spans = [Span::default(); 3];
        let mut token = 0;
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b' ' {
                if i == start || token == 2 {
                    return Err(FrameError::BadStartLine);
                }
                spans[token] = Span {
                    start: at + start,
                    end: at + i,
                };
                token += 1;
                start = i + 1;
            } else if is_control(b) {
                return Err(FrameError::BadStartLine);
            }
        }
        if token != 2 || start == line.len() {
            return Err(FrameError::BadStartLine);
        }
        spans[2] = Span {
            start: at + start,
            end: at + line.len(),
        };
        Ok(RequestLine(spans))
    }

    fn assemble<'a>(message: &'a [u8], head: &Head<RequestLine>, head_len: usize) -> Request<'a> {
        let RequestLine([method, target, version]) = head.start.unwrap_or_default();
        Request {
            method_token: method.of(message),
            target: target.of(message),
            version: version.of(message),
            user_agent: head.user_agent.value(message),
            history: head.history.value(message),
            body: &message[head_len..],
        }
    }
}

impl Kind for ResponseKind {
    type Start = StatusLine;
    type Message<'a> = Response<'a>;

    fn parse_start(line: &[u8], at: usize) -> Result<StatusLine, FrameError> {
        let bad = FrameError::BadStatusLine;
        if line.iter().any(|&b| b != b'\t' && is_control(b)) {
            return Err(bad);
        }
        let space = line.iter().position(|&b| b == b' ').ok_or(bad.clone())?;
        let rest = &line[space + 1..];
        let digits = rest.get(..3).ok_or(bad.clone())?;
        if space == 0 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        let code = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let reason_start = match rest.get(3) {
            None => line.len(),
            Some(b' ') => space + 5,
            Some(_) => return Err(bad),
        };
        Ok(StatusLine {
            version: Span {
                start: at,
                end: at + space,
            },
            code,
            reason: Span {
                start: at + reason_start,
                end: at + line.len(),
            },
        })
    }

    fn assemble<'a>(message: &'a [u8], head: &Head<StatusLine>, head_len: usize) -> Response<'a> {
        let line = head.start.unwrap_or_default();
        Response {
            version: line.version.of(message),
            code: line.code,
            reason: line.reason.of(message),
            message_id: head.message_id.value(message).single(),
            datetime: head.datetime.value(message).single(),
            body: &message[head_len..],
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Finds the first LF, a word at a time: the head scan is the decoder's hot loop.
fn find_lf(haystack: &[u8]) -> Option<usize> {
    find_byte(haystack, b'\n')
}

/// Finds the first `needle`, eight bytes at a time (the classic "has zero byte" test).
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    let pattern = LO * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
        let x = word ^ pattern;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| offset + i)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// RFC 9110 `tchar`, as a table: header names are checked a byte at a time.
static TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// W3: header names compare ASCII case-insensitively, with `_` and `-` equal.
/// `expected` is lowercase with `-`.
fn header_name_is(name: &[u8], expected: &[u8]) -> bool {
    name.len() == expected.len()
        && name.iter().zip(expected).all(|(&a, &e)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == e
        })
}

/// W4: plain decimal digits only, no sign, no spaces, fits in 64 bits.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        decoder: &mut RequestDecoder,
        mut input: &[u8],
    ) -> Vec<Result<String, FrameError>> {
        let mut out = Vec::new();
        loop {
            let (used, progress) = decoder.decode(input);
            input = &input[used..];
            match progress {
                Progress::NeedMore => return out,
                Progress::Message(m) => out.push(Ok(format!(
                    "{} {} {:?} {:?}",
                    String::from_utf8_lossy(m.method_token),
                    String::from_utf8_lossy(m.version),
                    m.user_agent,
                    String::from_utf8_lossy(m.body)
                ))),
                Progress::Error(e) => out.push(Err(e)),
            }
        }
    }

    #[test]
    fn w5_an_announced_body_reserves_nothing_until_it_arrives() {
        let limits = FrameLimits {
            max_body_bytes: 1 << 30,
            ..FrameLimits::default()
        };
        let mut decoder = RequestDecoder::new(limits);
        let head = b"POST / HTTP/1.1\nContent_Length: 1000000000\n\nab";
        assert_eq!(decode_all(&mut decoder, head), []);
        assert!(decoder.buf.capacity() < 4096, "{}", decoder.buf.capacity());
        // Trickled in, the body grows the buffer by doubling, never past the message.
        let mut decoder = RequestDecoder::new(limits);
        let head = b"POST / HTTP/1.1\nContent_Length: 100000\n\n";
        assert_eq!(decode_all(&mut decoder, head), []);
        for _ in 0..99_999 {
            assert_eq!(decode_all(&mut decoder, b"x"), []);
        }
        assert!(decoder.buf.capacity() <= head.len() + 100_000);
        assert_eq!(decode_all(&mut decoder, b"x").len(), 1);
    }

    #[test]
    fn w5_a_body_limit_near_the_address_space_does_not_overflow() {
        let limits = FrameLimits {
            max_body_bytes: usize::MAX,
            ..FrameLimits::default()
        };
        let mut decoder = RequestDecoder::new(limits);
        let request = format!("POST / HTTP/1.1\nContent_Length: {}\n\n", usize::MAX);
        let outcome = decode_all(&mut decoder, request.as_bytes());
        assert!(
            matches!(outcome[..], [Err(FrameError::BodyTooLarge { .. })]),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_cr_ending_one_chunk_is_forgotten_once_the_next_message_is_read() {
        // A blank line split after its CR, then a whole message in the next chunk, then the
        // start of another: the remembered CR must not outlive the message and reject the
        // next start line.
        let mut decoder = RequestDecoder::new(FrameLimits::default());
        let mut out = Vec::new();
        for chunk in [&b"\r"[..], b"\nGET / HTTP/1.1\n\nPO", b"ST / HTTP/1.1\n\n"] {
            decoder.decode_each(chunk, |decoded| {
                out.push(decoded.map(|m| m.method_token.len()))
            });
        }
        assert_eq!(out, [Ok(3), Ok(4)]);
    }

    #[test]
    fn find_lf_agrees_with_a_plain_search() {
        let text = b"0123456789abcdef\nxyz\n";
        for start in 0..text.len() {
            let expected = text[start..].iter().position(|&b| b == b'\n');
            assert_eq!(find_lf(&text[start..]), expected, "from {start}");
        }
        assert_eq!(
            find_lf(b"\x8a\x0a"),
            Some(1),
            "high bytes must not be mistaken for LF"
        );
    }

    #[test]
    fn a_message_split_at_every_byte_decodes_the_same() {
        let stream = b"\r\nPOST / HTTP/1.1\r\nUser_Agent: a\r\nContent-Length: 3\r\n\r\nhi\nGET / HTTP/1.1\n\n";
        let whole = decode_all(&mut RequestDecoder::new(FrameLimits::default()), stream);
        assert_eq!(whole.len(), 2);
        let mut decoder = RequestDecoder::new(FrameLimits::default());
        let mut split = Vec::new();
        for byte in stream.chunks(1) {
            split.extend(decode_all(&mut decoder, byte));
        }
        assert_eq!(whole, split);
    }

    #[test]
    fn the_head_limit_is_enforced_without_buffering_past_it() {
        let limits = FrameLimits {
            max_head_bytes: 32,
            ..FrameLimits::default()
        };
        let mut decoder = RequestDecoder::new(limits);
        let head = b"GET / HTTP/1.1\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut failed = false;
        for byte in head.chunks(1) {
            let (_, progress) = decoder.decode(byte);
            failed |= matches!(
                progress,
                Progress::Error(FrameError::HeadTooLarge { limit: 32 })
            );
            assert!(decoder.buffered() <= 32);
        }
        assert!(failed);
    }

    #[test]
    fn a_head_of_exactly_the_limit_is_accepted() {
        let head = b"GET / HTTP/1.1\nA: b\n\n";
        let limits = FrameLimits {
            max_head_bytes: head.len(),
            ..FrameLimits::default()
        };
        let out = decode_all(&mut RequestDecoder::new(limits), head);
        assert!(out[0].is_ok(), "{out:?}");
        let limits = FrameLimits {
            max_head_bytes: head.len() - 1,
            ..FrameLimits::default()
        };
        let out = decode_all(&mut RequestDecoder::new(limits), head);
        assert_eq!(
            out,
            [Err(FrameError::HeadTooLarge {
                limit: head.len() - 1
            })]
        );
    }

    #[test]
    fn status_lines_keep_reasons_with_spaces() {
        let mut decoder = ResponseDecoder::new(FrameLimits::for_responses());
        let (_, progress) =
            decoder.decode(b"HTTP/1.1 401 User Name Exist\nContent_Length: 2\n\nno");
        let Progress::Message(response) = progress else {
            panic!("{progress:?}")
        };
        assert_eq!(
            (response.code, response.reason, response.body),
            (401, &b"User Name Exist"[..], &b"no"[..])
        );
    }
}
