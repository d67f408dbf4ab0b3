//! HTTP/1.1 to the enclave API: over a unix socket (`unix:PATH`) or TCP (`http://HOST:PORT`, e.g.
//! through the bridge). Connections are kept alive and reused (hyper-util's pooled client over our
//! connector): an idle connection serves the next request, so a request costs no new TCP and unix
//! connection through the bridge. Every step has a timeout; a failure to reach the enclave is a
//! [`Unreachable`] error, distinct from evidence that does not verify.

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use secllama_protocol::Nonce;
use secllama_protocol::attestation::MAX_DOCUMENT_LEN;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Header naming the attestation document a sealed request was sealed for.
pub const ATTESTATION_HEADER: &str = "x-secllama-attestation";
/// Time allowed to connect and to receive response headers.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to fetch an attestation document (a TPM quote can take seconds).
pub const ATTESTATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an idle pooled connection is kept: less than the enclave's header timeout (10 s),
/// which closes idle connections from its side.
pub const POOL_IDLE: Duration = Duration::from_secs(5);
/// Largest plain (unsealed) error body read.
const MAX_PLAIN_BODY: usize = 64 * 1024;

/// Where the enclave API is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `http://HOST:PORT`: the `HOST:PORT`.
    Tcp(String),
}

/// The enclave API at one address, with its pool of kept-alive connections (cheap to clone: the
/// clones share the pool).
#[derive(Clone)]
pub struct Endpoint {
    addr: Addr,
    client: Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({:?})", self.addr)
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

/// The enclave could not be reached, or the connection broke: nothing about the evidence.
#[derive(Debug, thiserror::Error)]
#[error("the enclave at {addr} is unreachable or busy: {reason}")]
pub struct Unreachable {
    /// Where.
    pub addr: String,
    /// What failed.
    pub reason: String,
}

impl Endpoint {
    /// Parses `unix:PATH` or `http://HOST:PORT` (a trailing `/` is allowed; no other path).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let addr = Self::parse_addr(url)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(Connector(addr.clone()));
        Ok(Self { addr, client })
    }

    fn parse_addr(url: &str) -> anyhow::Result<Addr> {
        if let Some(path) = url.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("enclave URL {url:?}: expected unix:PATH with a non-empty path");
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
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
            return Ok(Addr::Tcp(authority.to_string()));
        }
        bail!("enclave URL {url:?}: expected unix:PATH or http://HOST:PORT")
    }

    /// The address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    fn host(&self) -> &str {
        match &self.addr {
            Addr::Unix(_) => "enclave",
            Addr::Tcp(a) => a,
        }
    }

    fn describe(&self) -> String {
        match &self.addr {
            Addr::Unix(p) => format!("unix:{}", p.display()),
            Addr::Tcp(a) => a.clone(),
        }
    }

    /// Sends one request on a pooled connection and returns the response (headers received; the
    /// body streams, and the connection returns to the pool once it is read to its end). A
    /// failure to connect or a connection that breaks before the headers is [`Unreachable`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        header: Option<(&str, String)>,
        body: Vec<u8>,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let uri = format!("http://{}{path}", self.host());
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, self.host());
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Unreachable {
                addr: self.describe(),
                reason: format!("{method} {path}: {}", error_chain(&e)),
            }
            .into()),
            Err(_) => Err(Unreachable {
                addr: self.describe(),
                reason: format!("{method} {path}: no answer within {CONNECT_TIMEOUT:?}"),
            }
            .into()),
        }
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

    /// `POST /attestation/credential`: asks the enclave's TPM to activate a credential
    /// (TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, size-prefixed); returns the released secret.
    pub async fn activate_credential(
        &self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        use secllama_protocol::cbor::{self, Key, MapReader};
        let body = cbor::to_vec(&cbor::map(vec![
            (
                Key::Text("id_object"),
                ciborium::Value::Bytes(id_object.to_vec()),
            ),
            (
                Key::Text("encrypted_secret"),
                ciborium::Value::Bytes(encrypted_secret.to_vec()),
            ),
        ]))?;
        let fut = async {
            let resp = self
                .send("POST", "/attestation/credential", None, body)
                .await?;
            let status = resp.status();
            let body = read_limited(resp.into_body(), 4096).await?;
            if !status.is_success() {
                bail!(
                    "POST /attestation/credential: HTTP {status}: {}",
                    problem_detail(&body)
                );
            }
            let v = cbor::decode("credential answer", &body, 4096)?;
            let mut r = MapReader::new("credential answer", v)?;
            let secret = r.bytes(Key::Text("secret"))?;
            r.finish()?;
            Ok(secret)
        };
        tokio::time::timeout(ATTESTATION_TIMEOUT, fut)
            .await
            .map_err(|_| {
                anyhow!("POST /attestation/credential: no answer within {ATTESTATION_TIMEOUT:?}")
            })?
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Opens connections to one enclave address for the pooled client.
#[derive(Debug, Clone)]
pub struct Connector(Addr);

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: hyper::Uri) -> Self::Future {
        let addr = self.0.clone();
        Box::pin(async move {
            Ok(TokioIo::new(match addr {
                Addr::Unix(p) => Stream::Unix(tokio::net::UnixStream::connect(&p).await?),
                Addr::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                    // Headers and body go out as separate writes: without this, Nagle holds the
                    // body until the peer's delayed ACK (~40 ms per request).
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
            }))
        })
    }
}

/// A connection to the enclave: TCP (through the bridge) or a unix socket.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(tokio::net::TcpStream),
    /// A unix socket.
    Unix(tokio::net::UnixStream),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
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
            Endpoint::parse("unix:/run/e.sock").unwrap().addr(),
            &Addr::Unix("/run/e.sock".into())
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8443/").unwrap().addr(),
            &Addr::Tcp("127.0.0.1:8443".into())
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
