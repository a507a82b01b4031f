//! The `kvctl` command line that does the same as a write (or a failover) made in the console,
//! shown in the status bar so an operator can script what they just did.
//!
//! Arguments are quoted for a POSIX shell: plain words as they are, other text in single
//! quotes, and bytes that are not printable text in bash's `$'\xNN'` form. Arguments that
//! start with `-` come after `--`, as `kvctl put` asks.

use std::{fmt::Write as _, time::Duration};

/// kvctl's default `--timeout`: a command line names `--timeout` only when the console's
/// differs.
const DEFAULT_TIMEOUT: Duration = shared::client::DEFAULT_TIMEOUT;

/// Bytes as one shell word.
pub fn word(bytes: &[u8]) -> String {
    const PLAIN: &str = "-_.,:/@%+=";
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || PLAIN.contains(c)) => {
            s.to_string()
        }
        Ok(s) if !s.chars().any(char::is_control) => format!("'{}'", s.replace('\'', r"'\''")),
        _ => {
            let mut out = String::from("$'");
            for &b in bytes {
                match b {
                    b'\\' => out.push_str(r"\\"),
                    b'\'' => out.push_str(r"\'"),
                    0x20..=0x7e => out.push(char::from(b)),
                    // Writing to a String cannot fail.
                    _ => {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
            }
            out.push('\'');
            out
        }
    }
}

/// `kvctl -e ENDPOINT put KEY VALUE [--if-version N]`.
pub fn put(endpoint: &str, key: &[u8], value: &[u8], if_version: Option<u64>) -> String {
    let condition = if_version.map_or(String::new(), |v| format!(" --if-version {v}"));
    let dashes = if key.starts_with(b"-") || value.starts_with(b"-") {
        "-- "
    } else {
        ""
    };
    if value == b"-" {
        // A lone `-` means "read stdin" to kvctl put, so pipe it in.
        return format!(
            "printf %s - | kvctl -e {endpoint} put{condition} {dashes}{} -",
            word(key)
        );
    }
    format!(
        "kvctl -e {endpoint} put{condition} {dashes}{} {}",
        word(key),
        word(value)
    )
}

/// `kvctl -e ENDPOINT delete KEY`.
pub fn delete(endpoint: &str, key: &[u8]) -> String {
    let dashes = if key.starts_with(b"-") { "-- " } else { "" };
    format!("kvctl -e {endpoint} delete {dashes}{}", word(key))
}

/// ` --timeout 30s` when `timeout` is not kvctl's default, else nothing.
fn timeout_flag(timeout: Duration) -> String {
    if timeout == DEFAULT_TIMEOUT {
        String::new()
    } else {
        format!(" --timeout {}", crate::output::seconds(timeout))
    }
}

/// `kvctl -e ENDPOINTS [--timeout S] failover --to NODE`.
pub fn failover(endpoints: &str, to: &str, timeout: Duration) -> String {
    format!(
        "kvctl -e {endpoints}{} failover --to {}",
        timeout_flag(timeout),
        word(to.as_bytes())
    )
}

/// `kvctl -e ENDPOINT [--timeout S] promote NODE [--force]`.
pub fn promote(endpoint: &str, node: &str, force: bool, timeout: Duration) -> String {
    let dashes = if node.starts_with('-') { "-- " } else { "" };
    format!(
        "kvctl -e {endpoint}{} promote {dashes}{}{}",
        timeout_flag(timeout),
        word(node.as_bytes()),
        if force { " --force" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: &str = "http://127.0.0.1:3000";

    #[test]
    fn words() {
        assert_eq!(word(b"user:1"), "user:1");
        assert_eq!(word(b"hello world"), "'hello world'");
        assert_eq!(word(b"it's"), r"'it'\''s'");
        assert_eq!(word(b""), "''");
        assert_eq!(word(b"$HOME"), "'$HOME'");
        assert_eq!(word(&[0xff, b'a', b'\'', 0]), r"$'\xffa\'\x00'");
        assert_eq!(word(b"a\nb"), r"$'a\x0ab'");
    }

    #[test]
    fn commands() {
        assert_eq!(
            put(E, b"user:1", b"hello", None),
            "kvctl -e http://127.0.0.1:3000 put user:1 hello"
        );
        assert_eq!(
            put(E, b"user:1", b"hello tui", Some(7)),
            "kvctl -e http://127.0.0.1:3000 put --if-version 7 user:1 'hello tui'"
        );
        assert_eq!(
            put(E, b"k", b"-1", None),
            "kvctl -e http://127.0.0.1:3000 put -- k -1"
        );
        assert_eq!(
            put(E, b"k", b"-", None),
            "printf %s - | kvctl -e http://127.0.0.1:3000 put -- k -"
        );
        assert_eq!(
            delete(E, b"user:1"),
            "kvctl -e http://127.0.0.1:3000 delete user:1"
        );
        assert_eq!(
            delete(E, b"-x"),
            "kvctl -e http://127.0.0.1:3000 delete -- -x"
        );
    }

    #[test]
    fn failover_commands() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            failover("http://a:1,http://b:2", "a1b2c3d4-replica", ten),
            "kvctl -e http://a:1,http://b:2 failover --to a1b2c3d4-replica"
        );
        assert_eq!(
            failover(E, "r1", Duration::from_millis(2500)),
            "kvctl -e http://127.0.0.1:3000 --timeout 2.5s failover --to r1"
        );
        assert_eq!(
            promote("http://127.0.0.1:3001", "a1b2c3d4-replica", true, ten),
            "kvctl -e http://127.0.0.1:3001 promote a1b2c3d4-replica --force"
        );
        assert_eq!(
            promote(E, "-odd", false, Duration::from_secs(30)),
            "kvctl -e http://127.0.0.1:3000 --timeout 30s promote -- -odd"
        );
    }
}
