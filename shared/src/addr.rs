//! Address parsing for flags and endpoints.
//!
//! The original server took `--host=http://localhost` and `--master=http://localhost:3000`; we
//! accept those and the plain forms `localhost`, `localhost:3000`, `127.0.0.1:3000` and
//! `[::1]:3000`. The scheme is optional and only `http` is accepted (the transport is plain TCP).

use std::fmt;

/// A host and port a node is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address, without brackets for IPv6.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
pub struct AddrError {
    input: String,
    reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> AddrError {
    AddrError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn strip_scheme(input: &str) -> Result<&str, AddrError> {
    let s = input.trim();
    let s = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(err(
                input,
                format!("scheme {scheme:?} is not supported, use http:// or none"),
            ));
        }
        None => s,
    };
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.contains('/') {
        return Err(err(input, "a path is not allowed"));
    }
    if s.is_empty() {
        return Err(err(input, "the host is empty"));
    }
    Ok(s)
}

/// Splits `host[:port]`, handling `[v6]:port` and bare IPv6.
fn split_host_port(input: &str, s: &str) -> Result<(String, Option<u16>), AddrError> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| err(input, format!("port {p:?} is not a number from 0 to 65535")))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| err(input, "missing ']'"))?;
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| err(input, "expected ':' after ']'"))?,
            )?),
        };
        return Ok((host.to_string(), port));
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 address has no port.
        return Ok((s.to_string(), None));
    }
    match s.split_once(':') {
        Some((host, port)) if !host.is_empty() => Ok((host.to_string(), Some(parse_port(port)?))),
        Some(_) => Err(err(input, "the host is empty")),
        None => Ok((s.to_string(), None)),
    }
}

/// Parses an endpoint such as `http://localhost:3000`; `default_port` fills a missing port.
///
/// # Errors
/// When the scheme is not `http`, a path is present, or the port is not a number.
pub fn parse_endpoint(input: &str, default_port: u16) -> Result<Endpoint, AddrError> {
    let s = strip_scheme(input)?;
    let (host, port) = split_host_port(input, s)?;
    Ok(Endpoint {
        host,
        port: port.unwrap_or(default_port),
    })
}

/// Parses `--host`: `http://name`, `name` or an IP, without a port (the port has its own flag).
///
/// # Errors
/// When the value carries a port, a path or a scheme other than `http`.
pub fn parse_host(input: &str) -> Result<String, AddrError> {
    let s = strip_scheme(input)?;
    let (host, port) = split_host_port(input, s)?;
    if port.is_some() {
        return Err(err(
            input,
            "--host takes no port; give the port with --port",
        ));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = parse_endpoint("http://localhost:3000", 1).expect("parse");
        assert_eq!(
            e,
            Endpoint {
                host: "localhost".into(),
                port: 3000
            }
        );
        assert_eq!(e.to_string(), "localhost:3000");
        assert_eq!(parse_endpoint("localhost", 3000).expect("parse").port, 3000);
        assert_eq!(
            parse_endpoint("HTTP://127.0.0.1:9/", 1)
                .expect("parse")
                .port,
            9
        );
        let v6 = parse_endpoint("[::1]:3001", 1).expect("parse");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:3001");
        assert!(parse_endpoint("https://x:1", 1).is_err());
        assert!(parse_endpoint("x:99999", 1).is_err());
        assert!(parse_endpoint("http://x:1/path", 1).is_err());
        assert!(parse_endpoint("", 1).is_err());
        assert!(parse_endpoint(":80", 1).is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(parse_host("http://localhost").expect("parse"), "localhost");
        assert_eq!(parse_host("10.1.2.3").expect("parse"), "10.1.2.3");
        assert_eq!(parse_host("::1").expect("parse"), "::1");
        let e = parse_host("http://localhost:3000").expect_err("port refused");
        assert!(e.to_string().contains("--port"), "{e}");
    }
}
