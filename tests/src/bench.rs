//! Benchmark helpers: one streamed request timed to its first body bytes and to its end, and
//! the p50/p90 of a set of durations.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};

/// Sends `body` as `POST /api/generate` to `addr` on a new connection (as the Ollama libraries
/// do per call) and reads the whole answer: (time to the first body bytes, total time, bytes).
/// Errors on any failure or a status other than 200.
pub async fn timed(addr: &str, body: &str) -> Result<(Duration, Duration, usize), String> {
    let t = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/api/generate")
        .header("host", "x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
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
