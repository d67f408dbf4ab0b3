//! Benchmark helpers: kept-alive HTTP/1.1 connections (one per address, reused by every request,
//! as a client library's pool does — both sides of each comparison use them), one streamed request
//! timed to its first body bytes and to its end, and the p50/p90 of a set of durations.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One kept-alive connection per address (`HOST:PORT` or `unix:PATH`), opened on first use and
/// again if the peer closed it.
#[derive(Default)]
pub struct KeptAlive {
    senders: HashMap<String, SendRequest<Full<Bytes>>>,
}

impl KeptAlive {
    async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
        macro_rules! handshake {
            ($stream:expr) => {{
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new($stream))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                sender
            }};
        }
        if let Some(path) = addr.strip_prefix("unix:") {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            return Ok(handshake!(s));
        }
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        Ok(handshake!(s))
    }

    /// Sends `POST path` with `headers` and `body` to `addr` on its kept-alive connection.
    pub async fn post(
        &mut self,
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        self.send("POST", addr, path, headers, body).await
    }

    /// Sends `GET path` to `addr` on its kept-alive connection.
    pub async fn get(
        &mut self,
        addr: &str,
        path: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        self.send("GET", addr, path, &[], Vec::new()).await
    }

    async fn send(
        &mut self,
        method: &str,
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let reusable = match self.senders.get_mut(addr) {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.senders
                .insert(addr.to_string(), Self::connect(addr).await?);
        }
        let sender = self.senders.get_mut(addr).ok_or("no connection")?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        sender.send_request(req).await.map_err(|e| e.to_string())
    }
}

/// Sends `body` as `POST /api/generate` to `addr` on its kept-alive connection in `conns` and
/// reads the whole answer: (time to the first body bytes, total time, bytes). Errors on any
/// failure or a status other than 200.
pub async fn timed(
    conns: &mut KeptAlive,
    addr: &str,
    body: &str,
) -> Result<(Duration, Duration, usize), String> {
    let t = Instant::now();
    let resp = conns
        .post(addr, "/api/generate", &[], body.as_bytes().to_vec())
        .await?;
    if resp.status() != 200 {
        return Err(format!("{addr}: status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut first = None;
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.map_err(|e| e.to_string())?.into_data() {
            if first.is_none() && !d.is_empty() {
                first = Some(t.elapsed());
            }
            n += d.len();
        }
    }
    Ok((first.ok_or("an empty answer")?, t.elapsed(), n))
}

/// p50 and p90 of `v`, in milliseconds (0 for an empty set).
pub fn p50_p90(mut v: Vec<Duration>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

/// A fresh attestation document from the enclave API at `addr` (`HOST:PORT`), opened (its
/// signature checked, not appraised), and its digest in hex for the sealed requests' header.
pub async fn attestation(
    addr: &str,
) -> Result<(secllama_protocol::attestation::VerifiedDocument, String), String> {
    let mut conns = KeptAlive::default();
    let resp = conns
        .get(addr, &format!("/attestation?nonce={}", "ab".repeat(32)))
        .await?;
    let doc = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = secllama_protocol::attestation::open_document(&doc).map_err(|e| e.to_string())?;
    Ok((v, hex::encode(secllama_protocol::sha256(&[&doc]).0)))
}
