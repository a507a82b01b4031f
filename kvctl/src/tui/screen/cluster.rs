//! Screen 1, Cluster: every node with its role, address, state, uptime, shards, keys and disk
//! size, and the write rate of each as a sparkline.
//!
//! The master's row and the replicas' link come from the master's `cluster_status`; a
//! replica's uptime, keys and disk come from its own `status` (asked directly; `—` when it
//! does not answer). The master's rate is the writes it takes, a replica's the writes it
//! applies. kvd counts no reads, so the read rate is shown as not available, with the reason,
//! rather than as a made-up number.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Paragraph, RenderDirection, Row, Sparkline, Table, Widget},
};
use shared::{LinkState, NodeStatus, Role};

use crate::{
    output::{human_bytes, human_uptime, short_id},
    tui::{
        app::App,
        screen::{WIDE, height, panel, right},
        ui::HEADER,
        widgets::{rate_text, spark_data},
    },
};

/// One node as the screen shows it.
struct NodeRow {
    role: Role,
    address: String,
    node_id: String,
    state: (&'static str, Color),
    /// From the node's own status, when it answered.
    own: Option<NodeStatus>,
    shards: usize,
}

fn node_rows(app: &App) -> Vec<NodeRow> {
    let mut rows = Vec::new();
    if let Some(master) = app.master() {
        rows.push(NodeRow {
            role: Role::Master,
            address: master.address.clone(),
            node_id: master.node_id.clone(),
            state: ("up", Color::Green),
            own: Some(master.clone()),
            shards: master.shards.len(),
        });
    }
    match app.cluster() {
        Some(cluster) => {
            for r in &cluster.replicas {
                let own = app.replica_status(&r.node_id);
                let state = match (r.link, own) {
                    (LinkState::Down, _) => ("link down", Color::Red),
                    (LinkState::Up, Some(Ok(s))) if s.shards.iter().any(|s| s.resyncing) => {
                        ("resyncing", Color::Yellow)
                    }
                    (LinkState::Up, Some(Ok(_))) => ("up", Color::Green),
                    (LinkState::Up, _) => ("no answer", Color::Yellow),
                };
                rows.push(NodeRow {
                    role: Role::Replica,
                    address: r.address.clone(),
                    node_id: r.node_id.clone(),
                    state,
                    own: own.and_then(|s| s.as_ref().ok()).cloned(),
                    shards: r.shards.len(),
                });
            }
        }
        None => {
            // The endpoint is a replica whose master does not answer: show the replica alone.
            if let Some(d) = app
                .data
                .as_ref()
                .filter(|d| d.endpoint.role == Role::Replica)
            {
                rows.push(NodeRow {
                    role: Role::Replica,
                    address: d.endpoint.address.clone(),
                    node_id: d.endpoint.node_id.clone(),
                    state: ("no master", Color::Red),
                    own: Some(d.endpoint.clone()),
                    shards: d.endpoint.shards.len(),
                });
            }
        }
    }
    rows
}

/// Draws the screen.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let rows = node_rows(app);
    let table_height = height(rows.len() + 3).min(area.height / 2).max(4);
    // Sparklines up to 6 rows high each; the write and read panels share what the table leaves
    // and take no more than that needs.
    let rates_height = height(rows.len() * 6 + 2)
        .min(area.height.saturating_sub(table_height) / 2)
        .max(3);
    let [table_area, rates_area, reads_area, _] = Layout::vertical([
        Constraint::Length(table_height),
        Constraint::Length(rates_height),
        Constraint::Length(rates_height),
        Constraint::Min(0),
    ])
    .areas(area);
    render_nodes(app, &rows, table_area, buf);
    render_rates(
        &rows,
        rates_area,
        buf,
        "Writes/s (master: taken, replicas: applied)",
        |id| (app.history.node_rates(id), app.history.node_rate(id)),
    );
    render_rates(
        &rows,
        reads_area,
        buf,
        "Reads/s (keys read by get, mget and scan)",
        |id| (app.history.read_rates(id), app.history.read_rate(id)),
    );
}

fn render_nodes(app: &App, rows: &[NodeRow], area: Rect, buf: &mut Buffer) {
    let wide = area.width >= WIDE;
    let dash = || "—".to_string();
    let mut header = vec![ratatui::widgets::Cell::from("ROLE"), "ADDRESS".into()];
    let mut widths = vec![Constraint::Length(7), Constraint::Length(21)];
    if wide {
        header.push("NODE".into());
        widths.push(Constraint::Length(8));
    }
    header.extend([
        "STATE".into(),
        right("UPTIME"),
        right("SHARDS"),
        right("KEYS"),
        right("DISK"),
    ]);
    widths.extend([
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(9),
    ]);
    if wide {
        header.push(right("WRITES"));
        widths.push(Constraint::Length(9));
    }
    let table_rows = rows.iter().map(|n| {
        let mut cells = vec![
            ratatui::widgets::Cell::from(n.role.as_str()),
            n.address.clone().into(),
        ];
        if wide {
            cells.push(short_id(&n.node_id).to_string().into());
        }
        cells.push(Span::styled(n.state.0, Style::new().fg(n.state.1)).into());
        let own = n.own.as_ref();
        cells.push(right(
            own.map_or_else(dash, |s| human_uptime(s.uptime_secs)),
        ));
        cells.push(right(n.shards.to_string()));
        cells.push(right(own.map_or_else(dash, |s| {
            s.shards.iter().map(|s| s.keys).sum::<u64>().to_string()
        })));
        cells.push(right(own.map_or_else(dash, |s| {
            human_bytes(s.shards.iter().map(|s| s.disk_bytes).sum())
        })));
        if wide {
            cells.push(right(rate_text(app.history.node_rate(&n.node_id))));
        }
        Row::new(cells)
    });
    let title = format!("Nodes ({})", rows.len());
    Table::new(table_rows, widths)
        .header(Row::new(header).style(HEADER))
        .column_spacing(1)
        .block(panel(title))
        .render(area, buf);
}

/// One sparkline per node: `series(node_id)` gives its rates (oldest first) and the latest.
fn render_rates(
    rows: &[NodeRow],
    area: Rect,
    buf: &mut Buffer,
    title: &str,
    series: impl Fn(&str) -> (Vec<f64>, Option<f64>),
) {
    let block = panel(title);
    let inner = block.inner(area);
    block.render(area, buf);
    if rows.is_empty() || inner.height == 0 {
        return;
    }
    let each = (inner.height / height(rows.len())).clamp(1, 6);
    let areas = Layout::vertical(rows.iter().map(|_| Constraint::Length(each))).split(inner);
    for (n, row_area) in rows.iter().zip(areas.iter()) {
        let [label_area, spark_area] =
            Layout::horizontal([Constraint::Length(40), Constraint::Min(0)])
                .spacing(1)
                .areas(*row_area);
        let (rates, latest) = series(&n.node_id);
        let label = Line::from(vec![
            Span::raw(format!("{:<8}", n.role.as_str())),
            Span::raw(format!("{:<21} ", n.address)),
            Span::styled(format!("{:>9}", rate_text(latest)), Style::new().bold()),
        ]);
        let label_row = Rect {
            y: label_area.y + (label_area.height - 1) / 2,
            height: 1,
            ..label_area
        };
        Paragraph::new(label).render(label_row, buf);
        let color = if n.role == Role::Master {
            Color::Cyan
        } else {
            Color::Magenta
        };
        // Newest at the right edge, older values scrolling to the left.
        let mut data = spark_data(&rates, usize::from(spark_area.width));
        data.reverse();
        Sparkline::default()
            .data(data)
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(color))
            .render(spark_area, buf);
    }
}
