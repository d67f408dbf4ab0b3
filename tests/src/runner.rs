//! A small deterministic runner that speaks Ollama's HTTP API, for tests: `/api/generate` and
//! `/api/chat` (NDJSON streaming or one JSON object, in Ollama's shapes), `/api/tags`,
//! `/api/version`. The answer is a pure function of the request, so tests can compare bytes. It can
//! be told to crash (exit) or stall after N streamed chunks, to test supervision and timeouts.
//!
//! This is test support, not a model: the enclave treats any Ollama-compatible server the same way.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The model the runner answers for.
pub const MODEL: &str = "tiny:latest";
const CREATED_AT: &str = "2026-01-01T00:00:00Z";

/// Misbehaviour to inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Exit the process after this many streamed chunks.
    pub crash_after: Option<usize>,
    /// Stop sending (keep the connection open) after this many streamed chunks.
    pub stall_after: Option<usize>,
    /// Not a fault: answer with at least this many bytes of text, in 4 KiB tokens streamed without
    /// pacing (throughput benchmarks).
    pub answer_bytes: Option<usize>,
}

/// Size of each token of a [`big_answer`].
pub const BIG_TOKEN_BYTES: usize = 4096;

/// `tokens` repeated into [`BIG_TOKEN_BYTES`]-byte tokens until there are at least `total` bytes.
pub fn big_answer(tokens: &[String], total: usize) -> Vec<String> {
    let text: String = tokens.concat();
    let mut token = String::with_capacity(BIG_TOKEN_BYTES + text.len());
    while token.len() < BIG_TOKEN_BYTES && !text.is_empty() {
        token.push_str(&text);
    }
    token.truncate(BIG_TOKEN_BYTES.min(token.len()));
    let n = total.div_ceil(BIG_TOKEN_BYTES.max(1)).max(1);
    vec![token; n]
}

/// The deterministic answer to `prompt`: its words reversed, each a token.
pub fn answer_tokens(prompt: &str) -> Vec<String> {
    let mut words: Vec<String> = prompt
        .split_whitespace()
        .rev()
        .map(|w| format!("{w} "))
        .collect();
    if words.is_empty() {
        words.push("(empty) ".into());
    }
    words
}

/// The NDJSON lines (without the newline) Ollama would stream for this answer.
pub fn stream_lines(chat: bool, tokens: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tokens
        .iter()
        .map(|t| {
            let v = if chat {
                json!({"model": MODEL, "created_at": CREATED_AT, "message": {"role": "assistant", "content": t}, "done": false})
            } else {
                json!({"model": MODEL, "created_at": CREATED_AT, "response": t, "done": false})
            };
            v.to_string()
        })
        .collect();
    out.push(final_object(chat, "", tokens.len()).to_string());
    out
}

fn final_object(chat: bool, content: &str, n: usize) -> Value {
    let mut v = json!({"model": MODEL, "created_at": CREATED_AT, "done": true, "done_reason": "stop",
        "total_duration": 1000, "load_duration": 10, "prompt_eval_count": 1, "prompt_eval_duration": 10,
        "eval_count": n, "eval_duration": 100});
    if chat {
        v["message"] = json!({"role": "assistant", "content": content});
    } else {
        v["response"] = json!(content);
    }
    v
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn handle(req: Request<Incoming>, faults: Faults) -> Result<Response<Body>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(full(
                StatusCode::BAD_REQUEST,
                json!({"error": "unreadable body"}),
            ));
        }
    };
    match (method, path.as_str()) {
        (Method::GET, "/api/version") => Ok(full(
            StatusCode::OK,
            json!({"version": "0.0.0-secllama-test"}),
        )),
        (Method::GET, "/api/tags") | (Method::POST, "/api/tags") => Ok(full(
            StatusCode::OK,
            json!({"models": [{"name": MODEL, "model": MODEL, "modified_at": CREATED_AT, "size": 1234,
                "digest": "0000000000000000000000000000000000000000000000000000000000000001",
                "details": {"format": "gguf", "family": "test", "parameter_size": "1", "quantization_level": "none"}}]}),
        )),
        (Method::GET, "/api/ps") => Ok(full(
            StatusCode::OK,
            json!({"models": [{"name": MODEL, "model": MODEL, "size": 1234, "size_vram": 0,
                "digest": "0000000000000000000000000000000000000000000000000000000000000001",
                "expires_at": "2099-01-01T00:00:00Z",
                "details": {"format": "gguf", "family": "test", "parameter_size": "1", "quantization_level": "none"}}]}),
        )),
        (Method::POST, "/api/show") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            if v["model"].as_str() != Some(MODEL) {
                return Ok(full(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("model '{}' not found", v["model"])}),
                ));
            }
            Ok(full(
                StatusCode::OK,
                json!({"license": "", "modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                    "modified_at": CREATED_AT, "capabilities": ["completion"],
                    "model_info": {"general.architecture": "test"},
                    "details": {"format": "gguf", "family": "test", "parameter_size": "1", "quantization_level": "none"}}),
            ))
        }
        (Method::POST, "/api/generate") | (Method::POST, "/api/chat") => {
            let chat = path == "/api/chat";
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(full(
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("invalid JSON: {e}")}),
                    ));
                }
            };
            if v["model"].as_str() != Some(MODEL) {
                let m = v["model"].as_str().unwrap_or("");
                return Ok(full(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("model \"{m}\" not found, try pulling it first")}),
                ));
            }
            let prompt = if chat {
                v["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or("")
                    .to_string()
            } else {
                v["prompt"].as_str().unwrap_or("").to_string()
            };
            let mut tokens = answer_tokens(&prompt);
            // A big answer for streamed requests only: non-streamed ones stay small (one runner
            // serves a benchmark's small requests and its big streams).
            if let Some(total) = faults.answer_bytes.filter(|_| v["stream"] != json!(false)) {
                tokens = big_answer(&tokens, total);
            } else if let Some(n) = v["options"]["num_predict"].as_u64() {
                tokens.truncate(usize::try_from(n).unwrap_or(usize::MAX).max(1));
            }
            if v["stream"] == json!(false) {
                return Ok(full(
                    StatusCode::OK,
                    final_object(chat, &tokens.concat(), tokens.len()),
                ));
            }
            let lines = stream_lines(chat, &tokens);
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                for (i, line) in lines.into_iter().enumerate() {
                    if faults.crash_after == Some(i) {
                        std::process::exit(3);
                    }
                    if faults.stall_after == Some(i) {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    if tx
                        .send(Ok(Frame::data(Bytes::from(format!("{line}\n")))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if faults.answer_bytes.is_none() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            });
            let mut r = Response::new(ReceiverStream(rx).boxed());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(r)
        }
        _ => Ok(full(
            StatusCode::NOT_FOUND,
            json!({"error": "404 page not found"}),
        )),
    }
}

/// A response body fed by a tokio mpsc receiver, one frame per message.
pub struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl hyper::body::Body for ReceiverStream<Result<Frame<Bytes>, Infallible>> {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

/// Serves the runner on `addr` until the process ends; returns the bound address through `bound`.
pub async fn serve(
    addr: SocketAddr,
    faults: Faults,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    bound(listener.local_addr()?);
    let faults = Arc::new(faults);
    loop {
        let (stream, _) = listener.accept().await?;
        // As Ollama (Go's net/http sets TCP_NODELAY on every connection): without it, a
        // kept-alive connection's next answer waits for the client's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let faults = *faults;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, faults));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
