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
//! - **OpenAI-compatible API** (`/v1/models`, `/v1/chat/completions`, `/v1/completions`): mapped
//!   onto the same sealed requests ([`openai`]).
//! - `GET /api/version` answers locally; `GET /secllama/attestation` returns the last attestation
//!   result (EAR); anything else is `404` in Ollama's error shape (`{"error": …}`).

use crate::attest::{Attestation, attest};
use crate::sealed::{SealedEnd, request_with};
use crate::transport::Endpoint;
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

mod audit;
pub mod openai;
pub mod origin;
mod serve;
pub mod stream;

pub use serve::{ServeOptions, serve};

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
    /// The receipt log audit of every verified receipt.
    audit: audit::Audit,
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

/// A local request's body (at most [`MAX_REQUEST`] bytes), or the `413` to answer.
async fn read_request(req: Request<Incoming>) -> Result<Vec<u8>, Response<Body>> {
    match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => Ok(b.to_bytes().to_vec()),
        Err(e) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, e)),
    }
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
        Self::start_with(url, manifest, receipts, None, ForwardLimits::default()).await
    }

    /// [`Proxy::start`] with `limits` on forwarding.
    pub async fn start_with(
        url: &str,
        manifest: Manifest,
        receipts: Option<&std::path::Path>,
        heads: Option<&std::path::Path>,
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
        let endpoint = Endpoint::parse(url)?;
        let audit = audit::Audit::spawn(endpoint.clone(), heads.map(std::path::Path::to_path_buf));
        let proxy = Arc::new(Self {
            endpoint,
            url: url.to_string(),
            manifest,
            current: RwLock::new(Err("not attested yet".into())),
            last: RwLock::new(None),
            receipts,
            audit,
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

    /// Receipts proven included in the enclave's log so far, and why the audit failed if it did.
    pub fn audit_state(&self) -> (u64, Option<String>) {
        (self.audit.audited(), self.audit.failure())
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
        if let Some(why) = self.audit.failure() {
            return error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the enclave's receipt log failed its audit; the proxy serves no more: {why}"
                ),
            );
        }
        if path.starts_with("/v1/") {
            // Ollama's OpenAI-compatible API, on the same sealed exchanges.
            return openai::handle(self, req)
                .await
                .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "404 page not found"));
        }
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
        let body = match read_request(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        self.forward_body(path, body, chunked).await
    }

    /// Forwards the Ollama request `body` for `path` sealed; `chunked`: the client reads a
    /// chunked body (HTTP/1.1), so a stream may be passed on as it arrives.
    pub(crate) async fn forward_body(
        self: Arc<Self>,
        path: &str,
        body: Vec<u8>,
        chunked: bool,
    ) -> Response<Body> {
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
                            me.audit.submit(
                                current.doc.payload.log.key,
                                &receipt_bytes,
                                receipt.log_index,
                            );
                            End::Done(status)
                        }
                        SealedEnd::Problem { status, problem } => End::Problem(status, problem),
                    }
                }
                Err(e) => {
                    let unknown_document = e
                        .downcast_ref::<crate::sealed::PlainRefusal>()
                        .is_some_and(|r| r.status == 409);
                    if unknown_document {
                        End::UnknownDocument(format!("{e:#}"))
                    } else if e.downcast_ref::<crate::transport::Unreachable>().is_some() {
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

#[allow(clippy::print_stderr)]
fn eprintln_warning(msg: &str) {
    eprintln!("{msg}");
}
