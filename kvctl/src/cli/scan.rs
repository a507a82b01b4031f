//! `kvctl scan [PREFIX]`: lists keys in order, following the node's pages.
//!
//! The first page is read from the first endpoint that answers, and every later page from that
//! same node, so one scan is one node's view. Pages are asked for with `start_after` set to the
//! previous page's `next`, each of at most [`PAGE`] entries, until `--limit` keys are printed
//! or the node says there are no more. Output
//! is streamed page by page, so `--limit 0` on a large store does not hold it in memory:
//! text is one `key<TAB>value` line per key, JSON one array of objects shaped like `get`'s.

use std::{ffi::OsString, io::Write};

use serde_bytes::ByteBuf;
use shared::{Entry, ScanRequest, client::Node};

use crate::{
    cli::Global,
    client::Error,
    output::{Format, KeyJson, display_bytes},
};

/// Entries asked for per page.
const PAGE: u32 = 1000;

/// Flags of `kvctl scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only keys that start with this prefix (all keys when absent).
    pub prefix: Option<OsString>,
    /// Most keys to list; 0 lists them all.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u64,
    /// List keys and versions without values.
    #[arg(long)]
    pub keys_only: bool,
}

/// Writes entries as they arrive, text lines or the elements of one JSON array.
struct Printer<'a, W> {
    out: &'a mut W,
    format: Format,
    keys_only: bool,
    printed: u64,
}

impl<W: Write> Printer<'_, W> {
    fn start(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Text => Ok(()),
            Format::Json => self.out.write_all(b"["),
        }
    }

    fn entry(&mut self, e: &Entry) -> std::io::Result<()> {
        match self.format {
            Format::Text if self.keys_only => writeln!(self.out, "{}", display_bytes(&e.key)),
            Format::Text => {
                writeln!(
                    self.out,
                    "{}\t{}",
                    display_bytes(&e.key),
                    display_bytes(&e.value)
                )
            }
            Format::Json => {
                if self.printed > 0 {
                    self.out.write_all(b",")?;
                }
                let json = if self.keys_only {
                    KeyJson::key(&e.key, e.version)
                } else {
                    KeyJson::entry(&e.key, &e.value, e.version)
                };
                serde_json::to_writer(&mut *self.out, &json).map_err(std::io::Error::from)
            }
        }?;
        self.printed += 1;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self.format {
            Format::Text => Ok(()),
            Format::Json => self.out.write_all(b"]\n"),
        }
    }
}

/// Scans and prints on `out`.
///
/// # Errors
/// The node's or the transport's error; what was printed before it stays printed.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let prefix = args
        .prefix
        .map(OsString::into_encoded_bytes)
        .unwrap_or_default();
    let client = global.client()?;
    let mut node: Option<Node> = None;
    let mut printer = Printer {
        out,
        format: global.output,
        keys_only: args.keys_only,
        printed: 0,
    };
    printer.start().map_err(Error::Output)?;
    let mut start_after: Option<ByteBuf> = None;
    loop {
        let remaining = match args.limit {
            0 => u64::MAX,
            limit => limit - printer.printed,
        };
        if remaining == 0 {
            break;
        }
        let req = ScanRequest {
            prefix: ByteBuf::from(prefix.clone()),
            start_after: start_after.clone(),
            limit: u32::try_from(remaining).unwrap_or(PAGE).min(PAGE),
            keys_only: args.keys_only,
        };
        let page = if let Some(n) = &node {
            n.scan(req).await?
        } else {
            let (n, page) = client
                .read(|n| {
                    let req = req.clone();
                    async move { n.scan(req).await.map(|page| (n, page)) }
                })
                .await?;
            // The node that answered, without the first call's deadline.
            node = Some(client.node(n.endpoint()).await?);
            page
        };
        for e in page
            .entries
            .iter()
            .take(usize::try_from(remaining).unwrap_or(usize::MAX))
        {
            printer.entry(e).map_err(Error::Output)?;
        }
        match page.next {
            // Keys only move forward; a page that does not would loop for ever.
            Some(next) if start_after.as_ref().is_none_or(|s| next > *s) => {
                start_after = Some(next);
            }
            _ => break,
        }
    }
    printer.finish().map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cli::testing::global,
        client::testing::{FAKE_PAGE, Fake, serve},
    };

    fn fake() -> Fake {
        Fake::default()
            .with("a", "1")
            .with("user:1", "alice")
            .with("user:2", "bob\n")
            .with("user:3", [0xff])
            .with("user:4", "dan")
            .with("user:5", "eve")
            .with("user:6", "")
            .with("z", "last")
    }

    async fn scan(prefix: Option<&str>, limit: u64, keys_only: bool, format: Format) -> String {
        let g = global(serve(fake()).await, format);
        let mut out = Vec::new();
        let args = Args {
            prefix: prefix.map(OsString::from),
            limit,
            keys_only,
        };
        run(args, &g, &mut out).await.expect("scan");
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test]
    async fn follows_pages_to_the_end() {
        // The fake must page for this test to mean anything.
        const { assert!(FAKE_PAGE < 8) }
        let text = scan(None, 0, false, Format::Text).await;
        assert_eq!(
            text,
            "a\t1\nuser:1\talice\nuser:2\t0x626f620a\nuser:3\t0xff\nuser:4\tdan\nuser:5\teve\n\
             user:6\t\nz\tlast\n"
        );
    }

    #[tokio::test]
    async fn stops_at_the_limit_and_the_prefix() {
        assert_eq!(
            scan(Some("user:"), 4, true, Format::Text).await,
            "user:1\nuser:2\nuser:3\nuser:4\n"
        );
        assert_eq!(scan(None, 2, true, Format::Text).await, "a\nuser:1\n");
        assert_eq!(scan(Some("nothing"), 0, false, Format::Text).await, "");
    }

    #[tokio::test]
    async fn json_is_one_array() {
        let json = scan(Some("user:"), 3, false, Format::Json).await;
        assert_eq!(
            json,
            "[{\"key\":\"user:1\",\"value\":\"alice\",\"version\":2},\
             {\"key\":\"user:2\",\"value\":\"bob\\n\",\"version\":3},\
             {\"key\":\"user:3\",\"value_base64\":\"/w==\",\"version\":4}]\n"
        );
        assert_eq!(scan(Some("nothing"), 0, false, Format::Json).await, "[]\n");
        let keys = scan(Some("user:"), 0, true, Format::Json).await;
        let parsed: serde_json::Value = serde_json::from_str(&keys).expect("json");
        assert_eq!(parsed.as_array().map(Vec::len), Some(6));
        assert!(parsed[0].get("value").is_none());
    }
}
