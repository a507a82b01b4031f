//! `kvctl get KEY`: prints a key's value.
//!
//! Read from the first endpoint that answers (a replica may lag behind the master). Text output
//! is the value's exact bytes, with a newline added only when stdout is a terminal (so
//! `kvctl get k > file` round-trips binary values). JSON output is one object with the key,
//! the value and its version. A missing key prints nothing on stdout and exits 1.

use std::{ffi::OsString, io::Write};

use shared::Versioned;

use crate::{
    cli::Global,
    client::Error,
    output::{Format, KeyJson, write_json},
};

/// Flags of `kvctl get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key to read.
    pub key: OsString,
}

/// Reads the key and prints it on `out`; `terminal` says whether `out` is one.
///
/// # Errors
/// [`Error::KeyNotFound`] when the key is absent, else the node's or the transport's error.
pub async fn run(
    args: Args,
    global: &Global,
    out: &mut impl Write,
    terminal: bool,
) -> Result<(), Error> {
    let key = args.key.into_encoded_bytes();
    let Some(found) = global.client()?.get(&key).await? else {
        return Err(Error::KeyNotFound(key));
    };
    print(out, global.output, &key, &found, terminal).map_err(Error::Output)
}

fn print(
    out: &mut impl Write,
    format: Format,
    key: &[u8],
    found: &Versioned,
    terminal: bool,
) -> std::io::Result<()> {
    match format {
        Format::Text => {
            out.write_all(&found.value)?;
            if terminal {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Format::Json => write_json(out, &KeyJson::entry(key, &found.value, found.version)),
    }
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

    async fn get(fake: Fake, key: &[u8], format: Format, terminal: bool) -> Result<Vec<u8>, Error> {
        let g = global(serve(fake).await, format);
        let mut out = Vec::new();
        let key = OsString::from(String::from_utf8_lossy(key).into_owned());
        run(Args { key }, &g, &mut out, terminal)
            .await
            .map(|()| out)
    }

    #[tokio::test]
    async fn exact_bytes_and_a_newline_only_on_a_terminal() {
        let fake = Fake::default()
            .with("bin", [0, 159, 146, 150, 0xff])
            .with("k", "v");
        let out = get(fake.clone(), b"bin", Format::Text, false)
            .await
            .expect("get");
        assert_eq!(out, [0, 159, 146, 150, 0xff]);
        let out = get(fake.clone(), b"k", Format::Text, false)
            .await
            .expect("get");
        assert_eq!(out, b"v");
        let out = get(fake, b"k", Format::Text, true).await.expect("get");
        assert_eq!(out, b"v\n");
    }

    #[tokio::test]
    async fn json_names_the_encoding() {
        let fake = Fake::default().with("bin", [0xff, 0xfe]).with("k", "v");
        let out = get(fake.clone(), b"k", Format::Json, true)
            .await
            .expect("get");
        assert_eq!(out, b"{\"key\":\"k\",\"value\":\"v\",\"version\":2}\n");
        let out = get(fake, b"bin", Format::Json, false).await.expect("get");
        assert_eq!(
            out,
            b"{\"key\":\"bin\",\"value_base64\":\"//4=\",\"version\":1}\n"
        );
    }

    #[tokio::test]
    async fn missing_key_exits_1_and_prints_nothing() {
        for format in [Format::Text, Format::Json] {
            let e = get(Fake::default(), b"nope", format, false)
                .await
                .expect_err("missing");
            assert_eq!(e.to_string(), "key not found: nope");
            assert_eq!(e.exit(), Exit::NotFound);
        }
    }
}
