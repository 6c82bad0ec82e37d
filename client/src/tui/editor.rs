//! The input line: a text buffer with a cursor, edited grapheme by grapheme, and a history.
//!
//! The text may hold newlines (from a paste, or Alt-Enter); it is sent as one message.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use unicode_segmentation::UnicodeSegmentation;

/// A text buffer with a cursor. The cursor is a byte offset that always sits on a grapheme
/// boundary, so a CJK character or an emoji sequence is moved over and deleted as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Editor {
    text: String,
    cursor: usize,
}

impl Editor {
    /// An editor holding `text`, with the cursor at its end.
    pub fn with_text(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            cursor: text.len(),
        }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, as a byte offset into [`text`](Self::text).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Replaces the text; the cursor goes to the end.
    pub fn set(&mut self, text: &str) {
        *self = Self::with_text(text);
    }

    /// Empties the editor and returns what it held.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Inserts text at the cursor. Line ends become `\n` and tabs four spaces, so that what
    /// is shown is what is sent; other control characters are dropped.
    pub fn insert(&mut self, text: &str) {
        let clean: String = text
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\t', "    ")
            .chars()
            .filter(|c| *c == '\n' || !c.is_control())
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    /// Applies an editing key. Returns whether the key was an editing key.
    ///
    /// Left/Right, Home/End (Ctrl-A/Ctrl-E), Backspace, Delete, Ctrl-U (to line start),
    /// Ctrl-K (to line end), Ctrl-W (word before the cursor), and printable characters.
    pub fn handle_key(&mut self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('a') if ctrl => self.cursor = self.line_start(),
            KeyCode::Char('e') if ctrl => self.cursor = self.line_end(),
            KeyCode::Char('u') if ctrl => self.remove(self.line_start(), self.cursor),
            KeyCode::Char('k') if ctrl => self.remove(self.cursor, self.line_end()),
            KeyCode::Char('w') if ctrl => self.remove(self.word_start(), self.cursor),
            KeyCode::Char(_) if ctrl || key.modifiers.contains(KeyModifiers::ALT) => return false,
            KeyCode::Char(c) => self.insert(c.encode_utf8(&mut [0; 4])),
            KeyCode::Left => self.cursor = self.prev_boundary(),
            KeyCode::Right => self.cursor = self.next_boundary(),
            KeyCode::Home => self.cursor = self.line_start(),
            KeyCode::End => self.cursor = self.line_end(),
            KeyCode::Backspace => self.remove(self.prev_boundary(), self.cursor),
            KeyCode::Delete => self.remove(self.cursor, self.next_boundary()),
            _ => return false,
        }
        true
    }

    fn remove(&mut self, from: usize, to: usize) {
        self.text.replace_range(from..to, "");
        self.cursor = from;
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(at, _)| at)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |at| at + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |at| self.cursor + at)
    }

    /// Where the word before the cursor starts: skip spaces, then non-spaces.
    fn word_start(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        trimmed.rfind([' ', '\n']).map_or(0, |at| at + 1)
    }
}

/// Sent inputs, for Up/Down. Browsing keeps the unsent draft, and Down past the newest entry
/// brings it back.
#[derive(Debug, Clone, Default)]
pub struct History {
    entries: Vec<String>,
    /// The entry shown, while browsing.
    at: Option<usize>,
    draft: String,
}

impl History {
    /// Remembers a sent input (not twice in a row) and stops browsing.
    pub fn push(&mut self, entry: &str) {
        if self.entries.last().map(String::as_str) != Some(entry) {
            self.entries.push(entry.to_owned());
        }
        self.at = None;
    }

    /// The entry before the one shown; `current` is kept as the draft when browsing starts.
    pub fn older(&mut self, current: &str) -> Option<&str> {
        let at = match self.at {
            None => {
                self.draft = current.to_owned();
                self.entries.len().checked_sub(1)?
            }
            Some(at) => at.checked_sub(1)?,
        };
        self.at = Some(at);
        Some(&self.entries[at])
    }

    /// The entry after the one shown, or the draft after the newest.
    pub fn newer(&mut self) -> Option<&str> {
        let at = self.at?;
        if at + 1 < self.entries.len() {
            self.at = Some(at + 1);
            Some(&self.entries[at + 1])
        } else {
            self.at = None;
            Some(&self.draft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    #[test]
    fn edits_whole_graphemes() {
        let mut editor = Editor::with_text("a你👍🏽b");
        editor.handle_key(&key(KeyCode::Left));
        editor.handle_key(&key(KeyCode::Backspace));
        assert_eq!(
            editor.text(),
            "a你b",
            "the emoji and its skin tone go together"
        );
        editor.handle_key(&key(KeyCode::Left));
        assert_eq!(
            editor.cursor(),
            1,
            "Left steps over the whole wide character"
        );
        editor.handle_key(&key(KeyCode::Delete));
        assert_eq!(editor.text(), "ab");
    }

    #[test]
    fn line_keys_work_on_the_current_line() {
        let mut editor = Editor::default();
        editor.insert("one two\r\nthree\tfour");
        assert_eq!(editor.text(), "one two\nthree    four");
        editor.handle_key(&ctrl('w'));
        editor.handle_key(&ctrl('a'));
        editor.handle_key(&ctrl('k'));
        assert_eq!(editor.text(), "one two\n");
        editor.handle_key(&key(KeyCode::Backspace));
        editor.handle_key(&ctrl('u'));
        assert_eq!(editor.text(), "");
    }

    #[test]
    fn history_keeps_the_draft() {
        let mut history = History::default();
        history.push("first");
        history.push("second");
        history.push("second");
        assert_eq!(history.older("draft"), Some("second"));
        assert_eq!(history.older("second"), Some("first"));
        assert_eq!(history.older("first"), None);
        assert_eq!(history.newer(), Some("second"));
        assert_eq!(history.newer(), Some("draft"));
        assert_eq!(history.newer(), None);
    }
}
