//! `kvctl put KEY VALUE`: writes a key, optionally as a compare-and-swap.
//!
//! The value comes from the argument, from stdin (`-`) or from `--file`, and is sent as bytes.
//! The value is read before connecting, so an unreadable file fails without touching the node.
//! A write sent to a replica is retried once against the master it names.

use std::{
    ffi::OsString,
    io::{Read, Write},
    path::PathBuf,
};

use serde_bytes::ByteBuf;
use shared::{PutCondition, PutRequest};

use crate::{
    cli::Global,
    client::{Error, follow_master},
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
    let key = args.key.into_encoded_bytes();
    let req = PutRequest {
        key: ByteBuf::from(key.clone()),
        value: ByteBuf::from(value),
        condition,
    };
    let node = global.connect().await?;
    let version = follow_master(&node, async |n| n.put(req.clone()).await).await?;
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
        }
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
}
