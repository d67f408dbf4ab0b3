//! The enclave API (DESIGN.md "Enclave API") over HTTP/1.1 on the agent's listener:
//!
//! | method, path | answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` |
//! | `GET /attestation?nonce=<hex>` | the COSE_Sign1 attestation document (`application/cose`) |
//! | `GET /status` | the operator's view: mode, digests, PCRs, runner, request counts, log and TPM counter ([`crate::status`]) |
//! | `GET /log/head`, `GET /log/proof?index=&size=`, `GET /log/consistency?from=&to=` | the receipt log's signed head and proofs ([`crate::log::api`]) |
//! | `POST /attestation/credential` | credential activation: CBOR `{"id_object": bstr, "encrypted_secret": bstr}` (TPM2_MakeCredential's output for this TPM's EK and the AK's Name) → CBOR `{"secret": bstr}` |
//! | `POST /v1/sealed/api/{generate,chat,tags,show,ps}` | a sealed stream (see below) |
//!
//! A sealed request names the attestation document it was sealed for in the
//! `X-Secllama-Attestation` header (hex SHA-256; the enclave must have issued it, and the digest is
//! part of the AAD, so the host cannot change it). The answer is a sealed stream
//! (`secllama_protocol::seal::StreamSealer`): its data chunks are the runner's bytes as they
//! arrive — never buffered whole — and its final chunk is a JSON envelope, authenticated like the
//! rest: `{"status": <runner HTTP status>, "receipt": "<hex COSE_Sign1>"}`, or
//! `{"status": 4xx/5xx, "problem": {RFC 9457}}` when the enclave refuses (policy, replay) or fails.
//! Errors before the request could be opened are plain RFC 9457 problem details.

use crate::agent::{Agent, now_ms};
use crate::policy::Endpoint;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use secllama_protocol::receipt::{ReceiptParams, ReceiptPayload, sign_receipt};
use secllama_protocol::seal::{
    RecipientKind, RequestContext, ResponseKeys, StreamSealer, open_request,
};
use secllama_protocol::{Nonce, Sha256Digest};
use serde_json::{Value, json};
use sha2::Digest;
use std::convert::Infallible;
use std::sync::Arc;

/// Header naming the attestation document a sealed request was sealed for.
pub const ATTESTATION_HEADER: &str = "x-secllama-attestation";
/// Content type of a sealed stream.
pub const SEALED_STREAM: &str = "application/vnd.secllama.sealed-stream";
/// Largest sealed request body.
pub const MAX_BODY: usize = secllama_protocol::seal::request::MAX_REQUEST_LEN;

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn problem(status: StatusCode, title: &str, detail: String) -> Value {
    json!({"type": format!("urn:secllama:problem:{}", title.to_ascii_lowercase().replace(' ', "-")),
           "title": title, "status": status.as_u16(), "detail": detail})
}

pub(crate) fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

pub(crate) fn plain_problem(status: StatusCode, title: &str, detail: String) -> Response<Body> {
    plain(
        status,
        "application/problem+json",
        problem(status, title, detail).to_string().into_bytes(),
    )
}

/// A response body fed by a channel of frames.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Handles one request.
pub async fn handle(
    agent: Arc<Agent>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    Ok(match (method, path.as_str()) {
        (Method::GET, "/healthz") => plain(
            StatusCode::OK,
            "application/json",
            br#"{"status":"ok"}"#.to_vec(),
        ),
        (Method::GET, "/attestation") => attestation(agent, req.uri().query().unwrap_or("")).await,
        (Method::POST, "/attestation/credential") => credential(agent, req).await,
        (Method::GET, "/status") => crate::status::handle(agent).await,
        (Method::GET, "/log/head") => crate::log::api::head(agent).await,
        (Method::GET, "/log/proof") => {
            crate::log::api::proof(&agent, req.uri().query().unwrap_or(""))
        }
        (Method::GET, "/log/consistency") => {
            crate::log::api::consistency(&agent, req.uri().query().unwrap_or(""))
        }
        (Method::POST, "/v1/sealed/api/generate") => sealed(agent, Endpoint::Generate, req).await,
        (Method::POST, "/v1/sealed/api/chat") => sealed(agent, Endpoint::Chat, req).await,
        (Method::POST, "/v1/sealed/api/tags") => sealed(agent, Endpoint::Tags, req).await,
        (Method::POST, "/v1/sealed/api/show") => sealed(agent, Endpoint::Show, req).await,
        (Method::POST, "/v1/sealed/api/ps") => sealed(agent, Endpoint::Ps, req).await,
        _ => plain_problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("no enclave endpoint {path}"),
        ),
    })
}

async fn attestation(agent: Arc<Agent>, query: &str) -> Response<Body> {
    let nonce = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| Nonce::new(b).ok());
    let Some(nonce) = nonce else {
        return plain_problem(
            StatusCode::BAD_REQUEST,
            "Bad Nonce",
            "expected ?nonce=<hex of 16 to 64 bytes>".into(),
        );
    };
    match tokio::task::spawn_blocking(move || agent.attestation(nonce)).await {
        Ok(Ok(doc)) => plain(
            StatusCode::OK,
            "application/cose; cose-type=\"cose-sign1\"",
            doc,
        ),
        Ok(Err(e)) => plain_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Attestation Failed",
            format!("{e:#}"),
        ),
        Err(e) => plain_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Attestation Failed",
            e.to_string(),
        ),
    }
}

/// Largest credential-activation request: two TPM2Bs of at most a few hundred bytes.
const MAX_CREDENTIAL_BODY: usize = 4096;

/// `POST /attestation/credential`: TPM2_ActivateCredential with the agent's AK beside the EK.
async fn credential(agent: Arc<Agent>, req: Request<Incoming>) -> Response<Body> {
    let bad = |detail: String| plain_problem(StatusCode::BAD_REQUEST, "Bad Credential", detail);
    let body = match Limited::new(req.into_body(), MAX_CREDENTIAL_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad(format!("expected at most {MAX_CREDENTIAL_BODY} bytes: {e}")),
    };
    let parsed = secllama_protocol::cbor::decode("credential request", &body, MAX_CREDENTIAL_BODY)
        .and_then(|v| {
            let mut r = secllama_protocol::cbor::MapReader::new("credential", v)?;
            let id = r.bytes(secllama_protocol::cbor::Key::Text("id_object"))?;
            let secret = r.bytes(secllama_protocol::cbor::Key::Text("encrypted_secret"))?;
            r.finish()?;
            Ok((id, secret))
        });
    let (id, secret) = match parsed {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    match tokio::task::spawn_blocking(move || agent.activate_credential(&id, &secret)).await {
        Ok(Ok(released)) => {
            let v = secllama_protocol::cbor::map(vec![(
                secllama_protocol::cbor::Key::Text("secret"),
                ciborium::Value::Bytes(released),
            )]);
            match secllama_protocol::cbor::to_vec(&v) {
                Ok(bytes) => plain(StatusCode::OK, "application/cbor", bytes),
                Err(e) => plain_problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Credential Activation Failed",
                    e.to_string(),
                ),
            }
        }
        Ok(Err(e)) => plain_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Credential Activation Failed",
            format!("{e:#}"),
        ),
        Err(e) => plain_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Credential Activation Failed",
            e.to_string(),
        ),
    }
}

/// Sends one sealed chunk; false when the client is gone.
async fn send(
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    sealer: &mut StreamSealer,
    data: &[u8],
    last: bool,
) -> bool {
    match sealer.seal_chunk(data, last) {
        Ok(frame) => tx.send(Bytes::from(frame)).await.is_ok(),
        Err(_) => false,
    }
}

/// The one log line of a sealed request: endpoint, status, how it ended (`served` or the
/// refusal's title), its sealed size, time taken and log index — never its content.
fn log_request(
    endpoint: Endpoint,
    status: u16,
    outcome: &str,
    sealed_bytes: usize,
    started: std::time::Instant,
    log_index: Option<u64>,
) {
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        target: "secllama::request",
        ?endpoint,
        status,
        outcome,
        sealed_bytes,
        ms,
        log_index,
        "sealed request"
    );
}

async fn sealed(agent: Arc<Agent>, endpoint: Endpoint, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let early = |status: StatusCode, title: &str, detail: String, bytes: usize| {
        log_request(endpoint, status.as_u16(), title, bytes, started, None);
        plain_problem(status, title, detail)
    };
    let doc = req
        .headers()
        .get(ATTESTATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| Sha256Digest::from_slice("attestation digest", &b).ok());
    let Some(doc) = doc else {
        return early(
            StatusCode::BAD_REQUEST,
            "Missing Attestation",
            format!("expected the {ATTESTATION_HEADER} header (hex SHA-256)"),
            0,
        );
    };
    if !agent.issued.lock().is_ok_and(|i| i.contains(&doc)) {
        return early(
            StatusCode::CONFLICT,
            "Unknown Attestation",
            "expected a document this enclave issued recently; attest again".into(),
            0,
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return early(StatusCode::PAYLOAD_TOO_LARGE, "Bad Body", e.to_string(), 0),
    };
    let sealed_bytes = body.len();
    let ctx = RequestContext {
        method: "POST",
        path: &path,
        attestation_digest: doc,
    };
    let now = now_ms();
    let opened = open_request(&body, &ctx, &agent.unwrap, |id| {
        agent.sessions.lock().ok().and_then(|mut s| s.get(id, now))
    });
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            return early(
                StatusCode::BAD_REQUEST,
                "Cannot Open",
                e.to_string(),
                sealed_bytes,
            );
        }
    };
    let keys = match ResponseKeys::derive(&opened.content_key, &opened.plaintext.id) {
        Ok(k) => k,
        Err(e) => {
            return early(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Key Derivation",
                e.to_string(),
                sealed_bytes,
            );
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let mut response = Response::new(ChannelBody(rx).boxed());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(SEALED_STREAM),
    );
    tokio::spawn(async move {
        let mut sealer = StreamSealer::new(keys);
        let refuse = |status: StatusCode, title: &str, detail: String| {
            agent.stats.count(status.as_u16());
            log_request(
                endpoint,
                status.as_u16(),
                title,
                sealed_bytes,
                started,
                None,
            );
            json!({"status": status.as_u16(), "problem": problem(status, title, detail)})
                .to_string()
        };
        let pt = &opened.plaintext;
        let replay = agent
            .replay
            .lock()
            .map_err(|_| "lock".to_string())
            .and_then(|mut r| {
                r.check(&pt.id, pt.timestamp_ms, now)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = replay {
            send(
                &tx,
                &mut sealer,
                refuse(StatusCode::CONFLICT, "Replay", e).as_bytes(),
                true,
            )
            .await;
            return;
        }
        if matches!(opened.recipient, RecipientKind::Wrapped { .. })
            && let Ok(mut s) = agent.sessions.lock()
        {
            let _ = s.insert(opened.content_key.clone(), now);
        }
        let allowed = match agent.policy.check(endpoint, &pt.body) {
            Ok(a) => a,
            Err(r) => {
                send(
                    &tx,
                    &mut sealer,
                    refuse(StatusCode::FORBIDDEN, "Policy", r.to_string()).as_bytes(),
                    true,
                )
                .await;
                return;
            }
        };
        let runner_path = path.trim_start_matches("/v1/sealed");
        let mut hasher = sha2::Sha256::new();
        hasher.update(pt.salt.0);
        // A client that goes away ends the runner request too (its connection is dropped, so the
        // runner stops generating), also while the runner sends nothing.
        let forwarded = tokio::select! {
            r = forward(
                &agent.runner_pool,
                &agent.runner,
                runner_path,
                endpoint,
                allowed
                    .forward
                    .clone()
                    .unwrap_or_else(|| pt.body.clone()),
                &tx,
                &mut sealer,
                &mut hasher,
            ) => r,
            () = tx.closed() => {
                log_request(endpoint, 499, "Client Gone", sealed_bytes, started, None);
                return;
            }
        };
        let status = match forwarded {
            Ok(s) => s,
            Err(e) => {
                send(
                    &tx,
                    &mut sealer,
                    refuse(StatusCode::BAD_GATEWAY, "Runner", e).as_bytes(),
                    true,
                )
                .await;
                return;
            }
        };
        let receipt =
            (|| -> anyhow::Result<(Vec<u8>, std::sync::Arc<crate::log::file::LogFile>, u64, u64)> {
                // An answer produced after a measured artifact changed gets no receipt.
                agent
                    .integrity
                    .check()
                    .map_err(|e| anyhow::anyhow!("no receipt: {e}"))?;
                let mut log = agent
                    .receipts
                    .lock()
                    .map_err(|_| anyhow::anyhow!("receipt log lock poisoned"))?;
                let payload = ReceiptPayload {
                    request_digest: pt.salt.digest(&pt.body),
                    response_digest: Sha256Digest(hasher.finalize().into()),
                    model: allowed.model.clone().unwrap_or_default(),
                    policy_digest: agent.policy_digest,
                    signing_kid: agent.signing.public().kid()?,
                    log_index: log.len(),
                    time: now_ms() / 1000,
                    params: ReceiptParams {
                        num_predict: allowed.num_predict,
                        defaults: allowed.defaults.iter().map(|d| (*d).to_string()).collect(),
                    },
                };
                let receipt = sign_receipt(&payload, &agent.signing)?;
                let (_, durable_at) = log.append(&receipt)?;
                Ok((receipt, log.file(), durable_at, payload.log_index))
            })();
        // The receipt leaves only once its log entry is on disk (group commit, outside the lock).
        let receipt = match receipt {
            Ok((r, file, durable_at, index)) => file
                .durable(durable_at)
                .await
                .map(|()| (r, index))
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        let end = match receipt {
            Ok((r, index)) => {
                agent.stats.count(200);
                log_request(
                    endpoint,
                    status,
                    "served",
                    sealed_bytes,
                    started,
                    Some(index),
                );
                json!({"status": status, "receipt": hex::encode(r)}).to_string()
            }
            Err(e) => refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receipt",
                format!("{e:#}"),
            ),
        };
        send(&tx, &mut sealer, end.as_bytes(), true).await;
    });
    response
}

/// Forwards the request to the runner over loopback and seals its answer chunk by chunk as it
/// arrives; returns the runner's HTTP status.
#[allow(clippy::too_many_arguments)]
async fn forward(
    pool: &crate::runner::Pool,
    runner: &crate::endpoint::RunnerAddr,
    path: &str,
    endpoint: Endpoint,
    body: Vec<u8>,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    sealer: &mut StreamSealer,
    hasher: &mut sha2::Sha256,
) -> Result<u16, String> {
    // Ollama's tags and ps are GETs without a body; the sealed request carries an empty one.
    let get = matches!(endpoint, Endpoint::Tags | Endpoint::Ps);
    let method = if get { Method::GET } else { Method::POST };
    let body = Bytes::from(if get { Vec::new() } else { body });
    let request = || {
        Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, runner.host())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())
    };
    let (mut sender, fresh) = pool.get(runner).await?;
    let resp = match sender.send_request(request()?).await {
        Ok(r) => r,
        // An idle connection the runner closed meanwhile (e.g. it restarted): the request never
        // reached it, so one retry on a new connection is safe.
        Err(e) if !fresh && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) => {
            sender = crate::runner::Pool::connect(runner).await?;
            sender
                .send_request(request()?)
                .await
                .map_err(|e| format!("runner request: {e}"))?
        }
        Err(e) => return Err(format!("runner request: {e}")),
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("runner stream ended abnormally: {e}"))?;
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            if !send(tx, sealer, &data, false).await {
                return Err("client went away".into());
            }
        }
    }
    pool.put(sender);
    Ok(status)
}

/// Connections the enclave serves at once; further ones wait in the listener's queue.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a peer has to send a whole request head, from the connection's start or the end of the
/// previous answer (so it also ends idle keep-alive connections).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on a listener until it fails: at most [`MAX_CONNECTIONS`] at once, each
/// request head within [`HEADER_TIMEOUT`], so slow or stalled peers cannot hold the enclave.
pub async fn serve(agent: Arc<Agent>, listener: crate::listener::Listener) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // The connections belong to this future: when serving stops, they end too (a kept-alive
    // connection must not outlive the server that accepted it).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) if crate::runner_init::transient(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let agent = agent.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(agent.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// Runs the agent: starts and supervises the runner when `runner_command` is given (else waits until
/// the runner answers), calls `ready`, then serves on `listener` until serving fails or the runner
/// cannot be kept alive.
pub async fn run(
    agent: Arc<Agent>,
    runner_command: Option<Vec<String>>,
    runner_env: Vec<(String, String)>,
    runner_ready: std::time::Duration,
    listener: crate::listener::Listener,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    use crate::runner::{Supervisor, wait_ready};
    let runner = agent.runner.clone();
    let watch = match runner_command {
        Some(cmd) => {
            let (sup, child) = Supervisor::start(
                cmd,
                runner_env,
                runner,
                false,
                runner_ready,
                Some(agent.integrity.clone()),
            )
            .await?;
            Some(tokio::spawn(sup.watch(child)))
        }
        None => {
            wait_ready(&runner, runner_ready).await?;
            None
        }
    };
    ready();
    let serving = serve(agent, listener);
    match watch {
        Some(watch) => tokio::select! {
            r = serving => Err(anyhow::Error::from(r.err().unwrap_or_else(|| std::io::Error::other("listener closed")))),
            e = watch => Err(match e {
                Ok(e) => anyhow::Error::from(e),
                Err(e) => anyhow::Error::from(e),
            }),
        },
        None => {
            Err(anyhow::Error::from(serving.await.err().unwrap_or_else(
                || std::io::Error::other("listener closed"),
            )))
        }
    }
}
