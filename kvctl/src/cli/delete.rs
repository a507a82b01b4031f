//! `kvctl delete KEY`: deletes a key on the master (found among the endpoints and followed
//! across a failover; a delete whose answer was lost exits 4, not retried).
//!
//! Prints `deleted <key> (version <seq>)`, where `seq` is the log sequence number of the delete;
//! a key that was absent exits 1 with nothing on stdout.

use std::{ffi::OsString, io::Write};

use crate::{
    cli::Global,
    client::Error,
    output::{Format, KeyJson, display_bytes, write_json},
};

/// Flags of `kvctl delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key to delete.
    pub key: OsString,
}

/// Deletes the key and prints what happened on `out`.
///
/// # Errors
/// [`Error::KeyNotFound`] when the key was absent, else the node's or the transport's error.
pub async fn run(args: Args, global: &Global, out: &mut impl Write) -> Result<(), Error> {
    let key = args.key.into_encoded_bytes();
    let Some(version) = global.client()?.delete(&key).await? else {
        return Err(Error::KeyNotFound(key));
    };
    match global.output {
        Format::Text => writeln!(out, "deleted {} (version {version})", display_bytes(&key)),
        Format::Json => write_json(
            out,
            &KeyJson {
                deleted: Some(true),
                ..KeyJson::key(&key, version)
            },
        ),
    }
    .map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cli::testing::global,
        client::{
            Exit,
            testing::{Fake, serve},
        },
    };

    async fn delete(key: &str, format: Format) -> Result<String, Error> {
        let g = global(serve(Fake::default()).await, format);
        let mut out = Vec::new();
        run(Args { key: key.into() }, &g, &mut out).await?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[tokio::test]
    async fn prints_the_delete() {
        assert_eq!(
            delete("k", Format::Text).await.expect("delete"),
            "deleted k (version 42)\n"
        );
        assert_eq!(
            delete("k", Format::Json).await.expect("delete"),
            "{\"key\":\"k\",\"deleted\":true,\"version\":42}\n"
        );
    }

    #[tokio::test]
    async fn absent_key_exits_1() {
        let e = delete("absent", Format::Json).await.expect_err("absent");
        assert_eq!(e.to_string(), "key not found: absent");
        assert_eq!(e.exit(), Exit::NotFound);
    }
}
