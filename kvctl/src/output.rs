//! Rendering of results for people (`-o text`) and for programs (`-o json`).
//!
//! Owns the rules every subcommand shares, so that `get`, `scan`, `put` and `delete` show keys and
//! values the same way:
//!
//! - text: bytes that are valid UTF-8 without control characters are shown as they are; anything
//!   else (invalid UTF-8, or a tab or newline that would break the one-line-per-key layout) is
//!   shown as `0x` followed by lower-case hex;
//! - JSON: valid UTF-8 goes in a string field (`"key"`, `"value"`); anything else goes, base64
//!   encoded, in a separately named field (`"key_base64"`, `"value_base64"`), so a program never
//!   has to guess which encoding a string is in.
//!
//! It also has the small formatters the status tables share (byte counts, durations, short
//! node ids and hashes) and [`write_table`], so every table is laid out the same way.
//!
//! Nothing here touches stdout itself: the functions write to any `io::Write`, which keeps them
//! testable.

use std::{borrow::Cow, fmt::Write as _, io, time::Duration};

use base64::Engine as _;
use serde::Serialize;

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people: plain lines and tables.
    #[default]
    Text,
    /// For programs: one JSON document on one line.
    Json,
}

/// Bytes for a line of text: as they are when they are printable UTF-8, else `0x` + hex.
#[must_use]
pub fn display_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => Cow::Borrowed(s),
        _ => Cow::Owned(hex(bytes)),
    }
}

/// `0x` followed by two lower-case hex digits per byte.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("0x");
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Bytes as JSON: the UTF-8 text, or else its base64 (standard alphabet, padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonBytes<'a> {
    /// Valid UTF-8, shown as a JSON string.
    Text(&'a str),
    /// Not UTF-8: base64 in the `*_base64` field.
    Base64(String),
}

impl<'a> JsonBytes<'a> {
    /// Chooses the representation of `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => Self::Text(s),
            Err(_) => Self::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// The string field (`"key"`, `"value"`), present only for UTF-8.
    #[must_use]
    pub fn text(&self) -> Option<&'a str> {
        match self {
            Self::Text(s) => Some(s),
            Self::Base64(_) => None,
        }
    }

    /// The base64 field (`"key_base64"`, `"value_base64"`), present only for other bytes.
    #[must_use]
    pub fn base64(&self) -> Option<String> {
        match self {
            Self::Text(_) => None,
            Self::Base64(b) => Some(b.clone()),
        }
    }
}

/// One key as JSON, as printed by `get`, `put`, `delete` and each element of `scan`.
///
/// Field order is the print order: key, value, deleted, version. Fields that do not apply are
/// left out rather than printed as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyJson<'a> {
    /// The key, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// The key in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The value, when there is one and it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a str>,
    /// The value in base64, when there is one and it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Set by `delete` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// The version that wrote the value (or, for `delete`, the sequence number of the delete).
    pub version: u64,
}

impl<'a> KeyJson<'a> {
    /// A key and its version, without a value (`put`, `delete`, `scan --keys-only`).
    #[must_use]
    pub fn key(key: &'a [u8], version: u64) -> Self {
        let key = JsonBytes::new(key);
        Self {
            key: key.text(),
            key_base64: key.base64(),
            value: None,
            value_base64: None,
            deleted: None,
            version,
        }
    }

    /// A key with its value and version (`get`, `scan`).
    #[must_use]
    pub fn entry(key: &'a [u8], value: &'a [u8], version: u64) -> Self {
        let value = JsonBytes::new(value);
        Self {
            value: value.text(),
            value_base64: value.base64(),
            ..Self::key(key, version)
        }
    }
}

/// Writes `value` as one compact JSON document followed by a newline.
///
/// # Errors
/// When writing fails.
pub fn write_json(out: &mut impl io::Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// A byte count for people, in powers of 1024: `512 B`, `4 KiB`, `1.5 MiB`.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 1024u64;
    let mut name = UNITS[0];
    for next in &UNITS[1..] {
        match unit.checked_mul(1024) {
            Some(bigger) if bytes >= bigger => {
                unit = bigger;
                name = next;
            }
            _ => break,
        }
    }
    if bytes.is_multiple_of(unit) {
        format!("{} {name}", bytes / unit)
    } else {
        // Precision loss is irrelevant at one decimal.
        #[allow(clippy::cast_precision_loss)]
        let scaled = bytes as f64 / unit as f64;
        format!("{scaled:.1} {name}")
    }
}

/// A duration in whole seconds for people: `59s`, `1m 1s`, `2h 0m 5s`, `3d 4h 5m 6s`.
#[must_use]
pub fn human_uptime(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m {seconds}s")
    } else if hours > 0 {
        format!("{hours}h {minutes}m {seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// A short duration for people: `850 ms` below a second, `3.2 s` below a minute, else as
/// [`human_uptime`].
#[must_use]
pub fn human_millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    } else {
        human_uptime(ms / 1000)
    }
}

/// A master's lease (auto failover) from the milliseconds it still runs: `3.2 s left`, or
/// `ended: not serving` at 0 (it admits no writes and answers no reads until its replicas
/// confirm it again).
#[must_use]
pub fn lease_text(ms: u64) -> String {
    if ms == 0 {
        "ended: not serving".to_string()
    } else {
        format!("{} left", human_millis(ms))
    }
}

/// How long ago `since_unix_ms` was at `now_unix_ms`, for people: `12s ago`, `1m 1s ago`. A time
/// in the future (clocks of two hosts disagree) shows as `0s ago`.
#[must_use]
pub fn ago(since_unix_ms: u64, now_unix_ms: u64) -> String {
    format!(
        "{} ago",
        human_uptime(now_unix_ms.saturating_sub(since_unix_ms) / 1000)
    )
}

/// Milliseconds since the Unix epoch on this host (0 if the clock is before 1970).
#[must_use]
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time for people, in UTC to the second: `2023-11-14 22:13:20 UTC`.
#[must_use]
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`), in
    // unsigned arithmetic: the epoch is shifted to 0000-03-01, so nothing is negative.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

/// Fractional seconds with one decimal, as measured by a node: `0.0s`, `12.3s`.
#[must_use]
pub fn tenths(secs: f64) -> String {
    format!("{secs:.1}s")
}

/// A node id for tables: its first 8 characters.
#[must_use]
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(8).map_or(id, |(end, _)| &id[..end])
}

/// A digest hash for text output: its first 8 characters and `…` (JSON has the whole hash).
#[must_use]
pub fn short_hash(hash: &str) -> String {
    match hash.char_indices().nth(8) {
        Some((end, _)) => format!("{}…", &hash[..end]),
        None => hash.to_string(),
    }
}

/// Writes `rows` (the header first) as a table: each column as wide as its widest cell, two
/// spaces between columns, right-aligned where `right` says so (numbers), no trailing spaces.
/// A row shorter than the others leaves its last cells empty.
///
/// # Errors
/// When writing fails.
pub fn write_table(
    out: &mut impl io::Write,
    rows: &[Vec<String>],
    right: &[bool],
) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, &w) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i > 0 {
                line.push_str("  ");
            }
            // Writing to a String cannot fail.
            let _ = if right.get(i).copied().unwrap_or(false) {
                write!(line, "{cell:>w$}")
            } else {
                write!(line, "{cell:<w$}")
            };
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A timeout as the user would have typed it: `10s`, `2.5s`, `0.25s`.
#[must_use]
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &impl Serialize) -> String {
        let mut out = Vec::new();
        write_json(&mut out, v).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn short_durations_and_leases() {
        assert_eq!(human_millis(0), "0 ms");
        assert_eq!(human_millis(999), "999 ms");
        assert_eq!(human_millis(1000), "1.0 s");
        assert_eq!(human_millis(3_250), "3.2 s");
        assert_eq!(human_millis(59_999), "59.9 s");
        assert_eq!(human_millis(61_000), "1m 1s");
        assert_eq!(lease_text(4_800), "4.8 s left");
        assert_eq!(lease_text(40), "40 ms left");
        assert_eq!(lease_text(0), "ended: not serving");
    }

    #[test]
    fn hex_rendering() {
        assert_eq!(hex(b""), "0x");
        assert_eq!(hex(&[0x00, 0xff, 0x10, 0xab]), "0x00ff10ab");
        assert_eq!(display_bytes(b"hello"), "hello");
        assert_eq!(display_bytes("héllo ✓".as_bytes()), "héllo ✓");
        assert_eq!(display_bytes(&[0xff, 0xfe]), "0xfffe");
        // Control characters would break one line per key.
        assert_eq!(display_bytes(b"a\tb"), "0x610962");
        assert_eq!(display_bytes(b"line\n"), "0x6c696e650a");
        assert_eq!(display_bytes(b""), "");
    }

    #[test]
    fn json_for_utf8_values() {
        let doc = json(&KeyJson::entry(b"user:1", b"{\"a\": 1}\n", 7));
        assert_eq!(
            doc,
            "{\"key\":\"user:1\",\"value\":\"{\\\"a\\\": 1}\\n\",\"version\":7}\n"
        );
        let back: serde_json::Value = serde_json::from_str(&doc).expect("valid json");
        assert_eq!(back["value"], "{\"a\": 1}\n");
        assert!(back.get("value_base64").is_none());
    }

    #[test]
    fn json_for_binary_values_and_keys() {
        let doc = json(&KeyJson::entry(&[0xff, 0x00], &[0x80, 0x81, 0x82], 3));
        assert_eq!(
            doc,
            "{\"key_base64\":\"/wA=\",\"value_base64\":\"gIGC\",\"version\":3}\n"
        );
        // An empty value is valid UTF-8.
        let doc = json(&KeyJson::entry(b"k", b"", 1));
        assert_eq!(doc, "{\"key\":\"k\",\"value\":\"\",\"version\":1}\n");
    }

    #[test]
    fn json_without_value() {
        assert_eq!(
            json(&KeyJson::key(b"k", 4)),
            "{\"key\":\"k\",\"version\":4}\n"
        );
        let deleted = KeyJson {
            deleted: Some(true),
            ..KeyJson::key(b"k", 9)
        };
        assert_eq!(
            json(&deleted),
            "{\"key\":\"k\",\"deleted\":true,\"version\":9}\n"
        );
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024), "1 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024 + 1), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn uptime_for_people() {
        assert_eq!(human_uptime(0), "0s");
        assert_eq!(human_uptime(61), "1m 1s");
        assert_eq!(human_uptime(7205), "2h 0m 5s");
        assert_eq!(
            human_uptime(3 * 86_400 + 4 * 3600 + 5 * 60 + 6),
            "3d 4h 5m 6s"
        );
    }

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["name".to_string(), "n".to_string(), "note".to_string()],
            vec!["a".to_string(), "1000".to_string(), String::new()],
            vec!["longer".to_string(), "7".to_string(), "x".to_string()],
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows, &[false, true, false]).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "name       n  note\na       1000\nlonger     7  x\n"
        );
    }

    #[test]
    fn short_forms() {
        assert_eq!(short_id("3f2a9c1b-7d4e-4c1a"), "3f2a9c1b");
        assert_eq!(short_id("n1"), "n1");
        assert_eq!(short_id("ééééééééé"), "éééééééé");
        assert_eq!(short_hash("9f3a1b2c3d4e5f60"), "9f3a1b2c…");
        assert_eq!(short_hash("9f3a"), "9f3a");
        assert_eq!(tenths(0.0), "0.0s");
        assert_eq!(tenths(12.345), "12.3s");
        assert_eq!(ago(1_000, 13_999), "12s ago");
        assert_eq!(ago(100_000, 40_000), "0s ago");
        assert_eq!(ago(0, 61_000), "1m 1s ago");
    }

    #[test]
    fn times_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_999), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00 UTC");
    }

    #[test]
    fn timeouts_as_typed() {
        assert_eq!(seconds(Duration::from_secs(10)), "10s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5s");
    }
}
