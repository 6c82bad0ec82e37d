//! The ChatHTTP wire as the load tools need it: requests written straight into an output
//! buffer, responses framed in place without copying, `chat-bench`'s message text
//! `B<sender> <seq> <send-time-ns>`, and response bodies read with the core's one body
//! parser ([`body::parse`]).
//!
//! Framing is deliberately not `chathttp_core::wire::decode`: a load generator must stay
//! cheaper per delivery than the server it measures, so [`parse_frame`] only finds frame
//! boundaries and the body, and reads no header but `Content_Length`.

use std::io::Write as _;

use chathttp_core::Method;
pub use chathttp_core::wire::body::{self, Body};
use chathttp_core::wire::encode::{self, RequestFields};
use std::sync::LazyLock;

use memchr::memmem::Finder;
use memchr::{memchr, memchr_iter, memchr2_iter};

/// The request URI and `Host`, as the original client sends them.
const HOST: &str = "127.0.0.1";

/// Which headers a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers<'a> {
    /// The ten headers of the original client (PROTOCOL.md R2), with this `Datetime`.
    Full { datetime: &'a [u8; 19] },
    /// Only `User_Agent` and `Content_Length`.
    Min,
}

/// Appends one request signed with `name` (the server only uses it on `ADD`).
pub fn write_request(
    out: &mut Vec<u8>,
    method: Method,
    name: &str,
    body: &[u8],
    headers: Headers<'_>,
) {
    match headers {
        Headers::Full { datetime } => {
            let fields = RequestFields {
                host: HOST,
                datetime,
                user_agent: name,
            };
            encode::write_request(out, method, &fields, body);
        }
        Headers::Min => {
            // Writing into a Vec cannot fail.
            let _ = write!(
                out,
                "{} {HOST} HTTP/1.1\nUser_Agent: {name}\nContent_Length: {}\n\n",
                method.as_str(),
                body.len()
            );
            out.extend_from_slice(body);
        }
    }
}

/// One request with the ten headers, dated now.
pub fn request_bytes(method: Method, name: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let datetime = datetime_now();
    write_request(
        &mut out,
        method,
        name,
        body,
        Headers::Full {
            datetime: &datetime,
        },
    );
    out
}

/// The local time as `%Y-%m-%d %H:%M:%S`, for the `Datetime` request header (which servers
/// ignore; it is sent so that requests look like the original client's).
pub fn datetime_now() -> [u8; 19] {
    let mut datetime = [b'0'; 19];
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    if now.len() == datetime.len() {
        datetime.copy_from_slice(now.as_bytes());
    }
    datetime
}

/// Appends the message text `B<sender> <seq> <send_ns> `, padded with `x` to `payload`
/// bytes (longer if the numbers alone need more).
pub fn write_payload(out: &mut Vec<u8>, sender: usize, seq: u64, send_ns: u64, payload: usize) {
    let start = out.len();
    let _ = write!(out, "B{sender} {seq} {send_ns} ");
    let used = out.len() - start;
    if used < payload {
        out.resize(out.len() + payload - used, b'x');
    }
}

/// A message text parsed back: (sender, seq, send time in ns).
pub fn parse_payload(text: &[u8]) -> Option<(u64, u64, u64)> {
    let rest = text.strip_prefix(b"B")?;
    let (sender, rest) = leading_u64(rest)?;
    let (seq, rest) = leading_u64(rest.strip_prefix(b" ")?)?;
    let (send_ns, _) = leading_u64(rest.strip_prefix(b" ")?)?;
    Some((sender, seq, send_ns))
}

/// The decimal number at the front of `b` and what follows it.
fn leading_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let v = b[..digits]
        .iter()
        .fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
    Some((v, &b[digits..]))
}

/// A response head larger than this is treated as a protocol error rather than buffered.
const MAX_HEAD: usize = 64 * 1024;
/// A response body larger than this is treated as a protocol error rather than buffered.
const MAX_BODY: usize = 16 << 20;

/// The result of looking for one response at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// The bytes cannot be a ChatHTTP response; the connection is no use any more.
    Bad(String),
    /// A whole response: its status code, where its body lies, and where it ends
    /// (`body_end` is also the length of the frame).
    Ok {
        status: u16,
        body_start: usize,
        body_end: usize,
    },
}

/// Frames one response at the front of `buf` (PROTOCOL.md W1, W2, W4: LF or CRLF line
/// ends, `Content_Length` spelled with `_` or `-` in any case, blank lines before the
/// status line skipped).
pub fn parse_frame(buf: &[u8]) -> Frame {
    parse_our_frame(buf).unwrap_or_else(|| parse_any_frame(buf))
}

/// The end of a head with LF line ends.
static HEAD_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
/// `Content_Length` as this project's servers spell it.
static OUR_LENGTH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\nContent_Length: "));

/// The longest head [`parse_our_frame`] takes; longer ones go to the general parser.
const OUR_MAX_HEAD: usize = 512;

/// [`parse_frame`] for a whole frame as this project's servers write it: LF line ends, no
/// blank line first, `Content_Length: N` once. Two vectorised searches instead of one per
/// header line, which kept the generator slower per delivery than the server it measures;
/// `None` for anything else (a partial frame, CRLF, another spelling), which the general
/// parser then frames.
fn parse_our_frame(buf: &[u8]) -> Option<Frame> {
    let head_end = HEAD_END.find(&buf[..buf.len().min(OUR_MAX_HEAD)])?;
    let head = &buf[..=head_end];
    let status = match head.strip_prefix(b"HTTP/1.1 ").and_then(leading_u64) {
        Some((code, _)) if (100..1000).contains(&code) => code as u16,
        _ => return None,
    };
    if memchr(b'\r', head).is_some() {
        return None;
    }
    // One `length` in any case (W3: so one header that could be the length), or the
    // general parser decides, and finds conflicts. Every spelling has a `g` at its fourth
    // letter, and a head has few.
    let lengths = memchr2_iter(b'g', b'G', head)
        .filter(|&g| {
            g >= 3
                && head
                    .get(g - 3..g + 3)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"length"))
        })
        .count();
    if lengths != 1 {
        return None;
    }
    let at = OUR_LENGTH.find(head)? + b"\nContent_Length: ".len();
    let line_end = at + memchr(b'\n', &head[at..])?;
    let length = match leading_u64(&head[at..line_end]) {
        Some((v, rest)) if rest.is_empty() && v as usize <= MAX_BODY => v as usize,
        _ => return None,
    };
    let body_start = head_end + 2;
    let body_end = body_start + length;
    Some(if buf.len() < body_end {
        Frame::Incomplete
    } else {
        Frame::Ok {
            status,
            body_start,
            body_end,
        }
    })
}

/// [`parse_frame`] for any response the protocol allows.
fn parse_any_frame(buf: &[u8]) -> Frame {
    let start = buf
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .count();
    let head = &buf[start..];
    // One iterator over the line ends of the whole head: far cheaper than a memchr call
    // per (short) header line.
    let mut line_ends = memchr_iter(b'\n', head);
    let Some(eol) = line_ends.next() else {
        return incomplete_or(head.len() > MAX_HEAD, "status line too long");
    };
    let line = &head[..eol];
    let status = match line.strip_prefix(b"HTTP/1.1 ").and_then(leading_u64) {
        Some((code, _)) if (100..1000).contains(&code) => code as u16,
        _ => {
            let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
            return Frame::Bad(format!("bad status line {shown:?}"));
        }
    };
    let mut pos = eol + 1;
    let mut content_length: Option<usize> = None;
    loop {
        let Some(eol) = line_ends.next() else {
            return incomplete_or(head.len() > MAX_HEAD, "response head too long");
        };
        let mut line = &head[pos..eol];
        pos = eol + 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        // Only a line starting with 'c' or 'C' can be Content_Length; the empty line ends
        // the head.
        match line.first() {
            None => break,
            Some(&c) if c | 0x20 == b'c' => {}
            Some(_) => continue,
        }
        let Some(colon) = memchr(b':', line) else {
            continue;
        };
        if !is_content_length(&line[..colon]) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        match leading_u64(value) {
            Some((v, rest)) if rest.is_empty() && v as usize <= MAX_BODY => {
                if content_length.is_some_and(|old| old != v as usize) {
                    return Frame::Bad("conflicting Content_Length headers".into());
                }
                content_length = Some(v as usize);
            }
            _ => return Frame::Bad("bad Content_Length".into()),
        }
    }
    let body_start = start + pos;
    let body_end = body_start + content_length.unwrap_or(0);
    if buf.len() < body_end {
        return Frame::Incomplete;
    }
    Frame::Ok {
        status,
        body_start,
        body_end,
    }
}

fn incomplete_or(too_long: bool, why: &str) -> Frame {
    if too_long {
        Frame::Bad(why.into())
    } else {
        Frame::Incomplete
    }
}

/// `Content_Length`, compared ASCII case-insensitively with `-` equal to `_` (W3).
fn is_content_length(name: &[u8]) -> bool {
    const CL: &[u8] = b"content_length";
    let name = name.trim_ascii();
    name.len() == CL.len()
        && name.iter().zip(CL).all(|(&a, &b)| {
            let a = a.to_ascii_lowercase();
            (if a == b'-' { b'_' } else { a }) == b
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\nDatetime: 2015-11-29 10:17:34\nDeveloper: x\nServer: y\n\
             Content_Length: {}\nContent_Language: en\nContent_Encoding: utf-8\n\
             Content_Type: text\n\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn frames_a_response() {
        let r = response("200 OK", "[ b1 ] : B1 7 123 xx\n");
        let Frame::Ok {
            status,
            body_start,
            body_end,
        } = parse_frame(&r)
        else {
            panic!("not framed")
        };
        assert_eq!(status, 200);
        assert_eq!(body_end, r.len());
        let body = &r[body_start..body_end];
        assert_eq!(
            body::parse(body),
            Body::Chat {
                name: b"b1",
                text: b"B1 7 123 xx"
            }
        );
        assert_eq!(parse_payload(b"B1 7 123 xx"), Some((1, 7, 123)));
    }

    #[test]
    fn framing_does_not_depend_on_the_split() {
        let mut stream = response("202 Accept", "hello\n");
        stream.extend(b"\r\n");
        stream.extend(response("200 OK", "b2 has just entered the chat room...\n"));
        stream.extend(response("200 OK", ""));
        for cut in 0..stream.len() {
            // Feed the first `cut` bytes, then everything: frames come out whole or not at all.
            let mut pos = 0;
            let mut frames = Vec::new();
            for end in [cut, stream.len()] {
                while let Frame::Ok { body_end, .. } = parse_frame(&stream[pos..end]) {
                    frames.push(body_end);
                    pos += body_end;
                }
            }
            assert_eq!(pos, stream.len(), "cut at {cut}");
            assert_eq!(frames.len(), 3, "cut at {cut}");
        }
    }

    #[test]
    fn crlf_and_spelling_of_content_length() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        assert_eq!(
            parse_frame(r),
            Frame::Ok {
                status: 200,
                body_start: r.len() - 3,
                body_end: r.len()
            }
        );
    }

    #[test]
    fn the_fast_path_frames_exactly_as_the_general_parser() {
        let ours = b"HTTP/1.1 200 OK\nDatetime: 2015-11-29 10:17:48\nServer: x\nContent_Length: 3\nContent_Language: en\n\nabc";
        let cases: [&[u8]; 8] = [
            ours,
            &ours[..ours.len() - 1],
            &ours[..20],
            b"HTTP/1.1 200 OK\nContent_Length: 1\ncontent-LENGTH: 2\n\nab",
            b"HTTP/1.1 200 OK\nContent_Length: 2\nContent_Length: 2\n\nab",
            b"HTTP/1.1 200 OK\nServer: length\nContent_Length: 2\n\nab",
            b"HTTP/1.1 200 OK\nContent_Length: 2 \n\nab",
            b"HTTP/1.1 200 OK\nContent_Length: 2x\n\nab",
        ];
        for case in cases {
            let fast = parse_our_frame(case);
            if let Some(fast) = fast {
                assert_eq!(
                    fast,
                    parse_any_frame(case),
                    "{:?}",
                    String::from_utf8_lossy(case)
                );
            }
        }
        assert!(
            parse_our_frame(ours).is_some(),
            "our frames take the fast path"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_frame(b"HELLO\n"), Frame::Bad(_)));
        assert!(matches!(
            parse_frame(b"HTTP/1.1 200 OK\nContent_Length: x\n\n"),
            Frame::Bad(_)
        ));
        assert!(matches!(
            parse_frame(b"HTTP/1.1 200 OK\nContent_Length: 1\nContent-Length: 2\n\n"),
            Frame::Bad(_)
        ));
    }

    #[test]
    fn payload_round_trip_and_padding() {
        let mut out = Vec::new();
        write_payload(&mut out, 3, 41, 987_654_321, 64);
        assert_eq!(out.len(), 64);
        assert_eq!(parse_payload(&out), Some((3, 41, 987_654_321)));
        assert_eq!(parse_payload(b"hello"), None);
        assert_eq!(parse_payload(b"B1 2"), None);
    }

    #[test]
    fn the_datetime_header_is_a_calendar_time() {
        let now = datetime_now();
        let text = std::str::from_utf8(&now).expect("ASCII");
        assert!(
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{text}"
        );
    }

    #[test]
    fn requests() {
        let mut out = Vec::new();
        write_request(&mut out, Method::Post, "b0", b"hi", Headers::Min);
        assert_eq!(
            out,
            b"POST 127.0.0.1 HTTP/1.1\nUser_Agent: b0\nContent_Length: 2\n\nhi"
        );
        out.clear();
        let datetime = b"2015-11-29 10:17:34";
        write_request(&mut out, Method::Add, "b0", b"", Headers::Full { datetime });
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.lines().count(), 12);
        assert!(text.ends_with("Content_Type: text\n\n"));
    }
}
