//! Drawing the [`App`] with ratatui. Pure functions of the state, except that the chat
//! screen records the log's page size and clamps the scroll offset to what there is.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use crate::tui::app::{
    App, ChatView, Entry, EntryKind, Field, LoginForm, Presence, Screen, Status,
};
use crate::tui::editor::Editor;
use crate::tui::wrap::wrap;

/// Below this width the member pane is hidden, so the log keeps room to read.
const MIN_WIDTH_FOR_MEMBERS: u16 = 60;
/// The member pane's width, borders included.
const MEMBERS_WIDTH: u16 = 22;
/// The input box grows with its text up to this many rows.
const MAX_INPUT_ROWS: usize = 5;
/// Width of `HH:MM:SS `, the indent of a wrapped log entry.
const TIME_WIDTH: usize = 9;

/// Colors that read well on dark and light backgrounds, for sender names.
const NAME_COLORS: [Color; 10] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::LightRed,
    Color::LightGreen,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
];

/// The color of a sender's name: the same on every line and in every client, since it
/// depends only on the name (compared as the server does, ignoring case).
pub fn name_color(name: &str) -> Color {
    // FNV-1a: small, stable across runs and platforms (unlike the std hasher).
    let hash = name
        .to_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    NAME_COLORS[(hash % NAME_COLORS.len() as u64) as usize]
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &mut App) {
    match &mut app.screen {
        Screen::Login(form) => draw_login(frame, form),
        Screen::Chat(chat) => draw_chat(frame, chat),
    }
}

fn draw_login(frame: &mut Frame<'_>, form: &LoginForm) {
    let area = frame.area();
    let width = area.width.min(64);
    let height = area.height.min(10);
    let [_, column, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, card, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(column);
    frame.render_widget(Clear, card);
    let block = Block::bordered()
        .title(" ChatHTTP · join a chat room ".bold())
        .title_bottom(Line::from(" Tab next field · Enter join · Esc quit ").centered());
    let inner = block.inner(card);
    frame.render_widget(block, card);

    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .split(inner.inner(ratatui::layout::Margin::new(1, 0)));
    let fields = [
        (Field::Host, "Host", &form.host, rows[1]),
        (Field::Port, "Port", &form.port, rows[2]),
        (Field::Name, "Name", &form.name, rows[3]),
    ];
    for (field, label, editor, row) in fields {
        let focused = field == form.focus;
        let [label_area, value_area] =
            Layout::horizontal([Constraint::Length(7), Constraint::Fill(1)]).areas(row);
        let label_style = if focused {
            Style::new().bold()
        } else {
            Style::new().dim()
        };
        frame.render_widget(
            Paragraph::new(format!("{label}:")).style(label_style),
            label_area,
        );
        let field_style = if focused {
            Style::new().bg(Color::DarkGray)
        } else {
            Style::new()
        };
        let (text, cursor) = single_row(editor, value_area.width as usize);
        frame.render_widget(Paragraph::new(text).style(field_style), value_area);
        if focused && !matches!(form.status, Status::Busy(_)) {
            frame.set_cursor_position(Position::new(value_area.x + cursor, value_area.y));
        }
    }
    let status = match &form.status {
        Status::Idle => Line::from("Enter a name to join.").dim(),
        Status::Busy(text) => Line::from(text.as_str()).fg(Color::Yellow),
        Status::Error(text) => {
            Line::from(vec!["✗ ".into(), text.as_str().into()]).fg(Color::LightRed)
        }
    };
    let status_area = Rect {
        height: rows[5].height + rows[6].height,
        ..rows[5]
    };
    let lines = wrap(&status.spans, status_area.width as usize, 2);
    let lines: Vec<Line<'_>> = lines.into_iter().map(|l| l.style(status.style)).collect();
    frame.render_widget(Paragraph::new(lines), status_area);
}

/// The part of a one-line field that fits `width` columns, scrolled so the cursor shows,
/// and the cursor's column in it.
fn single_row(editor: &Editor, width: usize) -> (String, u16) {
    let (before, after) = editor.text().split_at(editor.cursor());
    let mut shown: Vec<&str> = before.graphemes(true).collect();
    let mut used: usize = shown.iter().map(|g| g.width()).sum();
    while used >= width && !shown.is_empty() {
        used -= shown.remove(0).width();
    }
    let cursor = used;
    for g in after.graphemes(true) {
        if used + g.width() > width {
            break;
        }
        used += g.width();
        shown.push(g);
    }
    (shown.concat(), u16::try_from(cursor).unwrap_or(u16::MAX))
}

fn draw_chat(frame: &mut Frame<'_>, chat: &mut ChatView) {
    let area = frame.area();
    let input_width = area.width.saturating_sub(2) as usize;
    let (input_rows, cursor) = input_rows(&chat.input, input_width);
    let input_height = input_rows.len().clamp(1, MAX_INPUT_ROWS) as u16 + 2;
    let [title_area, main_area, input_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(input_height),
    ])
    .areas(area);

    // Title bar: who and where, and the connection's state.
    let (state, state_style) = match &chat.presence {
        Presence::Online => ("online", Style::new().fg(Color::Black).bg(Color::Green)),
        Presence::Leaving => ("leaving", Style::new().fg(Color::Black).bg(Color::Yellow)),
        Presence::Rejoining => (
            "reconnecting",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        Presence::Offline(_) => ("offline", Style::new().fg(Color::White).bg(Color::Red)),
    };
    let title = Line::from(vec![
        " chathttp ".bold().reversed(),
        " ".into(),
        Span::styled(
            chat.me.clone(),
            Style::new().fg(name_color(&chat.me)).bold(),
        ),
        format!(" @ {} ", chat.server).into(),
        if chat.secure {
            "🔒 TLS ".green()
        } else {
            "".into()
        },
    ]);
    let state = Span::styled(format!(" {state} "), state_style);
    let [title_left, title_right] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(state.width() as u16),
    ])
    .areas(title_area);
    frame.render_widget(Paragraph::new(title), title_left);
    frame.render_widget(Paragraph::new(Line::from(state)), title_right);

    // The log and, if there is room, the member pane.
    let (log_area, members_area) = if area.width >= MIN_WIDTH_FOR_MEMBERS {
        let [log, members] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(MEMBERS_WIDTH)])
                .areas(main_area);
        (log, Some(members))
    } else {
        (main_area, None)
    };
    draw_log(frame, chat, log_area, members_area.is_some());
    if let Some(members_area) = members_area {
        draw_members(frame, chat, members_area);
    }

    // The input box.
    let (input_title, hint) = match &chat.presence {
        Presence::Offline(_) => (" Offline · Enter reconnects ", " Ctrl-C quit "),
        Presence::Rejoining => (" Reconnecting… ", " Ctrl-C quit "),
        Presence::Leaving => (" Leaving… ", ""),
        Presence::Online => (" Message ", " Enter send · Alt-Enter newline · /help "),
    };
    let hint = if (hint.width() as u16) + 4 > area.width {
        ""
    } else {
        hint
    };
    let block = Block::bordered()
        .title(input_title)
        .title_bottom(Line::from(hint).right_aligned().dim());
    let inner = block.inner(input_area);
    let first = cursor
        .0
        .saturating_sub(inner.height.saturating_sub(1) as usize);
    let visible: Vec<Line<'_>> = input_rows.into_iter().skip(first).collect();
    frame.render_widget(Paragraph::new(visible).block(block), input_area);
    if chat.presence == Presence::Online && inner.width > 0 {
        let x = inner.x + (cursor.1 as u16).min(inner.width - 1);
        let y = inner.y + (cursor.0 - first) as u16;
        frame.set_cursor_position(Position::new(x, y));
    }
}

fn draw_log(frame: &mut Frame<'_>, chat: &mut ChatView, area: Rect, beside_members: bool) {
    let borders = if beside_members {
        Borders::TOP | Borders::RIGHT
    } else {
        Borders::TOP
    };
    let block = Block::new()
        .borders(borders)
        .border_style(Style::new().dim());
    let inner = block.inner(area);
    let width = inner.width as usize;
    let height = inner.height as usize;
    // Wrap from the newest entry back, only as far as the view reaches: a long log costs
    // nothing per frame.
    let needed = height.saturating_add(chat.scroll);
    let mut rows: Vec<Line<'static>> = Vec::new();
    for entry in chat.log.iter().rev() {
        if rows.len() >= needed {
            break;
        }
        rows.extend(entry_lines(entry, &chat.me, width).into_iter().rev());
    }
    rows.reverse();
    let max_scroll = rows.len().saturating_sub(height);
    chat.scroll = chat.scroll.min(max_scroll);
    chat.page = height.max(1);
    chat.log_width = width;
    let end = rows.len() - chat.scroll;
    let start = end.saturating_sub(height);
    let block = if chat.scroll > 0 {
        block.title(
            Line::from(format!(" ↓ {} more rows · Esc to follow ", chat.scroll))
                .right_aligned()
                .fg(Color::Yellow),
        )
    } else {
        block.title(" Room ".dim())
    };
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(rows[start..end].to_vec()), inner);
}

/// An entry's rows at `width` columns.
pub fn entry_lines(entry: &Entry, me: &str, width: usize) -> Vec<Line<'static>> {
    let time = match entry.at {
        Some(at) => at.format("%H:%M:%S ").to_string(),
        None => " ".repeat(TIME_WIDTH),
    };
    let mut spans = vec![Span::styled(time, Style::new().dim())];
    let notice = Style::new().fg(Color::DarkGray).italic();
    match &entry.kind {
        EntryKind::Chat { from, text } => {
            let mut name = Style::new().fg(name_color(from));
            if from == me {
                name = name.bold();
            }
            spans.push(Span::styled(format!("<{from}>"), name));
            spans.push(" ".into());
            spans.push(text.clone().into());
        }
        EntryKind::Replayed { from, text } => {
            // Said before we joined: dimmed, so the rule below it reads as "now".
            let past = Style::new().dim();
            spans.push(Span::styled(format!("<{from}>"), past.fg(name_color(from))));
            spans.push(" ".into());
            spans.push(Span::styled(text.clone(), past));
        }
        EntryKind::Rule(text) => {
            let label = format!(" {text} ");
            let room = width.saturating_sub(TIME_WIDTH + label.chars().count());
            let left = "─".repeat(room / 2);
            let right = "─".repeat(room - room / 2);
            let style = Style::new().fg(Color::Yellow);
            spans.push(Span::styled(format!("{left}{label}{right}"), style));
        }
        EntryKind::Joined(name) => {
            spans.push(Span::styled("→ ", notice.fg(Color::Green)));
            spans.push(Span::styled(name.clone(), notice.fg(name_color(name))));
            spans.push(Span::styled(" joined the room", notice));
        }
        EntryKind::Left(name) => {
            spans.push(Span::styled("← ", notice.fg(Color::Red)));
            spans.push(Span::styled(name.clone(), notice.fg(name_color(name))));
            spans.push(Span::styled(" left the room", notice));
        }
        EntryKind::Users(names) => {
            let style = Style::new().fg(Color::Cyan);
            spans.push(Span::styled(format!("• online ({}): ", names.len()), style));
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::styled(", ", style));
                }
                spans.push(Span::styled(
                    name.clone(),
                    Style::new().fg(name_color(name)),
                ));
            }
        }
        EntryKind::Info(text) => {
            spans.push(Span::styled(text.clone(), Style::new().fg(Color::Gray)))
        }
        EntryKind::Error(text) => {
            spans.push(Span::styled(
                format!("! {text}"),
                Style::new().fg(Color::LightRed),
            ));
        }
    }
    wrap(&spans, width, TIME_WIDTH)
}

fn draw_members(frame: &mut Frame<'_>, chat: &ChatView, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(Style::new().dim())
        .title(format!(" Online ({}) ", chat.members.len()).dim());
    let inner = block.inner(area).inner(ratatui::layout::Margin::new(1, 0));
    frame.render_widget(block, area);
    let height = inner.height as usize;
    let overflow = chat.members.len() > height;
    let shown = if overflow {
        height.saturating_sub(1)
    } else {
        height
    };
    let mut lines: Vec<Line<'_>> = chat
        .members
        .iter()
        .take(shown)
        .map(|name| {
            let mut style = Style::new().fg(name_color(name));
            let mut spans = vec![Span::styled(name.as_str(), style)];
            if *name == chat.me {
                style = style.add_modifier(Modifier::BOLD);
                spans = vec![Span::styled(name.as_str(), style), " (you)".dim()];
            }
            Line::from(spans)
        })
        .collect();
    if overflow {
        lines.push(Line::from(format!("+{} more", chat.members.len() - shown)).dim());
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The input's rows at `width` columns (wrapped anywhere, so the cursor maps exactly), and
/// the cursor's (row, column).
fn input_rows(editor: &Editor, width: usize) -> (Vec<Line<'static>>, (usize, usize)) {
    let width = width.max(1);
    let mut rows = vec![String::new()];
    let mut col = 0;
    let mut cursor = (0, 0);
    let mut offset = 0;
    for g in editor.text().graphemes(true) {
        if g != "\n" && col + g.width() > width && col > 0 {
            rows.push(String::new());
            col = 0;
        }
        if offset == editor.cursor() {
            cursor = (rows.len() - 1, col);
        }
        offset += g.len();
        if g == "\n" {
            rows.push(String::new());
            col = 0;
            continue;
        }
        rows.last_mut()
            .expect("rows starts with one row")
            .push_str(g);
        col += g.width();
    }
    if offset == editor.cursor() {
        if col >= width {
            rows.push(String::new());
            col = 0;
        }
        cursor = (rows.len() - 1, col);
    }
    (rows.into_iter().map(Line::from).collect(), cursor)
}
