//! Writers for the exact layout of the seed's messages: LF line ends (W2), the seven
//! response headers (H2) and the ten request headers (R2), each in the seed's order.

use super::{Method, Status};

/// The header values a server puts on every response besides the per-frame ones.
#[derive(Debug, Clone, Copy)]
pub struct ResponseFields<'a> {
    /// `Datetime`, as `%Y-%m-%d %H:%M:%S` (H2).
    pub datetime: &'a [u8; 19],
    /// `Developer`.
    pub developer: &'a str,
    /// `Server`.
    pub server: &'a str,
}

/// Appends one response to `out`.
pub fn write_response(out: &mut Vec<u8>, status: Status, fields: &ResponseFields<'_>, body: &[u8]) {
    write_response_with_id(out, status, fields, None, body);
}

/// Appends one response to `out`; with `message_id`, an eighth header `Message_Id` follows
/// the seven (E2: a chat line for a history-aware connection).
pub fn write_response_with_id(
    out: &mut Vec<u8>,
    status: Status,
    fields: &ResponseFields<'_>,
    message_id: Option<&str>,
    body: &[u8],
) {
    let id_len = message_id.map_or(0, |id| id.len() + 13);
    out.reserve(160 + fields.developer.len() + fields.server.len() + id_len + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status.code()));
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\nDatetime: ");
    out.extend_from_slice(fields.datetime);
    out.extend_from_slice(b"\nDeveloper: ");
    out.extend_from_slice(fields.developer.as_bytes());
    out.extend_from_slice(b"\nServer: ");
    out.extend_from_slice(fields.server.as_bytes());
    out.extend_from_slice(b"\nContent_Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n");
    if let Some(id) = message_id {
        out.extend_from_slice(b"Message_Id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
}

/// The header values a client puts on every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFields<'a> {
    /// The URI, which the original client sets to the server's host.
    pub host: &'a str,
    /// `Datetime`, as `%Y-%m-%d %H:%M:%S`.
    pub datetime: &'a [u8; 19],
    /// `User_Agent`: the user's name.
    pub user_agent: &'a str,
}

/// Appends one request to `out`, with the ten headers of the seed's examples.
pub fn write_request(out: &mut Vec<u8>, method: Method, fields: &RequestFields<'_>, body: &[u8]) {
    write_request_with_history(out, method, fields, None, body);
}

/// Appends one request to `out`; with `history`, an eleventh header `History` follows the
/// ten (E2: an `ADD` that asks for history).
pub fn write_request_with_history(
    out: &mut Vec<u8>,
    method: Method,
    fields: &RequestFields<'_>,
    history: Option<&str>,
    body: &[u8],
) {
    let extra = history.map_or(0, |h| h.len() + 10);
    out.reserve(220 + 2 * fields.host.len() + fields.user_agent.len() + extra + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(fields.host.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\nDatetime: ");
    out.extend_from_slice(fields.datetime);
    out.extend_from_slice(b"\nUser_Agent: ");
    out.extend_from_slice(fields.user_agent.as_bytes());
    out.extend_from_slice(b"\nHost: ");
    out.extend_from_slice(fields.host.as_bytes());
    out.extend_from_slice(
        b"\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: ",
    );
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n");
    if let Some(history) = history {
        out.extend_from_slice(b"History: ");
        out.extend_from_slice(history.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_chat_response_byte_for_byte() {
        let mut out = Vec::new();
        let fields = ResponseFields {
            datetime: b"2015-11-29 10:17:48",
            developer: "Soros_Liu",
            server: "Python Socket Server",
        };
        write_response(
            &mut out,
            Status::OK,
            &fields,
            b"[ Alice ] : Hello, everyone!\n",
        );
        let expected = "HTTP/1.1 200 OK\nDatetime: 2015-11-29 10:17:48\nDeveloper: Soros_Liu\n\
            Server: Python Socket Server\nContent_Length: 29\nContent_Language: en\n\
            Content_Encoding: utf-8\nContent_Type: text\n\n[ Alice ] : Hello, everyone!\n";
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
    }

    #[test]
    fn a_message_id_is_the_eighth_header() {
        let mut out = Vec::new();
        let fields = ResponseFields {
            datetime: b"2015-11-29 10:17:48",
            developer: "d",
            server: "s",
        };
        write_response_with_id(&mut out, Status::OK, &fields, Some("e1.7"), b"[ a ] : hi\n");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.ends_with("Content_Type: text\nMessage_Id: e1.7\n\n[ a ] : hi\n"),
            "{text}"
        );
    }

    #[test]
    fn the_seed_post_request_byte_for_byte() {
        let mut out = Vec::new();
        let fields = RequestFields {
            host: "127.0.0.1",
            datetime: b"2015-11-29 10:17:48",
            user_agent: "Alice",
        };
        write_request(&mut out, Method::Post, &fields, b"Hello, everyone!\n");
        let expected = "POST 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:17:48\nUser_Agent: Alice\n\
            Host: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\n\
            Content_Length: 17\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n\
            Hello, everyone!\n";
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 65536, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
