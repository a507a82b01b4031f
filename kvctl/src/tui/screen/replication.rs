//! Screen 3, Replication: per replica and shard, the lag in operations, bytes and seconds, the
//! link, the resync counts and an estimate of the time to catch up; under it, each replica's
//! total lag over the last minutes as a chart.
//!
//! The catch-up estimate divides the lag by the rate at which it shrank over the last
//! [`DRAIN_WINDOW`](crate::tui::history::DRAIN_WINDOW); a lag that does not shrink says so
//! instead of guessing.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{
        Axis, Chart, Dataset, GraphType, Paragraph, Row, StatefulWidget, Table, TableState, Widget,
    },
};
use shared::LinkState;

use crate::{
    output::{human_bytes, human_uptime, tenths},
    tui::{
        app::App,
        history::{CatchUp, LAG_WINDOW},
        screen::{WIDE, height, panel, right},
        ui::{HEADER, SELECTED},
    },
};

/// Line colours of the chart, one per replica in turn.
const COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Red,
];

/// Caught up this recently (seconds) counts as in sync.
const IN_SYNC_SECS: f64 = 1.0;

fn catch_up_text(c: CatchUp) -> (String, Color) {
    match c {
        CatchUp::CaughtUp => ("caught up".into(), Color::Green),
        CatchUp::In(d) => (
            format!("~{}", human_uptime(d.as_secs().max(1))),
            Color::Yellow,
        ),
        CatchUp::NotDraining => ("not draining".into(), Color::Red),
        CatchUp::Measuring => ("measuring…".into(), Color::DarkGray),
    }
}

/// The smallest of 10, 20, 50, 100, 200, 500… at or above `value`: a y-axis top that reads well.
fn nice_ceiling(value: f64) -> f64 {
    let mut top = 10.0;
    while top < value {
        for step in [2.0, 2.5, 2.0] {
            top *= step;
            if top >= value {
                break;
            }
        }
    }
    top
}

/// A span for an axis label: `5m`, `2m30s`, `30s`.
fn span_label(secs: u64) -> String {
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Draws the screen.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(cluster) = app.cluster() else {
        let why = app.cluster_error().unwrap_or("no answer yet");
        Paragraph::new(format!(
            " no replication figures: the master does not answer: {why}"
        ))
        .wrap(ratatui::widgets::Wrap { trim: false })
        .render(area, buf);
        return;
    };
    if cluster.replicas.is_empty() {
        let block = panel("Replication");
        let inner = block.inner(area);
        block.render(area, buf);
        Paragraph::new("no replicas have joined this master").render(inner, buf);
        return;
    }
    let rows = app.replication_rows();
    let table_height = height(rows.len() + 3).min(area.height * 45 / 100).max(4);
    let [table_area, chart_area] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(area);

    let table_rows = rows.iter().map(|(r, s)| {
        let link = match r.link {
            LinkState::Up => Span::styled("up", Style::new().fg(Color::Green)),
            LinkState::Down => Span::styled("down", Style::new().fg(Color::Red)),
        };
        // A replica caught up within the last second trails only by the writes in flight: it
        // is in sync, and a drain-rate estimate over one or two operations would be noise.
        let catch_up = if s.secs_since_caught_up < IN_SYNC_SECS {
            CatchUp::CaughtUp
        } else {
            app.history.catch_up(&r.node_id, s.shard)
        };
        let (eta, eta_color) = catch_up_text(catch_up);
        let behind = if s.ops_behind > 0 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        Row::new(vec![
            r.address.clone().into(),
            right(s.shard.to_string()),
            link.into(),
            right(s.ops_behind.to_string()).style(behind),
            right(human_bytes(s.bytes_behind)),
            right(tenths(s.secs_since_caught_up)),
            right(format!("{}/{}", s.partial_resyncs, s.full_resyncs)),
            Span::styled(eta, Style::new().fg(eta_color)).into(),
        ])
    });
    let header = Row::new(vec![
        "REPLICA".into(),
        right("SHARD"),
        "LINK".into(),
        right("OPS"),
        right("BYTES"),
        right("LAG"),
        right("P/F"),
        "CATCH-UP".into(),
    ])
    .style(HEADER);
    let mut state = TableState::default().with_selected(Some(app.replication_selected));
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(21),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Min(8),
        ],
    )
    .header(header)
    .column_spacing(1)
    .row_highlight_style(SELECTED)
    .block(panel(if area.width >= WIDE {
        "Lag per replica and shard: OPS and BYTES behind, LAG since caught up, P/F resyncs \
         (partial/full)"
    } else {
        "Lag: OPS/BYTES behind, LAG since caught up, P/F resyncs"
    }));
    StatefulWidget::render(table, table_area, buf, &mut state);

    render_chart(app, chart_area, buf);
}

fn render_chart(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(cluster) = app.cluster() else {
        return;
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = cluster
        .replicas
        .iter()
        .map(|r| {
            let points = app.history.lag_points(&r.node_id, app.now);
            let now = points.last().map_or(0.0, |p| p.1);
            (format!("{} {now:.0} ops", r.address), points)
        })
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max * 1.1);
    let datasets = series
        .iter()
        .enumerate()
        .map(|(i, (name, points))| {
            Dataset::default()
                .name(name.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(COLORS[i % COLORS.len()]))
                .data(points)
        })
        .collect();
    // The span of the samples, rounded up to a minute, between 1 minute and the whole window.
    let oldest = series
        .iter()
        .flat_map(|(_, p)| p.first().map(|&(x, _)| -x))
        .fold(0.0_f64, f64::max);
    // Whole seconds of a span of at most LAG_WINDOW.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let span = ((oldest / 60.0).ceil() as u64 * 60).clamp(60, LAG_WINDOW.as_secs());
    #[allow(clippy::cast_precision_loss)]
    let window = span as f64;
    Chart::new(datasets)
        .block(panel(format!(
            "Operations behind per replica, last {}",
            span_label(span)
        )))
        .x_axis(
            Axis::default()
                .bounds([-window, 0.0])
                .style(Style::new().fg(Color::DarkGray))
                .labels([
                    Line::from(format!("-{}", span_label(span))),
                    Line::from(format!("-{}", span_label(span / 2))),
                    Line::from("now"),
                ]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .style(Style::new().fg(Color::DarkGray))
                .labels([Line::from("0"), Line::from(format!("{top:.0}"))]),
        )
        .legend_position(Some(ratatui::widgets::LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Percentage(90), Constraint::Percentage(50)))
        .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_and_spans_read_well() {
        assert_eq!(nice_ceiling(0.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(446.6), 500.0);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
        assert_eq!(span_label(300), "5m");
        assert_eq!(span_label(150), "2m30s");
        assert_eq!(span_label(30), "30s");
    }
}
