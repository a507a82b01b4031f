//! The four screens, one module each; each has `render(&App, Rect, &mut Buffer)` and only
//! reads the state.

use ratatui::{
    layout::Alignment,
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Block, BorderType, Cell},
};

use crate::tui::ui::HEADER;

pub mod cluster;
pub mod keys;
pub mod replication;
pub mod shards;

/// Widths at or above this show the extra columns (node ids, rates).
const WIDE: u16 = 110;

/// A screen's bordered panel with a title.
fn panel(title: impl Into<String>) -> Block<'static> {
    panel_line(Line::from(Span::styled(
        format!(" {} ", title.into()),
        HEADER,
    )))
}

/// A screen's bordered panel with a title of several styles.
fn panel_line(title: Line<'static>) -> Block<'static> {
    Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(Color::DarkGray))
        .title(title)
}

/// A right-aligned cell, for numbers.
fn right(text: impl Into<String>) -> Cell<'static> {
    Cell::from(Line::from(text.into()).alignment(Alignment::Right))
}

/// A line count as a `u16` height (saturating).
fn height(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}
