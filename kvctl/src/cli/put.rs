//! `kvctl put KEY VALUE`: writes a key, optionally as a compare-and-swap.
//!
//! The value comes from the argument, from stdin (`-`) or from `--file`, and is sent as bytes.
//! The value is read before connecting, so an unreadable file fails without touching the node.
//! The write goes to the master (found among the endpoints, or named by them, and followed
//! across a failover); if it was sent and no answer came, kvctl exits 4 without retrying it.
//!
//! `--acks K` asks the master to acknowledge only once K replicas have applied the write, waiting
//! at most `--acks-timeout` (0 for either: the master's defaults). When they do not in time, the
//! write is still committed on the master: kvctl prints the master's message on stderr
//! ([`shared::KvError::AcksTimeout`]) and exits 2, with nothing on stdout.

use std::{
    ffi::OsString,
    io::{Read, Write},
    path::PathBuf,
    time::Duration,
};

use serde_bytes::ByteBuf;
use shared::{PutCondition, PutRequest};

use crate::{
    cli::{Global, parse_timeout},
    client::Error,
    output::{Format, KeyJson, write_json},
};

/// Flags of `kvctl put`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key to write.
    pub key: OsString,
    /// The value; `-` reads it from stdin. Use `--` before a value that starts with `-`.
    #[arg(required_unless_present = "file")]
    pub value: Option<OsString>,
    /// Read the value from this file instead of the VALUE argument.
    #[arg(long, value_name = "PATH", conflicts_with = "value")]
    pub file: Option<PathBuf>,
    /// Write only if the key is at exactly this version (exit 1 otherwise).
    #[arg(long, value_name = "N", conflicts_with = "if_absent")]
    pub if_version: Option<u64>,
    /// Write only if the key does not exist (exit 1 otherwise).
    #[arg(long)]
    pub if_absent: bool,
    /// Acknowledge only once this many replicas have applied the write; 0 uses the master's
    /// `--min-acks`. If too few do in time, the write stays committed on the master and kvctl
    /// exits 2.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub acks: u32,
    /// Longest wait for those acknowledgements: `5`, `2.5`, `500ms`. Without it, the master's
    /// default. It is added to --timeout for this request.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub acks_timeout: Option<Duration>,
}

impl Args {
    /// The compare-and-swap condition the flags ask for.
    #[must_use]
    pub fn condition(&self) -> PutCondition {
        match (self.if_version, self.if_absent) {
            (Some(v), _) => PutCondition::IfVersion(v),
            (None, true) => PutCondition::IfAbsent,
            (None, false) => PutCondition::None,
        }
    }

    /// `--acks-timeout` in milliseconds for the wire: 0 (the master's default) when absent,
    /// else rounded up to a whole millisecond, at least 1.
    #[must_use]
    pub fn acks_timeout_ms(&self) -> u32 {
        self.acks_timeout.map_or(0, |d| {
            u32::try_from(d.as_nanos().div_ceil(1_000_000))
                .unwrap_or(u32::MAX)
                .max(1)
        })
    }

    /// The value's bytes, from the argument, `stdin` (for `-`) or `--file`.
    fn read_value(&self, stdin: impl Read) -> Result<Vec<u8>, Error> {
        match (&self.value, &self.file) {
            (Some(v), None) if v == "-" => read_all(stdin, "the value from stdin"),
            (Some(v), None) => Ok(v.clone().into_encoded_bytes()),
            (None, Some(path)) => std::fs::read(path).map_err(|source| Error::Input {
                what: format!("--file {}", path.display()),
                source,
            }),
            (Some(_), Some(_)) => Err(Error::Usage("give the value or --file, not both".into())),
            (None, None) => Err(Error::Usage(
                "give a VALUE, `-` for stdin, or --file".into(),
            )),
        }
    }
}

fn read_all(mut input: impl Read, what: &str) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    input.read_to_end(&mut buf).map_err(|source| Error::Input {
        what: what.to_string(),
        source,
    })?;
    Ok(buf)
}

/// Writes the key and prints the new version on `out`.
///
/// # Errors
/// An unreadable value, a failed condition (exit 1), or the node's or transport's error.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let value = args.read_value(std::io::stdin().lock())?;
    write(args, value, global, out).await
}

async fn write(
    args: Args,
    value: Vec<u8>,
    global: &Global,
    out: &mut impl Write,
) -> Result<(), Error> {
    let condition = args.condition();
    let acks_timeout_ms = args.acks_timeout_ms();
    let key = args.key.into_encoded_bytes();
    let req = PutRequest {
        key: ByteBuf::from(key.clone()),
        value: ByteBuf::from(value),
        condition,
        acks: args.acks,
        acks_timeout_ms,
    };
    let version = global.client()?.put(req).await?;
    match global.output {
        Format::Text => writeln!(out, "OK version {version}"),
        Format::Json => write_json(out, &KeyJson::key(&key, version)),
    }
    .map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::{
        cli::testing::global,
        client::{
            Exit,
            testing::{Fake, MASTER_VERSION, serve},
        },
    };

    fn args(value: Option<&str>, file: Option<PathBuf>) -> Args {
        Args {
            key: "k".into(),
            value: value.map(OsString::from),
            file,
            if_version: None,
            if_absent: false,
            acks: 0,
            acks_timeout: None,
        }
    }

    #[test]
    fn acks_timeout_in_milliseconds() {
        let with = |t: Option<Duration>| Args {
            acks_timeout: t,
            ..args(Some("v"), None)
        };
        assert_eq!(with(None).acks_timeout_ms(), 0);
        assert_eq!(with(Some(Duration::from_secs(5))).acks_timeout_ms(), 5000);
        assert_eq!(
            with(Some(Duration::from_millis(2500))).acks_timeout_ms(),
            2500
        );
        // Never rounded down to 0, which would mean "the master's default".
        assert_eq!(with(Some(Duration::from_micros(10))).acks_timeout_ms(), 1);
        assert_eq!(with(Some(Duration::from_micros(1500))).acks_timeout_ms(), 2);
    }

    #[test]
    fn value_sources() {
        let stdin: &[u8] = &[1, 2, 0xff];
        assert_eq!(args(Some("v"), None).read_value(stdin).expect("arg"), b"v");
        assert_eq!(
            args(Some("-"), None).read_value(stdin).expect("stdin"),
            [1, 2, 0xff]
        );

        let dir = std::env::temp_dir().join(format!("kvctl-put-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("value.bin");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&[0, 0xfe]))
            .expect("write");
        assert_eq!(
            args(None, Some(path.clone()))
                .read_value(stdin)
                .expect("file"),
            [0, 0xfe]
        );

        let e = args(None, Some(dir.join("missing")))
            .read_value(stdin)
            .expect_err("missing");
        assert!(e.to_string().starts_with("cannot read --file "), "{e}");
        assert_eq!(e.exit(), Exit::Usage);
        std::fs::remove_dir_all(&dir).expect("clean up");

        assert_eq!(
            args(None, None)
                .read_value(stdin)
                .expect_err("neither")
                .exit(),
            Exit::Usage
        );
    }

    #[tokio::test]
    async fn prints_the_version_after_following_the_master() {
        let master = serve(Fake::default()).await;
        let replica = serve(Fake {
            master: Some(master.to_string()),
            ..Fake::default()
        })
        .await;
        for (format, want) in [
            (Format::Text, format!("OK version {MASTER_VERSION}\n")),
            (
                Format::Json,
                format!("{{\"key\":\"k\",\"version\":{MASTER_VERSION}}}\n"),
            ),
        ] {
            let mut out = Vec::new();
            let g = global(replica.clone(), format);
            write(args(Some("v"), None), b"v".to_vec(), &g, &mut out)
                .await
                .expect("put");
            assert_eq!(String::from_utf8(out).expect("utf-8"), want);
        }
    }

    #[tokio::test]
    async fn too_few_acks_exits_2_with_the_masters_message_and_prints_nothing() {
        // The fake acknowledges with as many replicas as it lists: none here.
        let g = global(serve(Fake::default()).await, Format::Text);
        let args = Args {
            acks: 2,
            acks_timeout: Some(Duration::from_millis(1500)),
            ..args(Some("v"), None)
        };
        let mut out = Vec::new();
        let e = write(args, b"v".to_vec(), &g, &mut out)
            .await
            .expect_err("acks timeout");
        assert_eq!(e.exit(), Exit::Usage);
        assert_eq!(
            e.to_string(),
            "the write is committed on the master at version 42, but only 0 of 2 replicas \
             acknowledged it within 1500 ms"
        );
        assert!(out.is_empty());
    }
}
