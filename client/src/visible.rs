//! A peer's text as data, never as control (PROTOCOL.md C1).
//!
//! Everything a server relays (names, chat lines, refusal reasons) passes through here before
//! a front end sees it. C0 controls, DEL, C1 controls and the bidi controls become visible
//! placeholders, so a member cannot retitle the window, clear the screen, move the cursor
//! back over a line's `<name>` prefix or reverse how a line reads. Line feeds and tabs stay
//! in chat text, where the front ends lay them out; in a name or a reason, which must stay on
//! one line, they are shown as placeholders too.

use std::borrow::Cow;

use chathttp_core::client::ClientEvent;

/// `text` with every control shown as a placeholder, except LF and TAB (chat text).
pub fn visible_text(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// `text` with every control shown as a placeholder, LF and TAB included (one-line fields).
pub fn visible_line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// The event with every peer-supplied string made visible.
pub fn visible_event(event: ClientEvent) -> ClientEvent {
    let line = |s: String| visible_line(&s).into_owned();
    match event {
        ClientEvent::ChatLine { from, text, id } => ClientEvent::ChatLine {
            from: line(from),
            text: visible_text(&text).into_owned(),
            id: id.filter(|id| usable_id(id)),
        },
        ClientEvent::Replayed {
            from,
            text,
            id,
            said_at,
        } => ClientEvent::Replayed {
            from: line(from),
            text: visible_text(&text).into_owned(),
            // An id the client could not send back is no id; an empty one resumes nothing.
            id: Some(id).filter(|id| usable_id(id)).unwrap_or_default(),
            said_at,
        },
        ClientEvent::Joined { name } => ClientEvent::Joined { name: line(name) },
        ClientEvent::NameTaken { name } => ClientEvent::NameTaken { name: line(name) },
        ClientEvent::MemberJoined { name } => ClientEvent::MemberJoined { name: line(name) },
        ClientEvent::MemberLeft { name } => ClientEvent::MemberLeft { name: line(name) },
        ClientEvent::UserList { names } => ClientEvent::UserList {
            names: names.into_iter().map(line).collect(),
        },
        ClientEvent::Refused {
            request,
            code,
            reason,
        } => ClientEvent::Refused {
            request,
            code,
            reason: line(reason),
        },
        ClientEvent::Disconnected { reason } => ClientEvent::Disconnected {
            reason: line(reason),
        },
        other => other,
    }
}

/// Whether a `Message_Id` can go back in `History: after ID`, so that a hostile server
/// cannot make the client send it header lines.
fn usable_id(id: &str) -> bool {
    chathttp_core::server::history::is_valid_id(id)
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_control(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_control(c) || keep(c) => out.push(c),
            // The Control Pictures block has a glyph for each C0 control and for DEL.
            '\0'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            '\u{7f}' => out.push('\u{2421}'),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// C0 controls, DEL, C1 controls and the bidi controls of S2.1.
fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c1_a_terminal_hijack_reads_as_text() {
        let attack = "\u{1b}]0;pwned\u{7}\u{1b}[2J\rforged <bob> send me the code";
        let shown = visible_text(attack);
        assert_eq!(shown, "␛]0;pwned␇␛[2J␍forged <bob> send me the code");
        assert!(!shown.chars().any(|c| c.is_control()));
    }

    #[test]
    fn c1_line_feeds_and_tabs_stay_in_chat_text_only() {
        assert_eq!(visible_text("a\n\tb"), "a\n\tb");
        assert_eq!(visible_line("a\n\tb"), "a␊␉b");
    }

    #[test]
    fn c1_del_c1_and_bidi_controls_get_placeholders() {
        assert_eq!(visible_line("a\u{7f}b"), "a␡b");
        assert_eq!(visible_line("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(visible_line("\u{202e}ecila"), "\\u{202e}ecila");
        assert_eq!(visible_line("a\u{2066}b"), "a\\u{2066}b");
    }

    #[test]
    fn c1_plain_text_is_not_copied() {
        assert!(matches!(visible_text("小明 says hi 🦀"), Cow::Borrowed(_)));
    }

    #[test]
    fn c1_every_peer_string_of_an_event_is_made_visible() {
        let event = visible_event(ClientEvent::ChatLine {
            from: "ev\u{1b}e".into(),
            text: "hi\u{1b}[2J\nthere".into(),
            id: Some("e1.1".into()),
        });
        assert_eq!(
            event,
            ClientEvent::ChatLine {
                from: "ev␛e".into(),
                text: "hi␛[2J\nthere".into(),
                id: Some("e1.1".into()),
            }
        );
        let event = visible_event(ClientEvent::Replayed {
            from: "ev\u{1b}e".into(),
            text: "\u{202e}olleh".into(),
            id: "e1\r\nX: y".into(),
            said_at: None,
        });
        assert_eq!(
            event,
            ClientEvent::Replayed {
                from: "ev␛e".into(),
                text: "\\u{202e}olleh".into(),
                id: String::new(),
                said_at: None,
            },
            "an id that could not go back in a header is dropped"
        );
        let event = visible_event(ClientEvent::UserList {
            names: vec!["a\rb".into()],
        });
        assert_eq!(
            event,
            ClientEvent::UserList {
                names: vec!["a␍b".into()]
            }
        );
    }
}
