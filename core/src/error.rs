//! Errors. A peer's fault is never an `Err` of the machines' inputs: it becomes a response
//! frame and maybe a close (see [`server`](crate::server)). These types name *what* was wrong,
//! so that the response body can say it in one line.

use thiserror::Error;

/// Why a byte stream could not be framed into messages (W4, W5, W8).
///
/// After one of these the stream has no reliable message boundary left: the server answers
/// `400 Bad Request` with this text and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The start line is not three tokens separated by single spaces.
    #[error("malformed start line: expected METHOD SP URI SP VERSION")]
    BadStartLine,
    /// A response's status line is not `VERSION SP CODE SP REASON`.
    #[error("malformed status line: expected VERSION SP CODE SP REASON")]
    BadStatusLine,
    /// A header line has no colon.
    #[error("malformed header line: no colon")]
    HeaderWithoutColon,
    /// A header line has an empty name or a name with characters a token may not hold.
    #[error("malformed header line: invalid header name")]
    BadHeaderName,
    /// Whitespace between a header's name and its colon.
    #[error("malformed header line: whitespace before the colon")]
    WhitespaceBeforeColon,
    /// A header line that starts with whitespace (obsolete line folding).
    #[error("malformed header line: continuation lines are not allowed")]
    ObsoleteLineFolding,
    /// `Content_Length` is not plain decimal digits, or does not fit in 64 bits.
    #[error("invalid Content_Length: not a plain decimal number")]
    BadContentLength,
    /// Two `Content_Length` headers disagree.
    #[error("conflicting Content_Length headers")]
    ConflictingContentLength,
    /// The head (start line, headers, line ends) passed its byte limit.
    #[error("request head larger than {limit} bytes")]
    HeadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header lines than allowed.
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The announced body is larger than allowed.
    #[error("body of {length} bytes is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The announced `Content_Length`.
        length: u64,
        /// The configured limit.
        limit: usize,
    },
}

/// Why a `User_Agent` value is not a valid user name (S2.1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// `ADD` without a `User_Agent` header.
    #[error("ADD needs a User_Agent header carrying the user name")]
    Missing,
    /// Nothing left after trimming.
    #[error("user name is empty")]
    Empty,
    /// More than 32 scalar values.
    #[error("user name has {0} characters; at most 32 are allowed")]
    TooLong(usize),
    /// Contains Unicode whitespace.
    #[error("user name contains whitespace (U+{:04X})", *.0 as u32)]
    Whitespace(char),
    /// Contains a control character.
    #[error("user name contains a control character (U+{:04X})", *.0 as u32)]
    Control(char),
    /// Contains a bidi control, which would reorder how a chat line reads.
    #[error("user name contains a bidi control (U+{:04X}), which would reorder the line", *.0 as u32)]
    Format(char),
    /// Contains a code point the PRECIS Nickname profile disallows: invisible
    /// (default-ignorable) characters such as zero-width spaces, Hangul fillers, the combining
    /// grapheme joiner and variation selectors, old Hangul jamo, or a joiner outside its
    /// context.
    #[error("user name contains U+{:04X}, which names may not hold (invisible or look-alike)", *.0 as u32)]
    Disallowed(char),
    /// Contains a code point the PRECIS tables do not know (newer than their Unicode version).
    #[error("user name contains U+{:04X}, which is not assigned in the Unicode tables names are checked with", *.0 as u32)]
    Unassigned(char),
    /// Starts with a combining mark, which would draw onto whatever stands before the name.
    #[error("user name starts with a combining mark (U+{:04X})", *.0 as u32)]
    LeadingMark(char),
    /// The PRECIS profile refused the value for no one code point.
    #[error("user name is not valid under the PRECIS Nickname profile")]
    Invalid,
    /// Contains `[`, `]` or `:`, which would make chat lines ambiguous.
    #[error("user name contains '{0}', which is reserved")]
    Reserved(char),
    /// The value is not UTF-8.
    #[error("user name is not valid UTF-8")]
    NotUtf8,
}

/// Why a `History` header, or an epoch the host chose, cannot be used (E1, E2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The header is neither a count nor `after ID`.
    #[error("the History header must be a number of messages or \"after ID\"")]
    BadAsk,
    /// Two `History` headers that disagree.
    #[error("two History headers that disagree")]
    Conflicting,
    /// An epoch must be 1 to 32 ASCII letters, digits, `-` or `_`.
    #[error("an epoch must be 1 to 32 ASCII letters, digits, '-' or '_'")]
    BadEpoch,
}

/// A call the host made that the machine's state does not allow. Never caused by a peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The client session is not connected, or has already left.
    #[error("the session is not connected")]
    NotConnected,
    /// `join` on a session that has joined or is joining.
    #[error("the session has already joined or is joining")]
    AlreadyJoined,
    /// `say` or `leave` before joining.
    #[error("the session has not joined yet")]
    NotJoined,
    /// A message with nothing in it.
    #[error("the message is empty")]
    EmptyMessage,
    /// `History: after ID` with an id no server gave: empty, too long, or not visible ASCII.
    #[error("not a message id: 1 to 64 visible ASCII characters")]
    InvalidHistoryId,
    /// A name the server would refuse (checked locally to save a round trip).
    #[error(transparent)]
    InvalidName(#[from] NameError),
}
