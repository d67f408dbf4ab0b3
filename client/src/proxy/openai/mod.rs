//! Ollama's OpenAI-compatible API (ollama `openai/openai.go`), served by the proxy on top of the
//! sealed Ollama API: `GET /v1/models`, `GET /v1/models/{model}`, `POST /v1/chat/completions` →
//! `/api/chat`, `POST /v1/completions` → `/api/generate`, streamed as server-sent events
//! (`data: {chunk}` lines ending with `data: [DONE]`) or not.
//!
//! - **Same evidence, same rule.** Each request becomes one sealed Ollama request, so it is
//!   checked by the enclave's policy and its answer carries a receipt that must verify; the
//!   chunk carrying `finish_reason`, the usage chunk and `data: [DONE]` are produced only from the
//!   Ollama stream's final line, which the proxy releases only after the receipt verified
//!   ([`super::stream`]). A failure aborts the transfer; a non-streamed answer is sent only whole.
//! - **Mapping.** `max_tokens` (or `max_completion_tokens`) → `options.num_predict`;
//!   `temperature`, `top_p`, `seed`, `stop` (a string or a list), `frequency_penalty`,
//!   `presence_penalty` → the same options, and only when given: unlike Ollama, the proxy does not
//!   add `temperature: 1` and `top_p: 1`, so a policy need not allow them for default calls.
//!   Message `content` may be a string or a list of text parts (one Ollama message per part, as
//!   Ollama does). What cannot be honoured is refused with `400` rather than dropped: `n` > 1,
//!   tools, images, `logprobs`, `echo`, a non-text `response_format`, unknown fields.
//! - **Errors** use OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with Ollama's
//!   types (`invalid_request_error` for 400, `not_found_error` for 404, `api_error` otherwise).

use super::{Body, Proxy, json_response, read_request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

mod answer;
mod request;

use answer::SseBody;
pub use answer::{Translate, whole};
pub use request::request;

/// Which OpenAI endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /v1/chat/completions` (Ollama's `/api/chat`).
    Chat,
    /// `POST /v1/completions` (Ollama's `/api/generate`).
    Completion,
}

/// What the answer translation needs to know about the request.
#[derive(Debug, Clone)]
pub struct Meta {
    kind: Kind,
    stream: bool,
    include_usage: bool,
    id: String,
    created: u64,
}

impl Meta {
    /// Whether the client asked for a streamed (server-sent events) answer.
    pub fn stream(&self) -> bool {
        self.stream
    }
}

/// An OpenAI error answer.
fn openai_error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    let kind = match status {
        StatusCode::BAD_REQUEST => "invalid_request_error",
        StatusCode::NOT_FOUND => "not_found_error",
        _ => "api_error",
    };
    json_response(
        status,
        json!({"error": {"message": message.to_string(), "type": kind, "param": null, "code": null}}),
    )
}

fn bad(message: impl std::fmt::Display) -> Response<Body> {
    openai_error(StatusCode::BAD_REQUEST, message)
}

/// Serves `/v1/...`; `None` when the path is not one of these.
pub(super) async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Option<Response<Body>> {
    let path = req.uri().path().to_string();
    Some(match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/models") => models(proxy, None).await,
        (&Method::GET, p) if p.starts_with("/v1/models/") => {
            let id = p.trim_start_matches("/v1/models/").to_string();
            models(proxy, Some(id)).await
        }
        (&Method::POST, "/v1/chat/completions" | "/v1/completions") => {
            let kind = if path == "/v1/completions" {
                Kind::Completion
            } else {
                Kind::Chat
            };
            let chunked = req.version() >= hyper::Version::HTTP_11;
            let body = match read_request(req).await {
                Ok(b) => b,
                Err(_) => {
                    return Some(openai_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request too large",
                    ));
                }
            };
            completions(proxy, kind, &body, chunked).await
        }
        (_, p) if p.starts_with("/v1/") => openai_error(
            StatusCode::NOT_FOUND,
            format!(
                "{path} is not offered by the secllama proxy (only models, chat/completions and completions are)"
            ),
        ),
        _ => return None,
    })
}

/// `/v1/models` (or one model) from the sealed `/api/tags`.
async fn models(proxy: Arc<Proxy>, one: Option<String>) -> Response<Body> {
    let r = proxy.forward_body("/api/tags", Vec::new(), true).await;
    let (status, body) = match collect(r).await {
        Ok(x) => x,
        Err(e) => return openai_error(StatusCode::BAD_GATEWAY, e),
    };
    if status != StatusCode::OK {
        return openai_error(status, ollama_error_message(&body));
    }
    let Ok(tags) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(StatusCode::BAD_GATEWAY, "the model list is not JSON");
    };
    let data: Vec<Value> = tags["models"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let id = m["model"].as_str().or_else(|| m["name"].as_str())?;
            let owned_by = match id.split('/').collect::<Vec<_>>().as_slice() {
                [_, ns, _] | [ns, _] => (*ns).to_string(),
                _ => "library".to_string(),
            };
            let created = m["modified_at"]
                .as_str()
                .and_then(unix_seconds)
                .unwrap_or(0);
            Some(json!({"id": id, "object": "model", "created": created, "owned_by": owned_by}))
        })
        .collect();
    match one {
        None => json_ok(&json!({"object": "list", "data": data})),
        Some(id) => {
            let want = secllama_protocol::ollama_name::canonical(&id).unwrap_or(id.clone());
            match data
                .into_iter()
                .find(|m| m["id"] == want.as_str() || m["id"] == id.as_str())
            {
                Some(m) => json_ok(&m),
                None => openai_error(StatusCode::NOT_FOUND, format!("model \"{id}\" not found")),
            }
        }
    }
}

fn json_ok(v: &Value) -> Response<Body> {
    json_response(StatusCode::OK, v.clone())
}

/// A whole (already verified) response body with its status.
async fn collect(r: Response<Body>) -> Result<(StatusCode, Vec<u8>), String> {
    let status = r.status();
    let body = r
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("the answer did not complete: {e}"))?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}

fn ollama_error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned())
}

/// `POST /v1/chat/completions` and `/v1/completions`.
async fn completions(proxy: Arc<Proxy>, kind: Kind, body: &[u8], chunked: bool) -> Response<Body> {
    let (ollama, mut meta) = match request(kind, body) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    meta.id = format!(
        "{}-{}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        rand_core::RngCore::next_u32(&mut rand_core::OsRng) % 1000
    );
    meta.created = super::now_secs();
    let path = if kind == Kind::Chat {
        "/api/chat"
    } else {
        "/api/generate"
    };
    let inner = proxy.forward_body(path, ollama, chunked).await;
    if inner.status() != StatusCode::OK || !meta.stream {
        let (status, body) = match collect(inner).await {
            Ok(x) => x,
            Err(e) => return openai_error(StatusCode::BAD_GATEWAY, e),
        };
        if status != StatusCode::OK {
            return openai_error(status, ollama_error_message(&body));
        }
        if meta.stream {
            // An HTTP/1.0 client: the whole verified stream, translated at once.
            let mut t = Translate::new(meta);
            let mut out = t.push(&body);
            out.extend(t.finish());
            return sse(Full::new(Bytes::from(out))
                .map_err(|never| match never {})
                .boxed());
        }
        return match serde_json::from_slice::<Value>(&body) {
            Ok(answer) => json_ok(&whole(&meta, &answer)),
            Err(_) => openai_error(StatusCode::BAD_GATEWAY, "the runner's answer is not JSON"),
        };
    }
    sse(BodyExt::boxed(SseBody {
        inner: inner.into_body(),
        translate: Translate::new(meta),
        ended: false,
    }))
}

fn sse(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

/// Seconds since the Unix epoch of an RFC 3339 time (`2026-01-01T00:00:00.123+02:00`).
fn unix_seconds(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<u16>().ok();
    let dt = der::DateTime::new(
        n(0..4)?,
        n(5..7)? as u8,
        n(8..10)? as u8,
        n(11..13)? as u8,
        n(14..16)? as u8,
        n(17..19)? as u8,
    )
    .ok()?;
    let mut secs = i64::try_from(dt.unix_duration().as_secs()).ok()?;
    let rest = &t[19..];
    let zone = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign) = zone.chars().next().filter(|c| *c == '+' || *c == '-') {
        let (h, m) = zone[1..].split_once(':')?;
        let off = i64::from(h.parse::<u8>().ok()?) * 3600 + i64::from(m.parse::<u8>().ok()?) * 60;
        secs += if sign == '+' { -off } else { off };
    } else if !zone.eq_ignore_ascii_case("z") {
        return None;
    }
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc3339_times_become_unix_seconds() {
        assert_eq!(unix_seconds("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            unix_seconds("2026-01-01T02:00:00.5+02:00"),
            Some(1_767_225_600)
        );
        assert_eq!(unix_seconds("yesterday"), None);
    }
}
