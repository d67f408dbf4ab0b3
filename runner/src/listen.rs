//! The `--listen` address: loopback TCP (127.0.0.0/8, `[::1]`, `localhost:PORT`) or `unix:PATH`,
//! nothing else — the runner never listens where another machine could reach it. Parsing never
//! resolves names or opens a socket; binding does.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Where the runner listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

const EXPECTED: &str =
    "expected a loopback address (127.0.0.0/8:PORT, [::1]:PORT or localhost:PORT) or unix:PATH";

/// Parses a `--listen` value.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{EXPECTED}, found {s:?} (empty path)"));
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{EXPECTED}, found {s:?} (bad port)"))?;
        return Ok(Listen::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
    }
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{EXPECTED}, found {s:?} (not an address)"))?;
    if addr.ip().is_loopback() {
        Ok(Listen::Tcp(addr))
    } else {
        Err(format!(
            "{EXPECTED}, found {s:?} ({} is not a loopback address)",
            addr.ip()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unix_are_accepted() {
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            Listen::Tcp("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen("127.8.9.10:11434").unwrap(),
            Listen::Tcp("127.8.9.10:11434".parse().unwrap())
        );
        assert_eq!(
            parse_listen("[::1]:80").unwrap(),
            Listen::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_listen("localhost:11434").unwrap(),
            Listen::Tcp("127.0.0.1:11434".parse().unwrap())
        );
        assert_eq!(
            parse_listen("unix:/run/r.sock").unwrap(),
            Listen::Unix("/run/r.sock".into())
        );
        assert_eq!(
            parse_listen("unix:/run/r.sock").unwrap().to_string(),
            "unix:/run/r.sock"
        );
    }

    #[test]
    fn everything_else_is_refused_with_what_was_expected() {
        for bad in [
            "0.0.0.0:0",
            "192.0.2.1:80",
            "[::]:80",
            "[::ffff:127.0.0.1]:80",
            "10.0.0.1:1",
            "example.com:80",
            "localhost",
            "localhost:x",
            "127.0.0.1",
            "unix:",
            "vsock:3:5000",
            "",
        ] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("expected a loopback address"), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
