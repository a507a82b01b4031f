//! Screen 4, Keys: a page of keys in order, with the shard each belongs to and the version
//! that wrote it; the title says which filter and page are shown.
//!
//! Values are not listed (the scan asks for keys only, so a page of large values costs
//! nothing); Enter reads the selected one.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Rect},
    style::{Color, Style},
    text::Span,
    widgets::{Paragraph, Row, StatefulWidget, Table, TableState, Widget},
};

use crate::{
    output::display_bytes,
    tui::{
        app::App,
        browser::PAGE_SIZE,
        screen::{panel, right},
        ui::{HEADER, SELECTED},
    },
};

fn title(app: &App) -> String {
    let b = &app.browser;
    let shard = match b.shard {
        Some((s, _)) => format!("shard {s}"),
        None => "all shards".to_string(),
    };
    let prefix = if b.prefix.is_empty() {
        String::new()
    } else {
        format!(" · prefix {:?}", display_bytes(&b.prefix))
    };
    let first = (b.page() - 1) * PAGE_SIZE as usize;
    let range = if b.rows.is_empty() {
        String::new()
    } else {
        format!(" · keys {}–{}", first + 1, first + b.rows.len())
    };
    let more = if b.next.is_some() { " · more →" } else { "" };
    let loading = if b.loading { " · loading…" } else { "" };
    format!(
        "Keys · {shard}{prefix} · page {}{range}{more}{loading}",
        b.page()
    )
}

/// Draws the screen.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let b = &app.browser;
    let block = panel(title(app));
    if b.rows.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        let text = if !b.loaded {
            "loading keys…".to_string()
        } else if b.prefix.is_empty() && b.shard.is_none() {
            "no keys".to_string()
        } else {
            "no keys match the filter (/ then Enter on an empty prefix shows all)".to_string()
        };
        Paragraph::new(Span::styled(text, Style::new().fg(Color::DarkGray))).render(inner, buf);
        return;
    }
    let shards = app.shard_count();
    let rows = b.rows.iter().map(|(key, version)| {
        let shard = shards.map_or("—".to_string(), |n| {
            shared::routing::shard_for(key, n).to_string()
        });
        Row::new(vec![
            display_bytes(key).into_owned().into(),
            right(shard),
            right(version.to_string()),
        ])
    });
    let header = Row::new(vec!["KEY".into(), right("SHARD"), right("VERSION")]).style(HEADER);
    let mut state = TableState::default().with_selected(Some(b.selected));
    let table = Table::new(
        rows,
        [
            Constraint::Min(10),
            Constraint::Length(5),
            Constraint::Length(12),
        ],
    )
    .header(header)
    .column_spacing(2)
    .row_highlight_style(SELECTED)
    .block(block);
    StatefulWidget::render(table, area, buf, &mut state);
}
