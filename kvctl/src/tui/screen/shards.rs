//! Screen 2, Shards: one row per shard of the master (keys, size on disk, last sequence, write
//! rate and its trend), and for the selected shard each replica's position and lag on it.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::Span,
    widgets::{Paragraph, Row, StatefulWidget, Table, TableState, Widget},
};
use shared::LinkState;

use crate::{
    output::{human_bytes, tenths},
    tui::{
        app::App,
        screen::{height, panel, right},
        ui::{HEADER, SELECTED},
        widgets::{rate_text, spark_text},
    },
};

/// Draws the screen.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(master) = app.master() else {
        let why = app.cluster_error().unwrap_or("no answer yet");
        Paragraph::new(format!(
            " no shard figures: the master does not answer: {why}"
        ))
        .wrap(ratatui::widgets::Wrap { trim: false })
        .render(area, buf);
        return;
    };
    let shards = &master.shards;
    let top = height(shards.len() + 3).min(area.height / 2).max(4);
    let [top_area, bottom_area] =
        Layout::vertical([Constraint::Length(top), Constraint::Min(0)]).areas(area);

    // Columns before the trend: shard, keys, size, last seq, writes/s, and the gaps.
    let fixed = 5 + 10 + 10 + 12 + 9 + 5;
    let trend = usize::from(top_area.width.saturating_sub(2 + 1 + fixed)).max(1);
    let rows = shards.iter().enumerate().map(|(i, s)| {
        Row::new(vec![
            right(s.shard.to_string()),
            right(s.keys.to_string()),
            right(human_bytes(s.disk_bytes)),
            right(s.last_seq.to_string()),
            right(rate_text(app.history.shard_rate(i))),
            Span::styled(
                spark_text(&app.history.shard_rates(i), trend),
                Style::new().fg(Color::Cyan),
            )
            .into(),
        ])
    });
    let header = Row::new(vec![
        right("SHARD"),
        right("KEYS"),
        right("SIZE"),
        right("LAST SEQ"),
        right("WRITES"),
        "TREND".into(),
    ])
    .style(HEADER);
    let mut state = TableState::default().with_selected(Some(app.shard_selected));
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Min(1),
        ],
    )
    .header(header)
    .column_spacing(1)
    .row_highlight_style(SELECTED)
    .block(panel(format!("Shards of master {}", master.address)));
    StatefulWidget::render(table, top_area, buf, &mut state);

    let shard = shards.get(app.shard_selected).map_or(0, |s| s.shard);
    render_replicas(app, shard, bottom_area, buf);
}

fn render_replicas(app: &App, shard: u32, area: Rect, buf: &mut Buffer) {
    let block = panel(format!("Replicas on shard {shard}"));
    let replicas = app
        .cluster()
        .map(|c| c.replicas.as_slice())
        .unwrap_or_default();
    if replicas.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        Paragraph::new("no replicas have joined this master").render(inner, buf);
        return;
    }
    let rows = replicas.iter().map(|r| {
        let lag = r.shards.iter().find(|s| s.shard == shard);
        let keys = app
            .replica_status(&r.node_id)
            .and_then(|s| s.as_ref().ok())
            .and_then(|s| s.shards.iter().find(|s| s.shard == shard))
            .map_or("—".to_string(), |s| {
                if s.resyncing {
                    "resyncing".to_string()
                } else {
                    s.keys.to_string()
                }
            });
        let link = match r.link {
            LinkState::Up => Span::styled("up", Style::new().fg(Color::Green)),
            LinkState::Down => Span::styled("down", Style::new().fg(Color::Red)),
        };
        let behind_style = match lag {
            Some(l) if l.ops_behind > 0 => Style::new().fg(Color::Yellow),
            _ => Style::new(),
        };
        let dash = || "—".to_string();
        Row::new(vec![
            r.address.clone().into(),
            link.into(),
            right(lag.map_or_else(dash, |l| l.acked_seq.to_string())),
            right(lag.map_or_else(dash, |l| l.ops_behind.to_string())).style(behind_style),
            right(lag.map_or_else(dash, |l| human_bytes(l.bytes_behind))),
            right(lag.map_or_else(dash, |l| tenths(l.secs_since_caught_up))),
            right(keys),
        ])
    });
    let header = Row::new(vec![
        "REPLICA".into(),
        "LINK".into(),
        right("ACKED SEQ"),
        right("OPS BEHIND"),
        right("BYTES"),
        right("LAG"),
        right("KEYS"),
    ])
    .style(HEADER);
    let table = Table::new(
        rows,
        [
            Constraint::Length(21),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(9),
        ],
    )
    .header(header)
    .column_spacing(1)
    .block(block);
    Widget::render(table, area, buf);
}
