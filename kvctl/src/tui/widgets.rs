//! Small pieces the screens share: text sparklines for table cells, rates, the key-hint line,
//! centred popups, a text field with its cursor, and the hex dump of binary values.
//!
//! Byte counts and durations use the CLI's formatters in `output.rs`, so the console and
//! `kvctl status` say the same thing the same way.

use std::fmt::Write as _;

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, BorderType, Clear, Padding, Widget},
};

use crate::tui::input::Input;

/// The eight heights of a text sparkline.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a one-line sparkline of block characters, scaled to their
/// maximum; padded with spaces on the left when there are fewer values.
pub fn spark_text(values: &[f64], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().fold(0.0_f64, f64::max);
    let mut out = " ".repeat(width - shown.len());
    for &v in shown {
        let level = if max > 0.0 {
            // Within 0..=7 by construction.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let l = ((v / max) * (BARS.len() - 1) as f64).round() as usize;
            l.min(BARS.len() - 1)
        } else {
            0
        };
        out.push(BARS[level]);
    }
    out
}

/// Values for ratatui's `Sparkline` (whole numbers): the last `width`, rounded up so that any
/// activity shows as at least one step.
pub fn spark_data(values: &[f64], width: usize) -> Vec<u64> {
    values[values.len().saturating_sub(width)..]
        .iter()
        // Rates are small non-negative numbers.
        .map(|&v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = v.max(0.0).ceil() as u64;
            n
        })
        .collect()
}

/// A rate for people: `12.3/s`, `1.2k/s`, `—` when not measured yet.
pub fn rate_text(rate: Option<f64>) -> String {
    match rate {
        None => "—".to_string(),
        Some(r) if r >= 10_000.0 => format!("{:.0}k/s", r / 1000.0),
        Some(r) if r >= 1000.0 => format!("{:.1}k/s", r / 1000.0),
        Some(r) => format!("{r:.1}/s"),
    }
}

/// A rectangle of at most `width` × `height` centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// Clears `area` and draws a popup's frame with `title`; returns the inside.
pub fn popup_frame(area: Rect, buf: &mut Buffer, title: Line<'_>, color: Color) -> Rect {
    Clear.render(area, buf);
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(color))
        .padding(Padding::horizontal(1))
        .title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    inner
}

/// The key-hint line: `key label` pairs, keys in bold.
pub fn hints(pairs: &[(&str, &str)]) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, (key, label)) in pairs.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(
            (*key).to_string(),
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(format!(" {label}")));
    }
    Line::from(spans)
}

/// A text field: its text with the cursor shown as a reversed cell, scrolled so the cursor
/// stays within `width` cells.
pub fn input_line(input: &Input, width: usize, focused: bool) -> Line<'static> {
    let chars: Vec<char> = input.text().chars().collect();
    let cursor = input.cursor();
    let width = width.max(1);
    let start = (cursor + 1).saturating_sub(width);
    let before: String = chars[start..cursor].iter().collect();
    let at: String = chars.get(cursor).map_or(" ".to_string(), char::to_string);
    let after: String = chars
        .iter()
        .skip(cursor + 1)
        .take(width.saturating_sub(cursor - start + 1))
        .collect();
    let cursor_style = if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    };
    Line::from(vec![
        Span::raw(before),
        Span::styled(at, cursor_style),
        Span::raw(after),
    ])
}

/// Lines `first..first + count` of a hex dump of `bytes`, `per_line` bytes a line:
/// `00000010  68 65 6c 6c 6f 0a ff 00  |hello...|`.
pub fn hex_dump(bytes: &[u8], per_line: usize, first: usize, count: usize) -> Vec<String> {
    let per_line = per_line.max(1);
    bytes
        .chunks(per_line)
        .enumerate()
        .skip(first)
        .take(count)
        .map(|(i, chunk)| {
            let mut line = format!("{:08x} ", i * per_line);
            for j in 0..per_line {
                if j % 8 == 0 {
                    line.push(' ');
                }
                match chunk.get(j) {
                    // Writing to a String cannot fail.
                    Some(b) => {
                        let _ = write!(line, "{b:02x} ");
                    }
                    None => line.push_str("   "),
                }
            }
            line.push('|');
            line.extend(chunk.iter().map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            }));
            line.push('|');
            line
        })
        .collect()
}

/// Lines in a hex dump of `len` bytes.
pub fn hex_dump_lines(len: usize, per_line: usize) -> usize {
    len.div_ceil(per_line.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sparklines_scale_to_the_maximum() {
        assert_eq!(spark_text(&[0.0, 1.0, 2.0, 4.0], 4), "▁▃▅█");
        assert_eq!(spark_text(&[5.0, 5.0], 4), "  ██");
        assert_eq!(spark_text(&[0.0, 0.0], 2), "▁▁");
        assert_eq!(spark_text(&[9.0, 1.0, 2.0], 2), "▅█");
        assert_eq!(spark_data(&[0.2, 3.0, 0.0], 2), vec![3, 0]);
    }

    #[test]
    fn rates_for_people() {
        assert_eq!(rate_text(None), "—");
        assert_eq!(rate_text(Some(0.0)), "0.0/s");
        assert_eq!(rate_text(Some(12.34)), "12.3/s");
        assert_eq!(rate_text(Some(1234.0)), "1.2k/s");
        assert_eq!(rate_text(Some(45_000.0)), "45k/s");
    }

    #[test]
    fn hex_dumps() {
        let bytes = b"hello\n\xff\x00 world!";
        assert_eq!(
            hex_dump(bytes, 8, 0, 10),
            vec![
                "00000000  68 65 6c 6c 6f 0a ff 00 |hello...|",
                "00000008  20 77 6f 72 6c 64 21    | world!|",
            ]
        );
        assert_eq!(hex_dump(bytes, 8, 1, 1).len(), 1);
        assert_eq!(hex_dump_lines(bytes.len(), 8), 2);
        assert_eq!(hex_dump_lines(0, 16), 0);
    }

    #[test]
    fn popups_fit_the_area() {
        let area = Rect::new(0, 0, 80, 24);
        assert_eq!(centered(area, 40, 10), Rect::new(20, 7, 40, 10));
        assert_eq!(centered(area, 100, 30), area);
    }
}
