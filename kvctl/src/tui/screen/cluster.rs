//! Screen 1, Cluster: every node with its role, epoch, address, state, uptime, shards, keys and
//! disk size, and the write and read rates of each as sparklines; the panel's title says the
//! epoch and whether the master admits writes, its last line how the cluster fails over (the
//! mode; with `--failover=auto`, the master's lease and an election a node stands in, with its
//! votes), its bottom border the last failover.
//!
//! The rows come from [`crate::tui::nodes`]: with a master answering, its row and its
//! replicas' (the link as it sees it); with none, the replicas' own view (their epoch, the
//! master they name, their link). Role and epoch are each node's own word, so they follow a
//! failover. A replica's uptime, keys and disk come from its own `status` (`—` when it does not
//! answer). The master's rate is the writes it takes, a replica's the writes it applies.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, RenderDirection, Row, Sparkline, Table, Widget},
};
use shared::{
    Role,
    cluster::{ElectionStatus, FailoverRecord},
};

use crate::{
    output::{ago, human_bytes, human_millis, human_uptime, lease_text, short_id},
    tui::{
        app::App,
        nodes::{self, NodeView, Overview},
        screen::{WIDE, height, panel, panel_line, right},
        ui::HEADER,
        widgets::{rate_text, spark_data},
    },
};

/// Draws the screen.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let rows = app.nodes();
    // The rows, the header, the failover line and the borders.
    let table_height = height(rows.len() + 4).min(area.height / 2).max(4);
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

/// The first of `forms` that fits in `width` cells, else the last.
fn fitting(forms: Vec<Line<'static>>, width: usize) -> Line<'static> {
    let last = forms.last().cloned().unwrap_or_default();
    forms
        .into_iter()
        .find(|l| l.width() <= width)
        .unwrap_or(last)
}

/// The panel's title: the count, the epoch, and whether the master admits writes.
fn nodes_title(o: &Overview, count: usize, width: usize) -> Line<'static> {
    let head = Span::styled(format!(" Nodes ({count}) "), HEADER);
    let epoch = o
        .epoch
        .map_or_else(String::new, |e| format!("· epoch {e} "));
    let (says, color) = match &o.master {
        Some((_, true)) => ("master writable".to_string(), Color::Green),
        Some((_, false)) => ("master writes paused".to_string(), Color::Yellow),
        None => ("no master answers".to_string(), Color::Red),
    };
    let line = |extra: Option<String>| {
        let mut spans = vec![
            head.clone(),
            Span::raw(epoch.clone()),
            Span::raw("· "),
            Span::styled(says.clone(), Style::new().fg(color).bold()),
        ];
        if let Some(extra) = extra {
            spans.push(Span::raw(extra));
        }
        spans.push(Span::raw(" "));
        Line::from(spans)
    };
    let lost = o.lost_master.as_ref().map(|m| {
        vec![
            format!(
                " · the replicas name {} at {} (down)",
                short_id(&m.node_id),
                m.address
            ),
            format!(" · replicas name {} (down)", short_id(&m.node_id)),
        ]
    });
    let mut forms: Vec<Line<'static>> = lost
        .unwrap_or_default()
        .into_iter()
        .map(|x| line(Some(x)))
        .collect();
    forms.push(line(None));
    fitting(forms, width)
}

/// The last failover in one line, as long as `width` allows.
fn failover_title(f: &FailoverRecord, now_unix_ms: u64, width: usize) -> Line<'static> {
    let when = ago(f.at_unix_ms, now_unix_ms);
    let short = |m: &shared::cluster::Member| short_id(&m.node_id).to_string();
    let long = |m: &shared::cluster::Member| format!("{} ({})", short_id(&m.node_id), m.address);
    let from_long = f
        .from
        .as_ref()
        .map_or_else(String::new, |m| format!(" from {}", long(m)));
    let from_short = f
        .from
        .as_ref()
        .map_or_else(String::new, |m| format!(" {} →", short(m)));
    let took = format!("took {} ms", f.duration_ms);
    let forms = [
        format!(
            " last failover: epoch {}, {}{from_long} to {}, {when}, {took} ",
            f.epoch,
            f.kind,
            long(&f.to)
        ),
        format!(
            " last failover: epoch {}, {}{from_short} {}, {when}, {took} ",
            f.epoch,
            f.kind,
            short(&f.to)
        ),
        format!(
            " last failover epoch {}: {}{from_short} {}, {when}, {} ms ",
            f.epoch,
            f.kind,
            short(&f.to),
            f.duration_ms
        ),
        format!(
            " failover epoch {}:{from_short} {}, {when} ",
            f.epoch,
            short(&f.to)
        ),
    ];
    fitting(
        forms
            .into_iter()
            .map(|t| Line::from(Span::styled(t, Style::new().fg(Color::Cyan))))
            .collect(),
        width,
    )
}

/// How the cluster fails over, in one line as long as `width` allows: the mode; with auto
/// failover the master's lease, an election in progress (epoch, who asks, votes so far out of
/// those needed, who granted) and why it cannot elect, when it cannot.
fn failover_line(o: &Overview, now_unix_ms: u64, width: usize) -> Line<'static> {
    let dim = Style::new().fg(Color::DarkGray);
    let Some(f) = &o.failover else {
        return Line::default();
    };
    if f.mode != "auto" {
        return fitting(
            vec![
                Line::from(vec![
                    Span::styled("failover ", dim),
                    Span::raw("manual: F switches over, kvctl promote when the master is gone"),
                ]),
                Line::from(vec![Span::styled("failover ", dim), Span::raw("manual")]),
            ],
            width,
        );
    }
    let lease = match (&o.master, o.lease_ms) {
        (Some(_), Some(0)) => Some(Span::styled(
            format!("master lease {}", lease_text(0)),
            Style::new().fg(Color::Red).bold(),
        )),
        (Some(_), Some(ms)) => Some(Span::styled(
            format!("master lease {}", lease_text(ms)),
            Style::new().fg(Color::Green),
        )),
        _ => None,
    };
    // Detail 2: the candidate's address, 1: its votes and since when, 0: the count only.
    let election = |e: &ElectionStatus, detail: u8| {
        let who = if detail >= 2 {
            format!(
                "{} ({})",
                short_id(&e.candidate.node_id),
                e.candidate.address
            )
        } else {
            short_id(&e.candidate.node_id).to_string()
        };
        let voters = e
            .votes
            .iter()
            .map(|v| short_id(v))
            .collect::<Vec<_>>()
            .join(", ");
        let text = if detail >= 1 {
            format!(
                "election of epoch {}: {who} asks, votes {}/{} ({voters}), started {} ago",
                e.epoch,
                e.votes.len(),
                e.needed,
                human_millis(now_unix_ms.saturating_sub(e.started_unix_ms))
            )
        } else {
            format!(
                "election {}: {who} asks, {}/{} votes",
                e.epoch,
                e.votes.len(),
                e.needed
            )
        };
        Span::styled(text, Style::new().fg(Color::Yellow).bold())
    };
    let form = |detail: u8| {
        let long = detail >= 1;
        let mut spans = vec![
            Span::styled("failover ", dim),
            Span::raw(if long {
                format!("auto, timeout {} ms", f.timeout_ms)
            } else {
                "auto".to_string()
            }),
        ];
        let mut part = |span: Span<'static>| {
            spans.push(Span::styled(" · ", dim));
            spans.push(span);
        };
        if let Some(l) = &lease {
            part(l.clone());
        }
        if let Some(e) = &o.election {
            part(election(e, detail));
        }
        if let Some(note) = &f.note {
            part(Span::styled(
                if long {
                    note.clone()
                } else {
                    "cannot elect".to_string()
                },
                Style::new().fg(Color::Yellow),
            ));
        }
        Line::from(spans)
    };
    fitting(vec![form(2), form(1), form(0)], width)
}

fn render_nodes(app: &App, rows: &[NodeView], area: Rect, buf: &mut Buffer) {
    let wide = area.width >= WIDE;
    let dash = || "—".to_string();
    let overview = nodes::overview(rows);
    let mut header = vec![Cell::from("ROLE"), "ADDRESS".into()];
    let mut widths = vec![Constraint::Length(7), Constraint::Length(21)];
    if wide {
        header.push("NODE".into());
        widths.push(Constraint::Length(8));
    }
    header.extend([right("EPOCH"), "STATE".into(), right("UPTIME")]);
    widths.extend([
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(11),
    ]);
    if wide {
        header.push(right("SHARDS"));
        widths.push(Constraint::Length(6));
    }
    header.extend([right("KEYS"), right("DISK")]);
    widths.extend([Constraint::Length(9), Constraint::Length(9)]);
    if wide {
        header.push(right("LOG"));
        widths.push(Constraint::Length(9));
    }
    if wide {
        header.extend([right("WRITES"), "FOLLOWS".into()]);
        widths.extend([Constraint::Length(9), Constraint::Length(8)]);
    }
    let table_rows = rows.iter().map(|n| {
        let mut cells = vec![Cell::from(n.role.as_str()), n.address.clone().into()];
        if wide {
            cells.push(short_id(&n.node_id).to_string().into());
        }
        let behind = n.epoch.zip(overview.epoch).is_some_and(|(e, top)| e < top);
        let epoch_style = if behind {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        cells.push(
            Cell::from(Line::from(n.epoch.map_or_else(dash, |e| e.to_string())).right_aligned())
                .style(epoch_style),
        );
        cells.push(Span::styled(n.state.text(), Style::new().fg(n.state.color())).into());
        let own = n.own.as_ref();
        cells.push(right(
            own.map_or_else(dash, |s| human_uptime(s.uptime_secs)),
        ));
        if wide {
            cells.push(right(if n.shards == 0 {
                dash()
            } else {
                n.shards.to_string()
            }));
        }
        cells.push(right(own.map_or_else(dash, |s| {
            s.shards.iter().map(|s| s.keys).sum::<u64>().to_string()
        })));
        // The shards' data; red while the node's storage takes no writes (a full disk).
        let refusing = own.is_some_and(|s| s.storage.problem.is_some());
        let disk = right(own.map_or_else(dash, |s| {
            human_bytes(s.shards.iter().map(|s| s.disk_bytes).sum())
        }));
        cells.push(if refusing {
            disk.style(Style::new().fg(Color::Red))
        } else {
            disk
        });
        if wide {
            // The node's log (journal and replication log), apart from the data.
            cells.push(if refusing {
                Cell::from(Line::from("NO WRITES").right_aligned())
                    .style(Style::new().fg(Color::Red))
            } else {
                right(own.map_or_else(dash, |s| human_bytes(s.storage.log_disk_bytes)))
            });
        }
        if wide {
            cells.push(right(rate_text(
                app.history.node_rate(&n.node_id).filter(|_| n.answers()),
            )));
            let follows = match (n.role, &n.follows) {
                (Role::Replica, Some(m)) => short_id(&m.node_id).to_string(),
                _ => dash(),
            };
            cells.push(follows.into());
        }
        Row::new(cells)
    });
    let inner_width = usize::from(area.width.saturating_sub(4));
    let mut block = panel_line(nodes_title(&overview, rows.len(), inner_width));
    if let (Some(f), Some(d)) = (&overview.last_failover, app.data.as_ref()) {
        block = block.title_bottom(failover_title(f, d.at_unix_ms, inner_width));
    }
    let inner = block.inner(area);
    block.render(area, buf);
    // The failover line only below a header and a row at least.
    let line_height = u16::from(inner.height >= 3);
    let [table_area, line_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(line_height)]).areas(inner);
    Table::new(table_rows, widths)
        .header(Row::new(header).style(HEADER))
        .column_spacing(1)
        .render(table_area, buf);
    if let Some(d) = app.data.as_ref().filter(|_| line_height > 0) {
        Paragraph::new(failover_line(
            &overview,
            d.at_unix_ms,
            usize::from(line_area.width),
        ))
        .render(line_area, buf);
    }
}

/// One sparkline per node: `series(node_id)` gives its rates (oldest first) and the latest.
fn render_rates(
    rows: &[NodeView],
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
        // A node that does not answer has no current rate (its history stays drawn).
        let latest = latest.filter(|_| n.answers());
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
