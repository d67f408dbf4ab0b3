//! The verifying local proxy: serves Ollama's plaintext HTTP API on loopback to unmodified clients
//! and forwards every request sealed to an attested enclave (issue "verifying local proxy").
//!
//! - **Attestation first.** [`Proxy::start`] attests (fresh nonce, full appraisal against the
//!   manifest) and refuses to start unless the result is affirming. It re-attests every
//!   `reattest` interval and at once when the enclave says it no longer knows the attested
//!   document (its keys changed, e.g. a restart). While the last appraisal is not affirming, every
//!   API request gets `503` with the reason — nothing is forwarded to an unverified enclave.
//! - **Sealed forwarding.** `POST /api/generate`, `POST /api/chat`, `POST /api/show`,
//!   `GET /api/tags` and `GET /api/ps` are sealed
//!   (the first request to a document wraps a content key with RSA-OAEP; later ones reuse it as a
//!   session key), and the answer is opened chunk by chunk: each authenticated chunk is passed on
//!   as it arrives, so the first token reaches the client before the answer is complete. Streamed
//!   answers keep Ollama's NDJSON; `"stream": false` answers (and every answer to an HTTP/1.0
//!   client, whose body ends with the connection) are passed on whole, with the runner's status,
//!   only after the receipt verified. The bytes the client gets are exactly the runner's.
//! - **Nothing complete before the receipt.** In a stream the final NDJSON line (`"done": true`)
//!   and anything after it are held back until the receipt verified; a failure ends the chunked
//!   body without its last chunk, which every HTTP client reports as an error.
//! - **Receipts.** The final receipt must verify under the attested signing key and match the
//!   request sent and the bytes received; otherwise the response is aborted (the client sees a
//!   broken transfer, never a completed forged answer). Verified receipts are appended to the
//!   receipts file as JSON lines (request id, time, log index, receipt; no plaintext).
//! - `GET /api/version` answers locally; `GET /secllama/attestation` returns the last attestation
//!   result (EAR); anything else is `404` in Ollama's error shape (`{"error": …}`).

use crate::client::sealed::{SealedEnd, request_with};
use crate::client::{Attestation, Endpoint, attest};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use secllama_measurements::manifest::Manifest;
use secllama_protocol::attestation::VerifiedDocument;
use secllama_protocol::seal::ContentKey;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{RwLock, mpsc};

pub mod origin;
mod stream;

use stream::{End, Event, HoldBack, Streamed};

/// Largest request body accepted from a local client.
pub const MAX_REQUEST: usize = 1 << 20;

type Body = BoxBody<Bytes, std::io::Error>;

/// The attested enclave requests go to.
#[derive(Clone)]
struct Current {
    doc: VerifiedDocument,
    session: Option<ContentKey>,
}

/// The proxy's shared state.
pub struct Proxy {
    endpoint: Endpoint,
    url: String,
    manifest: Manifest,
    current: RwLock<Result<Current, String>>,
    last: RwLock<Option<Attestation>>,
    receipts: Option<std::sync::Mutex<std::fs::File>>,
    /// Exchanges with the enclave at once: the most connections the pool opens.
    slots: Arc<tokio::sync::Semaphore>,
    /// Exchanges in flight or waiting for a slot; past it, `503` with `Retry-After`.
    queue: Arc<tokio::sync::Semaphore>,
    limits: ForwardLimits,
}

/// How many requests the proxy sends the enclave at once, and how many wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardLimits {
    /// Exchanges with the enclave at once (each holds one kept-alive connection); keep it within
    /// the bridge's per-peer limit (16).
    pub connections: usize,
    /// Requests that wait for a free connection (like Ollama's `OLLAMA_MAX_QUEUE`); more get
    /// `503` with `Retry-After`.
    pub queue: usize,
}

impl Default for ForwardLimits {
    fn default() -> Self {
        Self {
            connections: 8,
            queue: 512,
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.url)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The Ollama release whose API the proxy serves (`GET /api/version`): the same as the bundled
/// `secllama-runner`'s (`runner/src/api.rs`); clients gate features on it.
pub const OLLAMA_API_VERSION: &str = "0.12.0";

/// `GET /`: Ollama's heartbeat answer.
fn running() -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(b"Ollama is running"))
            .map_err(|never| match never {})
            .boxed(),
    );
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(value.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Ollama's error shape.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_response(status, json!({ "error": message.to_string() }))
}

/// `503` with `Retry-After: 1`: the enclave is busy or unreachable for now (not evidence that
/// failed to verify).
fn busy(message: impl std::fmt::Display) -> Response<Body> {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

impl Proxy {
    /// Attests the enclave at `url` against `manifest`; fails unless the result is affirming.
    pub async fn start(
        url: &str,
        manifest: Manifest,
        receipts: Option<&std::path::Path>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::start_with(url, manifest, receipts, ForwardLimits::default()).await
    }

    /// [`Proxy::start`] with `limits` on forwarding.
    pub async fn start_with(
        url: &str,
        manifest: Manifest,
        receipts: Option<&std::path::Path>,
        limits: ForwardLimits,
    ) -> anyhow::Result<Arc<Self>> {
        let limits = ForwardLimits {
            connections: limits.connections.max(1),
            queue: limits.queue,
        };
        let receipts = receipts
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening the receipts file {}", p.display()))
                    .map(std::sync::Mutex::new)
            })
            .transpose()?;
        let proxy = Arc::new(Self {
            endpoint: Endpoint::parse(url)?,
            url: url.to_string(),
            manifest,
            current: RwLock::new(Err("not attested yet".into())),
            last: RwLock::new(None),
            receipts,
            slots: Arc::new(tokio::sync::Semaphore::new(limits.connections)),
            queue: Arc::new(tokio::sync::Semaphore::new(
                limits.connections + limits.queue,
            )),
            limits,
        });
        if let Err(why) = proxy.reattest().await {
            anyhow::bail!("the enclave at {url} is not affirming; not serving:\n{why}");
        }
        Ok(proxy)
    }

    /// Attests again; on failure every request gets 503 until an attestation succeeds.
    pub async fn reattest(&self) -> Result<(), String> {
        let outcome = attest(&self.url, &self.manifest).await;
        let next = match &outcome {
            Ok(a) => match a.affirmed() {
                Some(doc) => Ok(doc.clone()),
                None => Err(a.result.to_text()),
            },
            Err(e) => Err(format!("attestation failed: {e:#}")),
        };
        let mut current = self.current.write().await;
        let result = match next {
            Ok(doc) => {
                // Same keys: keep the session; new keys (a restarted enclave): start over.
                let session = match &*current {
                    Ok(c) if c.doc.payload.keys == doc.payload.keys => c.session.clone(),
                    _ => None,
                };
                *current = Ok(Current { doc, session });
                Ok(())
            }
            Err(why) => {
                *current = Err(why.clone());
                Err(why)
            }
        };
        drop(current);
        if let Ok(a) = outcome {
            *self.last.write().await = Some(a);
        }
        result
    }

    /// Re-attests every `every` until the runtime stops.
    pub fn spawn_reattest(self: &Arc<Self>, every: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(why) = me.reattest().await {
                    eprintln_warning(&format!("secllama proxy: re-attestation failed:\n{why}"));
                }
            }
        });
    }

    /// Serves one local request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            // Ollama's heartbeat (the ollama CLI and several UIs call it before anything else).
            (&Method::GET | &Method::HEAD, "/") => running(),
            // Clients gate on Ollama's version, not on ours.
            (&Method::GET | &Method::HEAD, "/api/version") => {
                json_response(StatusCode::OK, json!({ "version": OLLAMA_API_VERSION }))
            }
            // A heartbeat on the model list: answered from the current attestation, without a
            // sealed round trip (a HEAD carries no body to verify).
            (&Method::HEAD, "/api/tags") => {
                let affirming = self
                    .last
                    .read()
                    .await
                    .as_ref()
                    .is_some_and(|a| a.result.affirming());
                if affirming {
                    json_response(StatusCode::OK, json!({ "models": [] }))
                } else {
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the enclave is not attested",
                    )
                }
            }
            (&Method::GET, "/secllama/attestation") => match &*self.last.read().await {
                Some(a) => {
                    let status = if a.result.affirming() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    json_response(status, serde_json::to_value(&a.result).unwrap_or_default())
                }
                None => error(StatusCode::SERVICE_UNAVAILABLE, "no attestation yet"),
            },
            (&Method::POST, "/api/generate" | "/api/chat" | "/api/show")
            | (&Method::GET, "/api/tags" | "/api/ps") => self.forward(&path, req).await,
            (
                _,
                "/api/pull" | "/api/push" | "/api/create" | "/api/copy" | "/api/delete"
                | "/api/embed" | "/api/embeddings",
            ) => error(
                StatusCode::NOT_FOUND,
                format!(
                    "{path} is not offered by the secllama enclave (only generate, chat, show, \
                     tags and ps are)"
                ),
            ),
            _ => error(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }

    async fn forward(self: Arc<Self>, path: &str, req: Request<Incoming>) -> Response<Body> {
        // An HTTP/1.0 client reads a streamed body until the connection closes, so an aborted
        // transfer would look complete to it: it gets the whole answer at once, after the receipt.
        let chunked = req.version() >= hyper::Version::HTTP_11;
        let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, e),
        };
        let streaming = matches!(path, "/api/generate" | "/api/chat")
            && serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
                .unwrap_or(true);
        // A place in the queue, then a connection: past the queue, busy (like Ollama's
        // OLLAMA_MAX_QUEUE); within it, the request waits its turn.
        let Ok(queued) = self.queue.clone().try_acquire_owned() else {
            return busy(format!(
                "secllama proxy: busy: {} requests are in flight or queued; retry later",
                self.limits.connections + self.limits.queue
            ));
        };
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return busy("secllama proxy: shutting down");
        };
        let permits = Arc::new((queued, slot));
        for attempt in 0..2 {
            let current = match &*self.current.read().await {
                Ok(c) => c.clone(),
                Err(why) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "secllama proxy: the enclave is not attested, nothing was forwarded: {why}"
                        ),
                    );
                }
            };
            match self
                .exchange(
                    path,
                    body.clone(),
                    current,
                    streaming,
                    chunked,
                    permits.clone(),
                )
                .await
            {
                Exchange::Response(r) => return r,
                Exchange::UnknownDocument(why) if attempt == 0 => {
                    // The enclave no longer knows the document: its keys changed. Attest again.
                    if let Err(e) = self.reattest().await {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "secllama proxy: re-attestation after \"{why}\" failed, nothing was forwarded: {e}"
                            ),
                        );
                    }
                }
                Exchange::UnknownDocument(why) => return error(StatusCode::BAD_GATEWAY, why),
            }
        }
        error(
            StatusCode::BAD_GATEWAY,
            "secllama proxy: no attested enclave",
        )
    }

    async fn exchange(
        self: &Arc<Self>,
        path: &str,
        body: Vec<u8>,
        current: Current,
        streaming: bool,
        chunked: bool,
        permits: Arc<(
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        )>,
    ) -> Exchange {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let me = self.clone();
        let api_path = path.to_string();
        tokio::spawn(async move {
            // The connection slot is held until the exchange ends.
            let _permits = permits;
            let data_tx = tx.clone();
            let on_data = move |d: &[u8]| -> anyhow::Result<()> {
                data_tx
                    .send(Event::Data(Bytes::copy_from_slice(d)))
                    .map_err(|_| anyhow::anyhow!("the local client went away"))
            };
            let outcome = request_with(
                &me.endpoint,
                &current.doc,
                &api_path,
                body,
                current.session.as_ref(),
                on_data,
            )
            .await;
            let end = match outcome {
                Ok(answer) => {
                    me.remember_session(&current.doc, &answer.key).await;
                    match answer.end {
                        SealedEnd::Receipt {
                            status,
                            receipt,
                            receipt_bytes,
                        } => {
                            me.log_receipt(
                                &answer.request_id,
                                &current.doc,
                                receipt.log_index,
                                &receipt_bytes,
                            );
                            End::Done(status)
                        }
                        SealedEnd::Problem { status, problem } => End::Problem(status, problem),
                    }
                }
                Err(e) => {
                    let unknown_document = e
                        .downcast_ref::<crate::client::sealed::PlainRefusal>()
                        .is_some_and(|r| r.status == 409);
                    if unknown_document {
                        End::UnknownDocument(format!("{e:#}"))
                    } else if e
                        .downcast_ref::<crate::client::transport::Unreachable>()
                        .is_some()
                    {
                        End::Unreachable(format!("{e:#}"))
                    } else {
                        End::Failed(format!("{e:#}"))
                    }
                }
            };
            let _ = tx.send(Event::End(end));
        });

        // Non-streamed answers are one JSON object: pass it on whole, with the runner's status.
        let first = rx.recv().await;
        if !streaming || !chunked || matches!(first, Some(Event::End(_)) | None) {
            let mut data = Vec::new();
            let mut next = first;
            loop {
                match next {
                    Some(Event::Data(d)) => data.extend_from_slice(&d),
                    Some(Event::End(End::Done(status))) => {
                        let status =
                            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                        let mut r = Response::new(
                            Full::new(Bytes::from(data))
                                .map_err(|never| match never {})
                                .boxed(),
                        );
                        *r.status_mut() = status;
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(if streaming {
                                "application/x-ndjson"
                            } else {
                                "application/json; charset=utf-8"
                            }),
                        );
                        return Exchange::Response(r);
                    }
                    Some(Event::End(End::Problem(status, problem))) => {
                        let status =
                            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                        let detail = problem
                            .get("detail")
                            .and_then(serde_json::Value::as_str)
                            .map_or_else(|| problem.to_string(), str::to_string);
                        return Exchange::Response(error(
                            status,
                            format!("secllama enclave: {detail}"),
                        ));
                    }
                    Some(Event::End(End::UnknownDocument(why))) => {
                        return Exchange::UnknownDocument(why);
                    }
                    Some(Event::End(End::Failed(why))) => {
                        return Exchange::Response(error(
                            StatusCode::BAD_GATEWAY,
                            format!("secllama proxy: the sealed answer did not verify: {why}"),
                        ));
                    }
                    Some(Event::End(End::Unreachable(why))) => {
                        return Exchange::Response(busy(format!(
                            "secllama proxy: nothing verified: {why}"
                        )));
                    }
                    None => {
                        return Exchange::Response(error(
                            StatusCode::BAD_GATEWAY,
                            "secllama proxy: the exchange ended without a result",
                        ));
                    }
                }
                next = rx.recv().await;
            }
        }

        // Streamed: pass each authenticated chunk on as it arrives; abort the transfer if the end
        // does not verify, so the client never sees a completed forged answer.
        let mut r = Response::new(BodyExt::boxed(Streamed {
            first,
            rx,
            lines: HoldBack::default(),
            done: false,
        }));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-ndjson"),
        );
        Exchange::Response(r)
    }

    async fn remember_session(&self, doc: &VerifiedDocument, key: &ContentKey) {
        let mut current = self.current.write().await;
        if let Ok(c) = &mut *current
            && c.doc.digest == doc.digest
            && c.session.is_none()
        {
            c.session = Some(key.clone());
        }
    }

    fn log_receipt(&self, request_id: &str, doc: &VerifiedDocument, index: u64, receipt: &[u8]) {
        let Some(file) = &self.receipts else { return };
        let line = json!({
            "request_id": request_id,
            "time": now_secs(),
            "log_index": index,
            "attestation": doc.digest.to_hex(),
            "receipt": hex::encode(receipt),
        });
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
}

enum Exchange {
    Response(Response<Body>),
    UnknownDocument(String),
}

/// How the proxy serves its local listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Which hosts and origins are served ([`origin`]).
    pub rules: origin::LocalRules,
    /// Connections served at once; further ones wait in the kernel's accept queue until one ends.
    pub max_connections: usize,
    /// Time a client has to send a whole request head, from the connection's start or from the
    /// end of the previous answer (so it also bounds idle keep-alive connections).
    pub header_timeout: Duration,
}

impl ServeOptions {
    /// Defaults for a listener on `listen`: Ollama's host and origin rules plus `origins`, 512
    /// connections, 10 s for a request head.
    pub fn new(listen_is_loopback: bool, origins: &str) -> Self {
        Self {
            rules: origin::LocalRules::new(listen_is_loopback, origins),
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves local clients on `listener` until accepting fails (other than for a transient reason
/// such as running out of descriptors, which is waited out).
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let options = Arc::new(options);
    loop {
        // A slot first: past the limit, connections queue in the kernel instead of being served
        // by a task each.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) if transient_accept_error(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let rules = options.clone();
            let service = hyper::service::service_fn(move |req| {
                let (p, rules) = (proxy.clone(), rules.clone());
                async move { Ok::<_, std::convert::Infallible>(local(p, &rules.rules, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(options.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// Accept errors that say nothing about the listener: the peer gave up, or descriptors or memory
/// ran out for a moment.
fn transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

/// errno values (Linux) of transient accept failures.
mod libc_errno {
    pub const EMFILE: i32 = 24;
    pub const ENFILE: i32 = 23;
    pub const ENOBUFS: i32 = 105;
    pub const ENOMEM: i32 = 12;
}

/// One local request: the host and origin rules, then [`Proxy::handle`], with CORS headers.
async fn local(
    proxy: Arc<Proxy>,
    rules: &origin::LocalRules,
    req: Request<Incoming>,
) -> Response<Body> {
    match rules.decide(req.method(), req.headers()) {
        origin::Decision::Forbidden(why) => {
            error(StatusCode::FORBIDDEN, format!("secllama proxy: {why}"))
        }
        origin::Decision::Preflight(o) => {
            let mut r = Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            );
            *r.status_mut() = StatusCode::NO_CONTENT;
            origin::preflight_headers(r.headers_mut(), o);
            r
        }
        origin::Decision::Serve(o) => {
            let mut r = proxy.handle(req).await;
            if let Some(o) = o {
                r.headers_mut()
                    .insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                r.headers_mut().insert(
                    hyper::header::VARY,
                    hyper::header::HeaderValue::from_static("Origin"),
                );
            }
            r
        }
    }
}

#[allow(clippy::print_stderr)]
fn eprintln_warning(msg: &str) {
    eprintln!("{msg}");
}
