//! Rendering: `impl Widget for &App` draws the whole console from the state, and nothing else.
//!
//! ```text
//!  ┌ header: the cluster, the connection state ───────────────────────────────┐
//!  │ tabs: 1 Cluster  2 Shards  3 Replication  4 Keys        endpoint, refresh │
//!  │ body: the screen (screen/*.rs); greyed when the data is not current       │
//!  │ status bar: the last action's outcome and its kvctl command, or the filter│
//!  └ footer: the keys that work here                              ? help  q quit┘
//! ```
//!
//! Popups (help, value, delete confirmation, put form, failover) are drawn last, over the rest.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    text::{Line, Span, Text},
    widgets::{Paragraph, Widget, Wrap},
};

use crate::{
    output::{display_bytes, human_bytes, human_uptime},
    tui::{
        app::{App, Conn, Field, Form, Popup, Screen, StatusKind, Step, ValueView},
        nodes, screen,
        widgets::{centered, hex_dump, hex_dump_lines, hints, input_line, popup_frame},
    },
};

mod failover;

/// The style of data that is not current.
pub const STALE: Style = Style::new().fg(Color::DarkGray);
/// Column headers.
pub const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// The selected row.
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        // Wrapped here, so the bar is as high as its message needs (a command line is shown
        // in full), up to MAX_STATUS_LINES.
        let status = wrap_line(status_line(self), usize::from(area.width));
        let status_height = u16::try_from(status.len().clamp(1, MAX_STATUS_LINES)).unwrap_or(1);
        let [header, tabs, body, status_area, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(status_height),
            Constraint::Length(1),
        ])
        .areas(area);
        render_header(self, header, buf);
        render_tabs(self, tabs, buf);
        render_body(self, body, buf);
        Paragraph::new(status).render(status_area, buf);
        render_footer(self, footer, buf);
        match &self.popup {
            None => {}
            Some(Popup::Help) => render_help(self, area, buf),
            Some(Popup::Value(view)) => render_value(self, view, area, buf),
            Some(Popup::Confirm { key }) => render_confirm(self, key, area, buf),
            Some(Popup::Form(form)) => render_form(self, form, area, buf),
            Some(Popup::Failover(flow)) => failover::render(self, flow, area, buf),
        }
    }
}

/// Most lines the status bar takes (a failover's outcome and its command line need three at
/// 80 columns with real node ids).
const MAX_STATUS_LINES: usize = 4;

/// `line` broken at spaces into lines of at most `width` cells, styles kept; a word longer than
/// a line starts a line and is broken where it ends. Spaces where a line breaks are dropped.
fn wrap_line(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut current: Vec<Span<'static>> = Vec::new();
    let mut used = 0usize;
    for span in line.spans {
        let style = span.style;
        let text = span.content.into_owned();
        // Words and runs of spaces, in order.
        let mut tokens: Vec<String> = Vec::new();
        for c in text.chars() {
            match tokens.last_mut() {
                Some(t) if (t.starts_with(' ')) == (c == ' ') => t.push(c),
                _ => tokens.push(c.to_string()),
            }
        }
        for token in tokens {
            let mut token = token;
            loop {
                let len = token.chars().count();
                if used + len <= width {
                    used += len;
                    current.push(Span::styled(token, style));
                    break;
                }
                if token.starts_with(' ') {
                    // A break at spaces: they go.
                    lines.push(Line::from(std::mem::take(&mut current)));
                    used = 0;
                    break;
                }
                if used > 0 {
                    if current.last().is_some_and(|s| s.content.starts_with(' ')) {
                        current.pop();
                    }
                    lines.push(Line::from(std::mem::take(&mut current)));
                    used = 0;
                    continue;
                }
                // Longer than a line: a line of it, the rest on the next.
                let head: String = token.chars().take(width).collect();
                token = token.chars().skip(width).collect();
                current.push(Span::styled(head, style));
                lines.push(Line::from(std::mem::take(&mut current)));
                used = 0;
            }
        }
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(Line::from(current));
    }
    lines
}

/// Splits a line's area into a left part and a right part as wide as `right` needs.
fn split_right(area: Rect, right: &Line<'_>) -> (Rect, Rect) {
    let w = u16::try_from(right.width())
        .unwrap_or(u16::MAX)
        .min(area.width);
    let [l, r] = Layout::horizontal([Constraint::Min(0), Constraint::Length(w)]).areas(area);
    (l, r)
}

fn render_header(app: &App, area: Rect, buf: &mut Buffer) {
    let conn = match &app.conn {
        Conn::Connecting => Line::from(" ◌ connecting… ".yellow()),
        Conn::Connected if app.data.as_ref().is_some_and(|d| !d.endpoints_answered) => {
            // Only members known from before answered, not the endpoints given.
            Line::from(" ◐ -e down, via members ".yellow())
        }
        Conn::Connected => Line::from(" ● connected ".green()),
        Conn::Disconnected { .. } => {
            let age = app
                .data_age()
                .map(|a| format!(" · data {} old", human_uptime(a.as_secs())))
                .unwrap_or_default();
            Line::from(
                Span::raw(format!(" ✖ disconnected, retrying{age} "))
                    .style(Style::new().fg(Color::White).bg(Color::Red).bold()),
            )
        }
    };
    let (left, right) = split_right(area, &conn);
    let mut badges = vec![Span::styled(
        " kvctl ",
        Style::new().fg(Color::Black).bg(Color::Cyan).bold(),
    )];
    if app.config.read_only {
        badges.push(Span::styled(
            " READ-ONLY ",
            Style::new().fg(Color::Black).bg(Color::Yellow).bold(),
        ));
    }
    badges.push(Span::raw(" "));
    // The cluster in words, shortened until it fits beside the connection state.
    let overview = nodes::overview(&app.nodes());
    let epoch = overview
        .epoch
        .map_or_else(String::new, |e| format!(" · epoch {e}"));
    let forms: Vec<Vec<Span<'static>>> = match (&overview.master, app.data.as_ref()) {
        (Some((master, writable)), _) => {
            let replicas = overview.replicas;
            let noun = if replicas == 1 { "replica" } else { "replicas" };
            let shards = app.master().map_or(0, |m| m.shards.len());
            let address = Span::styled(master.address.clone(), Style::new().bold());
            let counts = format!(" · {replicas} {noun} · {shards} shards");
            let paused = if *writable {
                Span::raw("")
            } else {
                Span::styled(" · writes paused", Style::new().fg(Color::Yellow).bold())
            };
            vec![
                vec![
                    Span::raw("cluster of master "),
                    address.clone(),
                    Span::raw(epoch.clone()),
                    paused.clone(),
                    Span::raw(counts.clone()),
                ],
                vec![
                    Span::raw("master "),
                    address.clone(),
                    Span::raw(epoch.clone()),
                    paused.clone(),
                    Span::raw(counts),
                ],
                vec![
                    Span::raw("master "),
                    address.clone(),
                    Span::raw(epoch.clone()),
                    paused,
                ],
                vec![Span::raw("master "), address],
            ]
        }
        (None, Some(_)) => {
            let none = Span::styled("no master answers", Style::new().fg(Color::Red).bold());
            let answer = format!(
                " · {} of {} replicas answer",
                overview.replicas_answering, overview.replicas
            );
            let lost = overview
                .lost_master
                .as_ref()
                .map_or_else(String::new, |m| format!(" · master {} down", m.address));
            vec![
                vec![
                    none.clone(),
                    Span::raw(epoch.clone()),
                    Span::raw(answer.clone()),
                    Span::raw(lost),
                ],
                vec![none.clone(), Span::raw(epoch.clone()), Span::raw(answer)],
                vec![none.clone(), Span::raw(epoch)],
                vec![none],
            ]
        }
        (None, None) => vec![vec![Span::raw(format!(
            "cluster at {}",
            app.config.endpoint
        ))]],
    };
    let fits = |spans: &Vec<Span<'static>>| {
        Line::from([badges.clone(), spans.clone()].concat()).width() <= usize::from(left.width)
    };
    let chosen = forms
        .iter()
        .find(|f| fits(f))
        .or(forms.last())
        .cloned()
        .unwrap_or_default();
    Line::from([badges, chosen].concat()).render(left, buf);
    conn.render(right, buf);
}

fn render_tabs(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = vec![Span::raw(" ")];
    for screen in Screen::ALL {
        let label = format!(" {} {} ", screen.index() + 1, screen.title());
        if screen == app.screen {
            spans.push(Span::styled(
                label,
                Style::new().fg(Color::Black).bg(Color::White).bold(),
            ));
        } else {
            spans.push(Span::raw(label));
        }
    }
    let tabs = Line::from(spans);
    // The endpoint beside the tabs, shortened until it fits (80 columns and a long address).
    let refresh = format!(" · every {} ", crate::output::seconds(app.config.refresh));
    let forms = [
        Line::from(vec![
            Span::raw("endpoint ").dark_gray(),
            Span::raw(app.config.endpoint.clone()),
            Span::raw(refresh).dark_gray(),
        ]),
        Line::from(vec![
            Span::raw("-e ").dark_gray(),
            Span::raw(format!("{} ", app.config.endpoint)),
        ]),
    ];
    if let Some(right) = forms
        .into_iter()
        .find(|r| tabs.width() + 1 + r.width() <= usize::from(area.width))
    {
        let (_, right_area) = split_right(area, &right);
        right.render(right_area, buf);
    }
    tabs.render(area, buf);
}

fn render_body(app: &App, area: Rect, buf: &mut Buffer) {
    let area = match &app.conn {
        Conn::Disconnected { error, attempts } => {
            let banner = Line::from(vec![
                Span::styled(
                    format!(" attempt {attempts}: "),
                    Style::new().fg(Color::Red).bold(),
                ),
                Span::styled(error.clone(), Style::new().fg(Color::Red)),
            ]);
            let lines = if banner.width() > usize::from(area.width) {
                2
            } else {
                1
            };
            let [banner_area, rest] =
                Layout::vertical([Constraint::Length(lines), Constraint::Min(0)]).areas(area);
            Paragraph::new(banner)
                .wrap(Wrap { trim: false })
                .render(banner_area, buf);
            rest
        }
        _ => area,
    };
    if app.data.is_none() {
        let text = match &app.conn {
            Conn::Connecting => format!(" connecting to {}…", app.config.endpoint),
            _ => " no data yet: waiting for the node to answer".to_string(),
        };
        Paragraph::new(text).dark_gray().render(area, buf);
        return;
    }
    match app.screen {
        Screen::Cluster => screen::cluster::render(app, area, buf),
        Screen::Shards => screen::shards::render(app, area, buf),
        Screen::Replication => screen::replication::render(app, area, buf),
        Screen::Keys => screen::keys::render(app, area, buf),
    }
    if app.stale() {
        // The last data, kept but greyed: it is not current.
        buf.set_style(area, STALE.remove_modifier(Modifier::BOLD));
    }
}

fn status_line(app: &App) -> Line<'static> {
    if let Some(filter) = &app.filter {
        let mut line = Line::from(vec![Span::styled(
            " / prefix: ",
            Style::new().fg(Color::Cyan).bold(),
        )]);
        line.spans.extend(input_line(filter, 60, true).spans);
        return line;
    }
    let Some(status) = &app.status else {
        return if app.popup.is_none() {
            Line::from(" press ? for help".dark_gray())
        } else {
            Line::default()
        };
    };
    let (mark, style) = match status.kind {
        StatusKind::Info => ("", Style::new()),
        StatusKind::Pending => ("… ", Style::new().fg(Color::Yellow)),
        StatusKind::Done => ("✔ ", Style::new().fg(Color::Green)),
        StatusKind::Error => ("✖ ", Style::new().fg(Color::Red)),
    };
    let mut spans = vec![Span::styled(format!(" {mark}{}", status.text), style)];
    if let Some(command) = &status.command {
        spans.push(Span::raw("  $ ").dark_gray());
        spans.push(Span::styled(command.clone(), Style::new().fg(Color::Cyan)));
    }
    Line::from(spans)
}

/// The keys that work on the current screen, in the state it is in.
fn screen_hints(app: &App) -> Vec<(&'static str, &'static str)> {
    if app.filter.is_some() {
        return vec![("⏎", "apply (empty: all keys)"), ("Esc", "cancel")];
    }
    match &app.popup {
        Some(Popup::Help) => return vec![("Esc", "close")],
        Some(Popup::Value(_)) => return vec![("↑↓", "scroll"), ("Esc", "close")],
        Some(Popup::Confirm { .. }) => return vec![("y", "delete"), ("n/Esc", "cancel")],
        Some(Popup::Form(f)) if f.edit.is_some() => {
            return vec![("⏎", "save"), ("Esc", "cancel")];
        }
        Some(Popup::Form(_)) => {
            return vec![("Tab", "next field"), ("⏎", "put"), ("Esc", "cancel")];
        }
        // The popup lists its own keys.
        Some(Popup::Failover(flow)) => {
            return match flow.step {
                Step::Running { .. } => vec![("Esc", "hide")],
                Step::Done { .. } => vec![("Esc", "close")],
                Step::Plan | Step::Confirm { .. } => vec![("Esc", "cancel")],
            };
        }
        None => {}
    }
    let mut pairs = Vec::new();
    match app.screen {
        Screen::Cluster => {
            if !app.config.read_only {
                pairs.push(("F", "failover"));
            }
        }
        Screen::Shards => pairs.push(("↑↓", "shard")),
        Screen::Replication => pairs.push(("↑↓", "select")),
        Screen::Keys => {
            pairs.extend([
                ("↑↓", "move"),
                ("←→", "page"),
                ("/", "filter"),
                ("⏎", "view"),
            ]);
            if !app.config.read_only {
                pairs.extend([("p", "put"), ("e", "edit"), ("d", "del")]);
            }
            pairs.push(("s", "shard"));
        }
    }
    pairs.extend([("Tab/1-4", "screen"), ("r", "refresh")]);
    pairs
}

fn render_footer(app: &App, area: Rect, buf: &mut Buffer) {
    // `?` and `q` mean something else while a popup or the filter has the keys.
    let layered = app.popup.is_some() || app.filter.is_some();
    let right = if layered {
        Line::default()
    } else {
        let mut line = hints(&[("?", "help"), ("q", "quit")]);
        line.spans.push(Span::raw(" "));
        line
    };
    // The screen's hints in order of importance: drop from the end what does not fit, so no
    // hint is ever cut in the middle.
    let room = usize::from(area.width).saturating_sub(right.width() + 2);
    let mut pairs = screen_hints(app);
    let mut line = hints(&pairs);
    while line.width() > room && !pairs.is_empty() {
        pairs.pop();
        line = hints(&pairs);
    }
    line.spans.insert(0, Span::raw(" "));
    let (left, right_area) = split_right(area, &right);
    line.render(left, buf);
    right.render(right_area, buf);
}

/// Every key, for the help popup: (section, [(keys, what they do)]).
const HELP: [(&str, &[(&str, &str)]); 4] = [
    (
        "Anywhere",
        &[
            ("q  Esc", "quit (Esc: close popup)"),
            ("Ctrl-C", "quit at once"),
            ("?", "this help"),
            ("Tab S-Tab", "next / previous screen"),
            ("1-4", "Cluster Shards Repl. Keys"),
            ("r", "refresh now"),
            ("↑↓  j k", "select a row"),
            ("g  G", "first / last row"),
        ],
    ),
    (
        "Popups and forms",
        &[
            ("Tab  ↑↓", "next field (put form)"),
            ("Enter", "put / save"),
            ("y  n", "confirm / cancel delete"),
            ("Esc", "close, cancel"),
        ],
    ),
    (
        "Keys screen",
        &[
            ("←→  n b", "next / previous page"),
            ("PgDn PgUp", "next / previous page"),
            ("Home  g", "first page"),
            ("/", "prefix filter (⏎ empty: all)"),
            ("s", "shard: all, 0, 1, …"),
            ("Enter", "view value (text or hex)"),
            ("p", "put a key (form)"),
            ("e", "edit selected value"),
            ("d", "delete selected (y/n)"),
        ],
    ),
    (
        "Failover",
        &[
            ("F", "switchover / promote: plan"),
            ("↑↓  f", "pick candidate, --force"),
            ("id ⏎", "type 4+ chars of its id: run"),
            ("Esc", "cancel (before it runs)"),
        ],
    ),
];

fn help_lines(sections: &[(&str, &[(&str, &str)])]) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (i, (title, keys)) in sections.iter().enumerate() {
        if i > 0 {
            lines.push(Line::default());
        }
        lines.push(Line::styled((*title).to_string(), HEADER));
        for (k, what) in *keys {
            lines.push(Line::from(vec![
                Span::styled(format!(" {k:<10}"), Style::new().fg(Color::Cyan).bold()),
                Span::raw((*what).to_string()),
            ]));
        }
    }
    lines
}

fn render_help(app: &App, area: Rect, buf: &mut Buffer) {
    let popup = centered(area, 80, 20);
    let inner = popup_frame(
        popup,
        buf,
        Line::from(" Help: every key ".bold()),
        Color::Cyan,
    );
    let [columns, about] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(2)]).areas(inner);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(48), Constraint::Percentage(52)])
            .spacing(1)
            .areas(columns);
    Paragraph::new(help_lines(&HELP[..2])).render(left, buf);
    Paragraph::new(help_lines(&HELP[2..4])).render(right, buf);
    let mut notes = vec![
        Span::raw(" log: ").dark_gray(),
        Span::raw(app.config.log_file.clone()),
    ];
    if app.config.read_only {
        notes.push(Span::raw(" · read-only: writes are disabled").yellow());
    }
    Paragraph::new(vec![
        Line::from(vec![
            Span::raw(" every write and failover shows its kvctl command in the status bar")
                .dark_gray(),
        ]),
        Line::from(notes),
    ])
    .render(about, buf);
}

fn render_value(app: &App, view: &ValueView, area: Rect, buf: &mut Buffer) {
    let text = std::str::from_utf8(&view.value)
        .ok()
        .filter(|s| !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
    let width = area.width.saturating_sub(4).max(20);
    let per_line = if width >= 81 { 16 } else { 8 };
    let content = match text {
        Some(t) => t.split('\n').count(),
        None => hex_dump_lines(view.value.len(), per_line),
    };
    let popup = centered(
        area,
        width,
        height_of(content + 2).clamp(5, area.height.saturating_sub(4).max(5)),
    );
    let shard = app
        .shard_count()
        .map(|n| format!(" · shard {}", shared::routing::shard_for(&view.key, n)))
        .unwrap_or_default();
    let kind = if text.is_some() {
        "text"
    } else {
        "binary, hex"
    };
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled(display_bytes(&view.key).into_owned(), Style::new().bold()),
        Span::raw(format!(
            " · version {} · {}{shard} · {kind} ",
            view.version,
            human_bytes(view.value.len() as u64)
        )),
    ]);
    let inner = popup_frame(popup, buf, title, Color::Cyan);
    let height = usize::from(inner.height);
    let lines: Vec<Line<'static>> = match text {
        Some(t) => {
            let all: Vec<&str> = t.split('\n').collect();
            let first = view.scroll.min(all.len().saturating_sub(1));
            all[first..]
                .iter()
                .take(height)
                .map(|l| Line::raw(l.replace('\t', "    ")))
                .collect()
        }
        None => {
            let total = hex_dump_lines(view.value.len(), per_line);
            let first = view.scroll.min(total.saturating_sub(1));
            hex_dump(&view.value, per_line, first, height)
                .into_iter()
                .map(Line::raw)
                .collect()
        }
    };
    if view.value.is_empty() {
        Paragraph::new("(empty value)")
            .dark_gray()
            .render(inner, buf);
    } else if text.is_some() {
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .render(inner, buf);
    } else {
        Paragraph::new(Text::from(lines)).render(inner, buf);
    }
}

fn height_of(lines: usize) -> u16 {
    u16::try_from(lines).unwrap_or(u16::MAX)
}

fn render_confirm(app: &App, key: &[u8], area: Rect, buf: &mut Buffer) {
    let name = display_bytes(key).into_owned();
    let command = crate::tui::shell::delete(&app.config.endpoint, key);
    let popup = centered(area, 70, 7);
    let inner = popup_frame(popup, buf, Line::from(" Delete ".bold()), Color::Red);
    Paragraph::new(vec![
        Line::from(vec![
            Span::raw("Delete the key "),
            Span::styled(name, Style::new().fg(Color::Red).bold()),
            Span::raw("?"),
        ]),
        Line::raw("This cannot be undone."),
        Line::default(),
        Line::from(vec![Span::raw("$ ").dark_gray(), Span::raw(command).cyan()]),
        Line::from(vec![
            Span::styled("y", Style::new().fg(Color::Cyan).bold()),
            Span::raw(" delete   "),
            Span::styled("n / Esc", Style::new().fg(Color::Cyan).bold()),
            Span::raw(" cancel"),
        ]),
    ])
    .wrap(Wrap { trim: false })
    .render(inner, buf);
}

fn render_form(app: &App, form: &Form, area: Rect, buf: &mut Buffer) {
    let popup = centered(area, 76, 8);
    let title = match form.edit {
        Some(v) => format!(" Edit {} (version {v}) ", form.key.text()),
        None => " Put a key ".to_string(),
    };
    let inner = popup_frame(popup, buf, Line::from(title.bold()), Color::Cyan);
    let width = usize::from(inner.width.saturating_sub(9));
    let label = |name: &str, focused: bool| {
        let style = if focused {
            Style::new().fg(Color::Cyan).bold()
        } else {
            Style::new().dark_gray()
        };
        Span::styled(format!("{name:>6}: "), style)
    };
    let field = |name: &str, which: Field, input| {
        let focused = form.focus == which;
        let fixed = which == Field::Key && form.edit.is_some();
        let mut line = input_line(input, width, focused && !fixed);
        line.spans.insert(0, label(name, focused));
        line
    };
    let command = form_command(app, form);
    Paragraph::new(vec![
        field("Key", Field::Key, &form.key),
        Line::default(),
        field("Value", Field::Value, &form.value),
        Line::default(),
        Line::from(vec![Span::raw("$ ").dark_gray(), Span::raw(command).cyan()]),
        Line::from(hints(&[("Tab", "next field"), ("⏎", "put"), ("Esc", "cancel")]).spans),
    ])
    .wrap(Wrap { trim: false })
    .render(inner, buf);
}

fn form_command(app: &App, form: &Form) -> String {
    form.action().command(&app.config.endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn status_lines_wrap_at_spaces_and_keep_everything() {
        let line = Line::from(vec![Span::raw("ab cd "), Span::raw("efgh").cyan()]);
        assert_eq!(texts(&wrap_line(line.clone(), 80)), ["ab cd efgh"]);
        assert_eq!(texts(&wrap_line(line.clone(), 6)), ["ab cd", "efgh"]);
        assert_eq!(texts(&wrap_line(line, 3)), ["ab", "cd", "efg", "h"]);
        let long = Line::raw("$ 0123456789");
        assert_eq!(texts(&wrap_line(long, 5)), ["$", "01234", "56789"]);
        assert_eq!(texts(&wrap_line(Line::default(), 5)), [""]);
    }
}
