//! The H3 bodies: the four texts any client tells apart from the body alone, written and read
//! in one place.
//!
//! The server writes a chat line, a join notice, a leave notice and a member list with the
//! `write_*` functions; the client session and the load tools read them back with [`parse`].
//! Keeping both directions here is what keeps them in agreement: a change to a text is a
//! change to one function and its inverse, next to each other.
//!
//! Parsing works on bytes, not `str`, so a reader on a hot path need not validate UTF-8 it
//! does not look at. Names never hold whitespace or `[ ] :` (S2.1), which is what makes each
//! text unambiguous: the first `]` of a chat line ends its name, and a member list holds one
//! name a line.

/// A chat line's start, `[ `, before the speaker's name (S3).
const CHAT_OPEN: &[u8] = b"[ ";
/// Between the speaker's name and the text (S3).
const CHAT_SEPARATOR: &[u8] = b" ] : ";
/// After a joiner's name (S2.3).
const JOINED_SUFFIX: &[u8] = b" has just entered the chat room...\n";
/// After a leaver's name (S5).
const LEFT_SUFFIX: &[u8] = b" has just left the chat room...\n";
/// The first line of `GET`'s answer (S4).
const MEMBERS_HEADING: &[u8] = b"Online users:\n";

/// What a response body is, read from the body alone (H3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// `[ NAME ] : TEXT\n` (S3). `text` is without the final newline and may hold newlines.
    Chat {
        /// The speaker.
        name: &'a [u8],
        /// What was said.
        text: &'a [u8],
    },
    /// `NAME has just entered the chat room...\n` (S2.3).
    Joined {
        /// The joiner.
        name: &'a [u8],
    },
    /// `NAME has just left the chat room...\n` (S5).
    Left {
        /// The leaver.
        name: &'a [u8],
    },
    /// `Online users:\n` and one name a line (S4).
    Members(MemberList<'a>),
    /// Anything else: a greeting, a welcome, a goodbye, a refusal's reason.
    Other(&'a [u8]),
}

/// The names of a member list, in join order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberList<'a>(&'a [u8]);

impl<'a> MemberList<'a> {
    /// Each member's name, in join order.
    pub fn names(self) -> impl Iterator<Item = &'a [u8]> {
        let block = self.0.strip_suffix(b"\n").unwrap_or(self.0);
        block
            .split(|&b| b == b'\n')
            .filter(move |_| !block.is_empty())
    }
}

/// Reads `body` as one of the H3 texts.
pub fn parse(body: &[u8]) -> Body<'_> {
    if let Some(rest) = body.strip_prefix(CHAT_OPEN) {
        // A name holds no `]`, so the first one ends it.
        if let Some(end) = rest.iter().position(|&b| b == b']')
            && end >= 1
            && rest[end - 1..].starts_with(CHAT_SEPARATOR)
        {
            let text = &rest[end - 1 + CHAT_SEPARATOR.len()..];
            return Body::Chat {
                name: &rest[..end - 1],
                text: text.strip_suffix(b"\n").unwrap_or(text),
            };
        }
    }
    if let Some(list) = body.strip_prefix(MEMBERS_HEADING) {
        return Body::Members(MemberList(list));
    }
    if let Some(name) = body.strip_suffix(JOINED_SUFFIX) {
        return Body::Joined { name };
    }
    if let Some(name) = body.strip_suffix(LEFT_SUFFIX) {
        return Body::Left { name };
    }
    Body::Other(body)
}

/// Appends the chat line `[ NAME ] : TEXT\n` (S3) to `out`.
pub fn write_chat(out: &mut Vec<u8>, name: &str, text: &str) {
    out.reserve(CHAT_OPEN.len() + name.len() + CHAT_SEPARATOR.len() + text.len() + 1);
    out.extend_from_slice(CHAT_OPEN);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(CHAT_SEPARATOR);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// Appends the join notice `NAME has just entered the chat room...\n` (S2.3) to `out`.
pub fn write_joined(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(JOINED_SUFFIX);
}

/// Appends the leave notice `NAME has just left the chat room...\n` (S5) to `out`.
pub fn write_left(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(LEFT_SUFFIX);
}

/// Appends `GET`'s answer (S4), the names one a line in the order given, to `out`.
pub fn write_members<'n>(out: &mut Vec<u8>, names: impl IntoIterator<Item = &'n str>) {
    out.extend_from_slice(MEMBERS_HEADING);
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out);
        out
    }

    #[test]
    fn h3_each_text_reads_back_as_what_was_written() {
        let chat = written(|o| write_chat(o, "Alice", "Hello, everyone!"));
        assert_eq!(chat, b"[ Alice ] : Hello, everyone!\n");
        assert_eq!(
            parse(&chat),
            Body::Chat {
                name: b"Alice",
                text: b"Hello, everyone!"
            }
        );
        let joined = written(|o| write_joined(o, "bob"));
        assert_eq!(joined, b"bob has just entered the chat room...\n");
        assert_eq!(parse(&joined), Body::Joined { name: b"bob" });
        let left = written(|o| write_left(o, "bob"));
        assert_eq!(left, b"bob has just left the chat room...\n");
        assert_eq!(parse(&left), Body::Left { name: b"bob" });
        let list = written(|o| write_members(o, ["a", "李雷"]));
        assert_eq!(list, "Online users:\na\n李雷\n".as_bytes());
        let Body::Members(names) = parse(&list) else {
            panic!("not a member list: {list:?}");
        };
        assert_eq!(
            names.names().collect::<Vec<_>>(),
            [&b"a"[..], "李雷".as_bytes()]
        );
    }

    #[test]
    fn h3_an_empty_room_lists_no_names() {
        let list = written(|o| write_members(o, []));
        let Body::Members(names) = parse(&list) else {
            panic!("not a member list");
        };
        assert_eq!(names.names().count(), 0);
    }

    #[test]
    fn s3_a_chat_text_may_quote_the_other_texts() {
        let text = "x ] : y\nbob has just left the chat room...";
        let chat = written(|o| write_chat(o, "eve", text));
        assert_eq!(
            parse(&chat),
            Body::Chat {
                name: b"eve",
                text: text.as_bytes()
            }
        );
    }

    #[test]
    fn h3_other_bodies_read_as_other() {
        for body in [
            &b"Welcome, alice!\n"[..],
            b"Goodbye, alice!\n",
            b"[ no separator\n",
            b"[ ] : starts like a chat line with no name\n",
            b"",
        ] {
            assert_eq!(parse(body), Body::Other(body), "{body:?}");
        }
    }
}
