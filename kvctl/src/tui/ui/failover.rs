//! The failover popup: the plan as the node computed it, the candidate picked, the
//! confirmation prompt, the progress and the outcome, with the `kvctl` command line it runs.
//!
//! ```text
//!  ╭ Switchover ─────────────────────────────────╮
//!  │ body: the plan (scrolls with PgUp/PgDn),     │
//!  │       or the outcome once done               │
//!  │ foot: why the last key did nothing · prompt  │
//!  │       $ kvctl … · the keys                   │
//!  ╰──────────────────────────────────────────────╯
//! ```

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};
use shared::cluster::{FailoverPlan, Member, PromotionPlan};

use crate::{
    output::short_id,
    tui::{
        app::{App, FailoverKind, Flow, Plan, PlanState, Step},
        event::FailoverDone,
        ui::HEADER,
        widgets::{centered, hints, input_line, popup_frame},
    },
};

/// Width of the labels in front of values (`master`, `target`, `why`, …).
const LABEL: usize = 12;

const DIM: Style = Style::new().fg(Color::DarkGray);
const BAD: Style = Style::new().fg(Color::Red);
const GOOD: Style = Style::new().fg(Color::Green);
const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

/// Popups at least this wide name nodes by their whole id; narrower ones by its first 8
/// characters (the prompt and the command line always give it whole).
const FULL_IDS: usize = 90;

/// `<node id> at <address>`, the id shortened in a narrow popup.
fn who(m: &Member, width: usize) -> String {
    if width >= FULL_IDS {
        format!("{} at {}", m.node_id, m.address)
    } else {
        format!("{} at {}", short_id(&m.node_id), m.address)
    }
}

/// `text` cut to `width` cells, with `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Words of `text` in lines of at most `width` characters; a longer word is broken across
/// lines, never cut (messages and command lines are shown in full).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let rest: String = line.chars().skip(width).collect();
            lines.push(line.chars().take(width).collect());
            line = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `label  value`, the value wrapped under itself.
fn labelled(label: &str, value: &str, style: Style, width: usize) -> Vec<Line<'static>> {
    wrap(value, width.saturating_sub(LABEL))
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let head = if i == 0 { label } else { "" };
            Line::from(vec![
                Span::styled(format!("{head:<LABEL$}"), Style::new().bold()),
                Span::styled(text, style),
            ])
        })
        .collect()
}

/// Rows of cells as aligned columns (`right`: right-aligned), two spaces apart, each line cut
/// to `width`; the first row is the header.
fn columns(
    rows: &[Vec<String>],
    right: &[bool],
    styles: &[Style],
    width: usize,
) -> Vec<Line<'static>> {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; n];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .zip(styles)
        .map(|(row, style)| {
            let mut text = String::new();
            for (i, &w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    text.push_str("  ");
                }
                if right.get(i).copied().unwrap_or(false) {
                    text.push_str(&format!("{cell:>w$}"));
                } else {
                    text.push_str(&format!("{cell:<w$}"));
                }
            }
            Line::styled(cut(text.trim_end(), width), *style)
        })
        .collect()
}

/// Draws the popup over `area`.
pub fn render(app: &App, flow: &Flow, area: Rect, buf: &mut Buffer) {
    let width = area.width.min(100);
    let inner_width = usize::from(width.saturating_sub(4));
    let body = body(app, flow, inner_width);
    let foot = foot(app, flow, inner_width);
    let wanted = u16::try_from(body.len() + foot.len() + 3).unwrap_or(u16::MAX);
    let popup = centered(
        area,
        width,
        wanted.min(area.height.saturating_sub(2)).max(8),
    );
    let (title, color) = title(flow);
    let inner = popup_frame(popup, buf, title, color);
    let foot_height = u16::try_from(foot.len())
        .unwrap_or(u16::MAX)
        .min(inner.height);
    // A blank line between the plan and the prompt, when there is room for it.
    let spacer = u16::from(body.len() + foot.len() < usize::from(inner.height));
    let [body_area, _, foot_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(spacer),
        Constraint::Length(foot_height),
    ])
    .areas(inner);
    let visible = usize::from(body_area.height);
    let most = body.len().saturating_sub(visible);
    let first = usize::from(flow.scroll).min(most);
    let mut shown: Vec<Line<'static>> = body.into_iter().skip(first).take(visible).collect();
    if most > first
        && let Some(last) = shown.last_mut()
    {
        *last = Line::styled(format!("… {} more lines (PgDn)", most - first), DIM);
    }
    Paragraph::new(shown).render(body_area, buf);
    Paragraph::new(foot).render(foot_area, buf);
}

fn title(flow: &Flow) -> (Line<'static>, Color) {
    let step = match &flow.step {
        Step::Plan => "plan",
        Step::Confirm { .. } => "confirm",
        Step::Running { .. } => "running",
        Step::Done { outcome: Ok(_), .. } => "done",
        Step::Done {
            outcome: Err(_), ..
        } => "refused",
    };
    match flow.kind {
        FailoverKind::Switchover => (
            Line::from(vec![
                Span::raw(" Switchover ").bold(),
                Span::raw(format!("(kvctl failover) · {step} ")),
            ]),
            Color::Yellow,
        ),
        FailoverKind::Promotion => (
            Line::from(vec![
                Span::raw(" Promotion ").bold(),
                Span::raw(if matches!(flow.step, Step::Plan | Step::Confirm { .. }) {
                    format!("(kvctl promote): the master does not answer · {step} ")
                } else {
                    format!("(kvctl promote) · {step} ")
                }),
            ]),
            Color::Red,
        ),
    }
}

fn body(app: &App, flow: &Flow, width: usize) -> Vec<Line<'static>> {
    if let Step::Done { action, outcome } = &flow.step {
        return outcome_body(flow, action.candidate(), outcome, width);
    }
    let mut lines = match flow.kind {
        FailoverKind::Switchover => switchover_body(flow, width),
        FailoverKind::Promotion => promotion_body(app, flow, width),
    };
    match &flow.plan {
        PlanState::Asking => {
            let whom = match (flow.kind, flow.candidate()) {
                (FailoverKind::Switchover, _) => "the master".to_string(),
                (FailoverKind::Promotion, Some(c)) => short_id(&c.node_id).to_string(),
                (FailoverKind::Promotion, None) => "the candidate".to_string(),
            };
            lines.push(Line::default());
            lines.push(Line::styled(
                format!("… asking {whom} for the plan"),
                Style::new().fg(Color::Yellow),
            ));
        }
        PlanState::Failed(why) => {
            lines.push(Line::default());
            lines.extend(labelled("no plan", why, BAD, width));
        }
        PlanState::Ready(_) => {}
    }
    lines
}

fn switchover_body(flow: &Flow, width: usize) -> Vec<Line<'static>> {
    let plan = match flow.shown_plan() {
        Some(Plan::Switchover(p)) => Some(p),
        _ => None,
    };
    let stale = !matches!(flow.plan, PlanState::Ready(_));
    let mut lines = Vec::new();
    match (plan, &flow.master) {
        (Some(p), _) => lines.extend(labelled(
            "master",
            &format!(
                "{}, epoch {} (the new master takes {})",
                who(&p.master, width),
                p.epoch,
                p.epoch + 1
            ),
            Style::new(),
            width,
        )),
        (None, Some(m)) => lines.extend(labelled("master", &who(m, width), Style::new(), width)),
        (None, None) => {}
    }
    if flow.candidates.is_empty() {
        if plan.is_some() {
            lines.push(Line::default());
            lines.push(Line::styled("no replica to hand over to", BAD));
        }
    } else {
        lines.push(Line::default());
        lines.extend(candidates_table(flow, plan, stale, width));
    }
    if let Some(p) = plan.filter(|_| !stale) {
        lines.push(Line::default());
        target_lines(flow, p, width, &mut lines);
    }
    lines
}

/// The candidates with the master's verdicts, the picked one marked.
fn candidates_table(
    flow: &Flow,
    plan: Option<&FailoverPlan>,
    stale: bool,
    width: usize,
) -> Vec<Line<'static>> {
    let mut rows = vec![
        ["", "NODE", "ADDRESS", "LINK", "RESYNC", "BEHIND", "VERDICT"]
            .map(String::from)
            .to_vec(),
    ];
    let mut styles = vec![HEADER];
    for (i, m) in flow.candidates.iter().enumerate() {
        let c = plan.and_then(|p| p.candidates.iter().find(|c| c.node.node_id == m.node_id));
        let mark = if i == flow.selected { "▶" } else { "" };
        let dash = || "—".to_string();
        rows.push(vec![
            mark.to_string(),
            short_id(&m.node_id).to_string(),
            m.address.clone(),
            c.map_or_else(dash, |c| if c.link_up { "up" } else { "down" }.to_string()),
            c.map_or_else(dash, |c| if c.resyncing { "yes" } else { "no" }.to_string()),
            c.map_or_else(dash, |c| c.ops_behind.to_string()),
            c.map_or_else(String::new, |c| c.verdict.clone()),
        ]);
        let eligible = c.is_some_and(|c| c.link_up && !c.resyncing);
        let mut style = if stale {
            DIM
        } else if eligible {
            Style::new()
        } else {
            BAD
        };
        if i == flow.selected {
            style = style.add_modifier(Modifier::BOLD);
        }
        styles.push(style);
    }
    columns(
        &rows,
        &[false, false, false, false, false, true, false],
        &styles,
        width,
    )
}

fn target_lines(flow: &Flow, p: &FailoverPlan, width: usize, lines: &mut Vec<Line<'static>>) {
    match &p.target {
        Some(t) => {
            lines.extend(labelled("target", &who(t, width), GOOD.bold(), width));
            lines.extend(labelled("why", &p.reason, Style::new(), width));
        }
        None => lines.extend(labelled(
            "target",
            &format!("none: {}", p.reason),
            BAD,
            width,
        )),
    }
    if let Some((pick, reason)) = &flow.suggested
        && flow.candidate().is_some_and(|c| c.node_id != pick.node_id)
    {
        lines.extend(labelled(
            "its pick",
            &format!("{}: {reason}", short_id(&pick.node_id)),
            DIM,
            width,
        ));
    }
}

fn promotion_body(app: &App, flow: &Flow, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let nodes = app.nodes();
    if !flow.candidates.is_empty() {
        let mut rows = vec![
            ["", "REPLICA", "ADDRESS", "EPOCH", "STATE", "FOLLOWS"]
                .map(String::from)
                .to_vec(),
        ];
        let mut styles = vec![HEADER];
        for (i, m) in flow.candidates.iter().enumerate() {
            let n = nodes.iter().find(|n| n.node_id == m.node_id);
            let dash = || "—".to_string();
            rows.push(vec![
                if i == flow.selected { "▶" } else { "" }.to_string(),
                short_id(&m.node_id).to_string(),
                m.address.clone(),
                n.and_then(|n| n.epoch).map_or_else(dash, |e| e.to_string()),
                n.map_or_else(dash, |n| n.state.text().to_string()),
                n.and_then(|n| n.follows.as_ref())
                    .map_or_else(dash, |f| short_id(&f.node_id).to_string()),
            ]);
            let mut style = if n.is_some_and(|n| n.answers()) {
                Style::new()
            } else {
                DIM
            };
            if i == flow.selected {
                style = style.add_modifier(Modifier::BOLD);
            }
            styles.push(style);
        }
        lines.extend(columns(
            &rows,
            &[false, false, false, true, false, false],
            &styles,
            width,
        ));
    }
    let plan = match flow.shown_plan() {
        Some(Plan::Promotion(p)) => Some(p),
        _ => None,
    };
    if let Some(p) = plan {
        let stale = !matches!(flow.plan, PlanState::Ready(_));
        let mut plan_lines = promotion_plan(flow, p, width);
        if stale {
            for l in &mut plan_lines {
                *l = l.clone().style(DIM);
            }
        }
        lines.extend(plan_lines);
    }
    lines
}

fn promotion_plan(flow: &Flow, p: &PromotionPlan, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    lines.extend(labelled(
        "candidate",
        &format!(
            "{}, epoch {} (it takes {})",
            who(&p.candidate, width),
            p.epoch,
            p.epoch + 1
        ),
        Style::new().bold(),
        width,
    ));
    match &p.old_master {
        Some(m) if p.old_master_answers => lines.extend(labelled(
            "old master",
            &format!("{}: still answers (use a switchover)", who(m, width)),
            BAD,
            width,
        )),
        Some(m) => lines.extend(labelled(
            "old master",
            &format!("{}: does not answer", who(m, width)),
            Style::new(),
            width,
        )),
        None => lines.extend(labelled("old master", "unknown", Style::new(), width)),
    }
    // The old master is said above; other members that do not answer here.
    let unreachable: Vec<String> = p
        .unreachable
        .iter()
        .filter(|m| p.old_master.as_ref().is_none_or(|o| o.node_id != m.node_id))
        .map(|m| who(m, width))
        .collect();
    if !unreachable.is_empty() {
        lines.extend(labelled("unreachable", &unreachable.join(", "), DIM, width));
    }
    lines.push(Line::default());
    // One column per other replica, in the order of the first shard.
    let others: Vec<String> = p
        .shards
        .first()
        .map(|s| s.replicas.iter().map(|r| r.node_id.clone()).collect())
        .unwrap_or_default();
    let mut header = vec![
        "SHARD".to_string(),
        short_id(&p.candidate.node_id).to_string(),
    ];
    header.extend(others.iter().map(|id| short_id(id).to_string()));
    header.extend(["MASTER SEQ", "CATCH UP FROM", "AFTER", "LOST"].map(String::from));
    let mut rows = vec![header];
    let mut styles = vec![HEADER];
    for s in &p.shards {
        let mut row = vec![s.shard.to_string(), s.candidate.to_string()];
        for id in &others {
            row.push(
                s.replicas
                    .iter()
                    .find(|r| &r.node_id == id)
                    .map_or_else(|| "—".to_string(), |r| r.pos.to_string()),
            );
        }
        row.extend([
            s.master_seq_heard.to_string(),
            s.catch_up_from
                .as_ref()
                .map_or_else(|| "—".to_string(), |r| short_id(&r.node_id).to_string()),
            s.after_catch_up.to_string(),
            s.lost.to_string(),
        ]);
        rows.push(row);
        styles.push(if s.lost > 0 { BAD } else { Style::new() });
    }
    let mut right = vec![true, false];
    right.extend(others.iter().map(|_| false));
    right.extend([true, false, false, true]);
    lines.extend(columns(&rows, &right, &styles, width));
    if p.lost > 0 {
        lines.extend(labelled(
            "lost",
            &format!(
                "{} writes: the old master had them, no live node has",
                p.lost
            ),
            BAD.bold(),
            width,
        ));
    } else {
        lines.extend(labelled(
            "lost",
            "nothing: every write heard of is on the candidate, or caught up",
            GOOD,
            width,
        ));
    }
    if let Some(refusal) = &p.refusal {
        lines.extend(labelled("refused", refusal, BAD, width));
    }
    let force = if flow.force {
        Line::from(vec![
            Span::styled(format!("{:<LABEL$}", "--force"), Style::new().bold()),
            Span::styled("[x] on", BAD.bold()),
            Span::styled(
                if p.lost > 0 {
                    format!(": {} writes will be lost (f: off)", p.lost)
                } else {
                    " (f: off)".to_string()
                },
                BAD,
            ),
        ])
    } else if p.lost > 0 {
        Line::from(vec![
            Span::styled(format!("{:<LABEL$}", "--force"), Style::new().bold()),
            Span::raw("[ ] off"),
            Span::styled(format!(": f accepts losing these {} writes", p.lost), BAD),
        ])
    } else {
        Line::from(vec![
            Span::styled(format!("{:<LABEL$}", "--force"), Style::new().bold()),
            Span::styled("[ ] off (f toggles)", DIM),
        ])
    };
    lines.push(force);
    lines
}

fn outcome_body(
    flow: &Flow,
    candidate: &Member,
    outcome: &Result<FailoverDone, String>,
    width: usize,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match outcome {
        Ok(FailoverDone::Switchover(r)) => {
            lines.push(Line::styled("✔ switched over", GOOD.bold()));
            lines.push(Line::default());
            lines.extend(labelled(
                "new master",
                &who(candidate, width),
                GOOD.bold(),
                width,
            ));
            lines.extend(labelled(
                "epoch",
                &r.epoch.to_string(),
                Style::new().bold(),
                width,
            ));
            lines.extend(labelled(
                "writes",
                &format!("paused for {} ms", r.pause_ms),
                Style::new(),
                width,
            ));
            if !r.positions.is_empty() {
                let at: Vec<String> = r
                    .positions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("shard {i} at {p}"))
                    .collect();
                lines.extend(labelled(
                    "handed over",
                    &format!("{}, all applied by the new master", at.join(", ")),
                    Style::new(),
                    width,
                ));
            }
            lines.extend(labelled(
                "old master",
                &format!("{}: now its replica", who(&r.plan.master, width)),
                Style::new(),
                width,
            ));
        }
        Ok(FailoverDone::Promotion(r)) => {
            lines.push(Line::styled("✔ promoted", GOOD.bold()));
            lines.push(Line::default());
            lines.extend(labelled(
                "new master",
                &who(candidate, width),
                GOOD.bold(),
                width,
            ));
            lines.extend(labelled(
                "epoch",
                &r.epoch.to_string(),
                Style::new().bold(),
                width,
            ));
            lines.extend(labelled(
                "caught up",
                &format!("{} entries from other replicas first", r.caught_up),
                Style::new(),
                width,
            ));
            if r.plan.lost > 0 {
                lines.extend(labelled(
                    "lost",
                    &format!("{} writes (forced)", r.plan.lost),
                    BAD.bold(),
                    width,
                ));
            } else {
                lines.extend(labelled("lost", "nothing", GOOD, width));
            }
        }
        Err(message) => {
            let what = match flow.kind {
                FailoverKind::Switchover => "✖ the switchover did not happen",
                FailoverKind::Promotion => "✖ the promotion did not happen",
            };
            lines.push(Line::styled(what, BAD.bold()));
            lines.push(Line::default());
            for l in wrap(message, width) {
                lines.push(Line::styled(l, BAD));
            }
        }
    }
    if outcome.is_ok() {
        lines.push(Line::default());
        lines.push(Line::styled(
            "the Cluster screen shows the new roles at the next refresh",
            DIM,
        ));
    }
    lines
}

fn foot(app: &App, flow: &Flow, width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(problem) = &flow.problem {
        for l in wrap(&format!("✖ {problem}"), width) {
            lines.push(Line::styled(l, BAD));
        }
    }
    // The command line in full (it is what an operator copies), wrapped under the `$`.
    let command = |lines: &mut Vec<Line<'static>>, text: String| {
        for (i, part) in wrap(&text, width.saturating_sub(2)).into_iter().enumerate() {
            let prompt = if i == 0 { "$ " } else { "  " };
            lines.push(Line::from(vec![
                Span::raw(prompt).dark_gray(),
                Span::styled(part, Style::new().fg(Color::Cyan)),
            ]));
        }
    };
    let action = flow.action(app.config.timeout);
    match &flow.step {
        Step::Plan => {
            if let Some(a) = &action {
                command(&mut lines, a.command(&app.config.endpoint));
            }
            let mut keys = vec![("↑↓", "pick"), ("⏎", "continue")];
            if flow.kind == FailoverKind::Promotion {
                keys.push(("f", "--force"));
            }
            keys.extend([("r", "plan again"), ("Esc", "cancel")]);
            lines.push(hints(&keys));
        }
        Step::Confirm { input } => {
            let id = flow
                .candidate()
                .map(|c| c.node_id.clone())
                .unwrap_or_default();
            if let Some(Plan::Promotion(p)) = flow.shown_plan()
                && p.lost > 0
            {
                let warning = format!(
                    "--force: {} writes will be lost (the old master moves them to its \
                     rollback file if it comes back)",
                    p.lost
                );
                for l in wrap(&warning, width) {
                    lines.push(Line::styled(l, BAD.bold()));
                }
            }
            let ask = format!(
                "to confirm, type the first {} or more characters of its node id",
                flow.confirm_chars()
            );
            let one = Line::from(vec![
                Span::raw(format!("{ask}: ")),
                Span::styled(id.clone(), Style::new().bold()),
            ]);
            if one.width() <= width {
                lines.push(one);
            } else {
                lines.push(Line::raw(format!("{ask}:")));
                for part in wrap(&id, width.saturating_sub(2)) {
                    lines.push(Line::from(vec![
                        Span::raw("  "),
                        Span::styled(part, Style::new().bold()),
                    ]));
                }
            }
            let mut field = input_line(input, width.saturating_sub(2), true);
            field.spans.insert(0, Span::styled("> ", KEY));
            lines.push(field);
            if let Some(a) = &action {
                command(&mut lines, a.command(&app.config.endpoint));
            }
            lines.push(hints(&[("⏎", "run it"), ("Esc", "cancel")]));
        }
        Step::Running { action, since } => {
            let c = action.candidate();
            let secs = app.now.saturating_duration_since(*since).as_secs_f64();
            let text = match flow.kind {
                FailoverKind::Switchover => format!(
                    "… switching over to {} at {}: writes paused ({secs:.1}s)",
                    short_id(&c.node_id),
                    c.address
                ),
                FailoverKind::Promotion => format!(
                    "… promoting {} at {}: catching up, then taking the new epoch ({secs:.1}s)",
                    short_id(&c.node_id),
                    c.address
                ),
            };
            lines.push(Line::styled(
                cut(&text, width),
                Style::new().fg(Color::Yellow),
            ));
            command(&mut lines, action.command(&app.config.endpoint));
            lines.push(hints(&[(
                "Esc",
                "hide (it goes on; the outcome shows below)",
            )]));
        }
        Step::Done { action, .. } => {
            // The body says the outcome in full.
            command(&mut lines, action.command(&app.config.endpoint));
            lines.push(hints(&[("⏎/Esc", "close")]));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_wrap_and_cells_are_cut() {
        assert_eq!(wrap("a bb ccc dddd", 10), vec!["a bb ccc", "dddd"]);
        assert_eq!(
            wrap("x 0123456789abcdefghij", 10),
            vec!["x", "0123456789", "abcdefghij"]
        );
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
