//! Wrapping styled text into terminal rows, measured in columns.
//!
//! Widths come from `unicode-width` per grapheme, as ratatui measures them, so a CJK
//! character or an emoji takes two columns and is never split across rows. Rows break after
//! the last space or wide character that fits (word wrap), or anywhere when a word is longer
//! than a row.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// One grapheme and its style.
type Cell<'a> = (&'a str, Style);

/// Wraps `spans` into rows at most `width` columns wide. A `\n` in the text starts a new row.
/// Rows after the first start with `indent` spaces (dropped if the row is too narrow for it).
pub fn wrap(spans: &[Span<'_>], width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if indent * 2 > width { 0 } else { indent };
    let mut rows: Vec<Vec<Cell<'_>>> = vec![Vec::new()];
    let mut used = 0;
    // Cells before this index in the last row fit before a break (after a space).
    let mut break_at: Option<usize> = None;
    for span in spans {
        for grapheme in span.content.graphemes(true) {
            if grapheme == "\n" || grapheme == "\r\n" {
                rows.push(Vec::new());
                used = indent;
                break_at = None;
                continue;
            }
            let w = grapheme.width();
            if used + w > width && used > indent {
                let row = rows.last_mut().expect("rows starts with one row");
                let carried = match break_at {
                    Some(at) if at < row.len() => row.split_off(at),
                    _ => Vec::new(),
                };
                used = indent + carried.iter().map(|(g, _)| g.width()).sum::<usize>();
                rows.push(carried);
                break_at = None;
            }
            let row = rows.last_mut().expect("rows starts with one row");
            // A row may break after a space, and before or after a wide (CJK) character,
            // since those scripts put no spaces between words.
            if w > 1 {
                break_at = Some(row.len());
            }
            row.push((grapheme, span.style));
            used += w;
            if grapheme == " " || w > 1 {
                break_at = Some(row.len());
            }
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| to_line(row, if i == 0 { 0 } else { indent }))
        .collect()
}

/// Joins a row's cells into spans, merging neighbours of the same style.
fn to_line(row: Vec<Cell<'_>>, indent: usize) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    if indent > 0 {
        spans.push(Span::raw(" ".repeat(indent)));
    }
    let mut current: Option<(String, Style)> = None;
    for (grapheme, style) in row {
        match &mut current {
            Some((text, s)) if *s == style => text.push_str(grapheme),
            _ => {
                if let Some((text, s)) = current.take() {
                    spans.push(Span::styled(text, s));
                }
                current = Some((grapheme.to_owned(), style));
            }
        }
    }
    if let Some((text, s)) = current {
        spans.push(Span::styled(text, s));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn wraps_at_spaces_and_indents() {
        let lines = wrap(&[Span::raw("12:00 the quick brown fox")], 12, 6);
        assert_eq!(
            texts(&lines),
            ["12:00 the ", "      quick ", "      brown ", "      fox"]
        );
    }

    #[test]
    fn never_splits_a_wide_character() {
        let lines = wrap(&[Span::raw("你好世界")], 5, 0);
        assert_eq!(texts(&lines), ["你好", "世界"]);
        assert!(lines.iter().all(|l| l.width() <= 5));
    }

    #[test]
    fn breaks_between_cjk_characters_after_latin_text() {
        let lines = wrap(&[Span::raw("<小明> 大家好今天")], 10, 0);
        assert_eq!(texts(&lines), ["<小明> 大", "家好今天"]);
    }

    #[test]
    fn breaks_long_words_and_newlines() {
        let lines = wrap(&[Span::raw("abcdefgh\nij")], 3, 0);
        assert_eq!(texts(&lines), ["abc", "def", "gh", "ij"]);
    }
}
