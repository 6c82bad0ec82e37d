//! The ChatHTTP/1.1 wire format (PROTOCOL.md, clauses W, R and H).
//!
//! * [`decode`]: incremental decoders for requests and responses. Feed bytes as they
//!   arrive, in any split; get complete messages that borrow their bytes, or a typed
//!   [`FrameError`](crate::error::FrameError).
//! * [`encode`]: writers for the exact byte layout of the seed's examples (LF line ends,
//!   the seven response headers and the ten request headers, in order).
//! * [`body`]: the H3 bodies (chat line, join and leave notices, member list), written and
//!   parsed in one place.
//! * The message types themselves, below.

pub mod body;
pub mod decode;
pub mod encode;

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

pub use decode::{Progress, RequestDecoder, ResponseDecoder};

/// A request method (R1). Methods are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `ADD`: join the room.
    Add,
    /// `POST`: say something to everyone.
    Post,
    /// `GET`: list the members.
    Get,
    /// `DELETE`: leave the room.
    Delete,
}

impl Method {
    /// Recognises a method token; `None` for anything else (answered with `405`).
    pub fn from_token(token: &[u8]) -> Option<Self> {
        match token {
            b"ADD" => Some(Self::Add),
            b"POST" => Some(Self::Post),
            b"GET" => Some(Self::Get),
            b"DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The token as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Post => "POST",
            Self::Get => "GET",
            Self::Delete => "DELETE",
        }
    }
}

/// The seven headers every response carries, in this order and spelled exactly so (H2), so
/// that a peer reading them by position, as the original client does, still works.
pub const RESPONSE_HEADER_NAMES: [&str; 7] = [
    "Datetime",
    "Developer",
    "Server",
    "Content_Length",
    "Content_Language",
    "Content_Encoding",
    "Content_Type",
];

/// The only protocol version spoken (R1, H1).
pub const VERSION: &[u8] = b"HTTP/1.1";

/// A response status: code and reason phrase (H1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    code: u16,
    reason: &'static str,
}

impl Status {
    /// `200 OK`.
    pub const OK: Self = Self::new(200, "OK");
    /// `202 Accept`: the greeting (S1). The seed spells it so.
    pub const ACCEPT: Self = Self::new(202, "Accept");
    /// `400 Bad Request`.
    pub const BAD_REQUEST: Self = Self::new(400, "Bad Request");
    /// `401 User Name Exist`: the name is taken (S2.2). The seed's reason, kept.
    pub const USER_NAME_EXIST: Self = Self::new(401, "User Name Exist");
    /// `403 Forbidden`: a command in the wrong state (POST before ADD, a second ADD).
    pub const FORBIDDEN: Self = Self::new(403, "Forbidden");
    /// `405 Method Not Allowed`: an unknown method.
    pub const METHOD_NOT_ALLOWED: Self = Self::new(405, "Method Not Allowed");
    /// `408 Request Timeout`: a request not completed within the request timeout (S9).
    pub const REQUEST_TIMEOUT: Self = Self::new(408, "Request Timeout");
    /// `429 Too Many Requests`: the connection's flood-control bucket is empty (S12).
    pub const TOO_MANY_REQUESTS: Self = Self::new(429, "Too Many Requests");
    /// `500 Internal Server Error`. Kept from the seed; this server does not send it.
    pub const INTERNAL_SERVER_ERROR: Self = Self::new(500, "Internal Server Error");
    /// `503 Service Unavailable`: the room is full (S10) or shutting down (S11).
    pub const SERVICE_UNAVAILABLE: Self = Self::new(503, "Service Unavailable");

    const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.code
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        self.reason
    }
}

/// What a message said in one header that it may repeat (`User_Agent`, `History`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    /// No such header.
    Missing,
    /// One value (or several equal ones), trimmed.
    Value(&'a [u8]),
    /// Two of them that disagree (a `400`).
    Conflicting,
}

impl<'a> HeaderValue<'a> {
    /// The value, if there is exactly one.
    pub fn single(self) -> Option<&'a [u8]> {
        match self {
            Self::Value(value) => Some(value),
            Self::Missing | Self::Conflicting => None,
        }
    }
}

/// A request, as decoded. It borrows its bytes from the decoder or from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method token as sent; see [`Request::method`].
    pub method_token: &'a [u8],
    /// The URI token (ignored by the single-room server).
    pub target: &'a [u8],
    /// The version token.
    pub version: &'a [u8],
    /// The `User_Agent` header.
    pub user_agent: HeaderValue<'a>,
    /// The `History` header (E2), read on `ADD`.
    pub history: HeaderValue<'a>,
    /// Exactly `Content_Length` bytes.
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The method, if it is one of the four.
    pub fn method(&self) -> Option<Method> {
        Method::from_token(self.method_token)
    }
}

/// A response, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The version token.
    pub version: &'a [u8],
    /// The status code.
    pub code: u16,
    /// The reason phrase (may hold spaces).
    pub reason: &'a [u8],
    /// The `Message_Id` header of a chat line sent to a history-aware connection (E2).
    pub message_id: Option<&'a [u8]>,
    /// The `Datetime` header (H2): when a replayed line was said (E3).
    pub datetime: Option<&'a [u8]>,
    /// Exactly `Content_Length` bytes.
    pub body: &'a [u8],
}

/// One encoded message, immutable and cheap to clone: a broadcast is encoded once and the
/// same bytes go to every recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Wraps encoded bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The bytes, for hosts that queue [`Bytes`] (vectored writes, for example).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:?})", String::from_utf8_lossy(&self.0))
    }
}
