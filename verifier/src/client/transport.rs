//! HTTP/1.1 to the enclave API: over a unix socket (`unix:PATH`) or TCP (`http://HOST:PORT`, e.g.
//! through the bridge). One connection per request; every step has a timeout.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use secllama_protocol::Nonce;
use secllama_protocol::attestation::MAX_DOCUMENT_LEN;
use std::path::PathBuf;
use std::time::Duration;

/// Header naming the attestation document a sealed request was sealed for.
pub const ATTESTATION_HEADER: &str = "x-secllama-attestation";
/// Time allowed to connect and to receive response headers.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to fetch an attestation document (a TPM quote can take seconds).
pub const ATTESTATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest plain (unsealed) error body read.
const MAX_PLAIN_BODY: usize = 64 * 1024;

/// Where the enclave API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `http://HOST:PORT`: the `HOST:PORT`.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:PATH` or `http://HOST:PORT` (a trailing `/` is allowed; no other path).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("enclave URL {url:?}: expected unix:PATH with a non-empty path");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("http://") {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            let valid = !authority.is_empty()
                && !authority.contains(['/', '?', '#', '@'])
                && authority
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !valid {
                bail!("enclave URL {url:?}: expected http://HOST:PORT");
            }
            return Ok(Self::Tcp(authority.to_string()));
        }
        bail!("enclave URL {url:?}: expected unix:PATH or http://HOST:PORT")
    }

    fn host(&self) -> &str {
        match self {
            Self::Unix(_) => "enclave",
            Self::Tcp(a) => a,
        }
    }

    /// Sends one request and returns the response (headers received; the body streams).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        header: Option<(&str, String)>,
        body: Vec<u8>,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let fut = async {
            let mut sender = match self {
                Self::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .with_context(|| format!("connecting to unix:{}", p.display()))?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                            .await?;
                    tokio::spawn(conn);
                    sender
                }
                Self::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a.as_str())
                        .await
                        .with_context(|| format!("connecting to {a}"))?;
                    // Headers and body go out as separate writes: without this, Nagle holds the
                    // body until the peer's delayed ACK (~40 ms per request).
                    let _ = s.set_nodelay(true);
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                            .await?;
                    tokio::spawn(conn);
                    sender
                }
            };
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, self.host());
            if let Some((name, value)) = header {
                req = req.header(name, value);
            }
            let req = req.body(Full::new(Bytes::from(body)))?;
            sender
                .send_request(req)
                .await
                .with_context(|| format!("{method} {path}"))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer within {CONNECT_TIMEOUT:?}"))?
    }

    /// `GET /attestation?nonce=`: the attestation document (at most 64 KiB).
    pub async fn attestation(&self, nonce: &Nonce) -> anyhow::Result<Vec<u8>> {
        let path = format!("/attestation?nonce={}", hex::encode(nonce.as_bytes()));
        let fut = async {
            let resp = self.send("GET", &path, None, Vec::new()).await?;
            let status = resp.status();
            let body = read_limited(resp.into_body(), MAX_DOCUMENT_LEN).await?;
            if !status.is_success() {
                bail!("GET /attestation: HTTP {status}: {}", problem_detail(&body));
            }
            Ok(body)
        };
        tokio::time::timeout(ATTESTATION_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("GET /attestation: no document within {ATTESTATION_TIMEOUT:?}"))?
    }
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_limited(body: Incoming, limit: usize) -> anyhow::Result<Vec<u8>> {
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer (limit {limit} bytes): {e}"))?
        .to_bytes()
        .to_vec())
}

/// The `detail` of an RFC 9457 problem body, else the body as (lossy, truncated) text.
pub fn problem_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(d) = v.get("detail").and_then(|d| d.as_str())
    {
        return d.to_string();
    }
    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()
}

/// Reads a plain (unsealed) error body.
pub async fn plain_error(body: Incoming) -> String {
    match read_limited(body, MAX_PLAIN_BODY).await {
        Ok(b) => problem_detail(&b),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_unix_and_http_urls_and_refuses_others() {
        assert_eq!(
            Endpoint::parse("unix:/run/e.sock").unwrap(),
            Endpoint::Unix("/run/e.sock".into())
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8443/").unwrap(),
            Endpoint::Tcp("127.0.0.1:8443".into())
        );
        for bad in [
            "unix:",
            "http://host",
            "http://:80",
            "http://h:80/x",
            "https://h:443",
            "h:80",
            "http://u@h:80",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problem_detail_prefers_the_rfc9457_detail() {
        assert_eq!(problem_detail(br#"{"detail":"no"}"#), "no");
        assert_eq!(problem_detail(b"plain"), "plain");
    }
}
