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
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Which OpenAI endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// What the answer translation needs to know about the request.
#[derive(Debug, Clone)]
struct Meta {
    kind: Kind,
    stream: bool,
    include_usage: bool,
    id: String,
    created: u64,
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
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("the request is not JSON: {e}")),
    };
    let (ollama, mut meta) = match to_ollama(kind, &v) {
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
    let inner = proxy
        .forward_body(path, ollama.to_string().into_bytes(), chunked)
        .await;
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

/// Fields accepted and ignored: they do not change the answer.
const IGNORED: [&str; 5] = [
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
];

/// The Ollama request for an OpenAI one, or why it cannot be honoured.
fn to_ollama(kind: Kind, v: &Value) -> Result<(Value, Meta), String> {
    let Value::Object(req) = v else {
        return Err("expected a JSON object".into());
    };
    let common = [
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "frequency_penalty",
        "presence_penalty",
        "n",
    ];
    let specific: &[&str] = match kind {
        Kind::Chat => &[
            "messages",
            "max_completion_tokens",
            "response_format",
            "tools",
            "tool_choice",
            "logprobs",
            "top_logprobs",
        ],
        Kind::Completion => &["prompt", "suffix", "echo", "logprobs", "best_of"],
    };
    if let Some(k) = req.keys().find(|k| {
        !common.contains(&k.as_str())
            && !specific.contains(&k.as_str())
            && !IGNORED.contains(&k.as_str())
    }) {
        return Err(format!(
            "the field {k:?} is not supported by the secllama proxy"
        ));
    }
    let empty = |k: &str| match req.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty() || (k == "tool_choice" && s == "none"),
        _ => false,
    };
    for k in ["tools", "logprobs", "echo", "suffix", "top_logprobs"] {
        if !empty(k) {
            return Err(format!("{k} is not supported by the secllama proxy"));
        }
    }
    if !matches!(req.get("tool_choice"), None | Some(Value::Null))
        && req.get("tool_choice") != Some(&json!("none"))
        && req.get("tool_choice") != Some(&json!("auto"))
    {
        return Err("tool_choice is not supported by the secllama proxy".into());
    }
    if !matches!(
        req.get("n").or(req.get("best_of")),
        None | Some(Value::Null)
    ) {
        let n = req.get("n").or(req.get("best_of")).and_then(Value::as_u64);
        if n != Some(1) {
            return Err("only one choice (n = 1) is served".into());
        }
    }
    match req.get("response_format") {
        None | Some(Value::Null) => {}
        Some(f) if f["type"] == "text" => {}
        Some(f) => return Err(format!("response_format {f} is not supported (only text)")),
    }
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: expected a model name")?;
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("stream: expected a boolean, found {other}")),
    };
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut options = Map::new();
    let max = match (req.get("max_tokens"), req.get("max_completion_tokens")) {
        (Some(a), Some(b)) if !a.is_null() && !b.is_null() && a != b => {
            return Err("max_tokens and max_completion_tokens differ".into());
        }
        (Some(a), _) if !a.is_null() => Some(a),
        (_, Some(b)) if !b.is_null() => Some(b),
        _ => None,
    };
    if let Some(n) = max {
        options.insert("num_predict".into(), n.clone());
    }
    for k in [
        "temperature",
        "top_p",
        "seed",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(x) = req.get(k).filter(|x| !x.is_null()) {
            options.insert(k.into(), x.clone());
        }
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            options.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            options.insert("stop".into(), Value::Array(a.clone()));
        }
        Some(other) => return Err(format!("stop: expected a string or strings, found {other}")),
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    match kind {
        Kind::Chat => {
            out.insert(
                "messages".into(),
                Value::Array(messages(req.get("messages"))?),
            );
        }
        Kind::Completion => {
            let prompt = match req.get("prompt") {
                Some(Value::String(p)) => p.clone(),
                Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                    a[0].as_str().unwrap_or_default().to_string()
                }
                _ => return Err("prompt: expected one string".into()),
            };
            out.insert("prompt".into(), json!(prompt));
        }
    }
    out.insert("stream".into(), json!(stream));
    if !options.is_empty() {
        out.insert("options".into(), Value::Object(options));
    }
    let meta = Meta {
        kind,
        stream,
        include_usage,
        id: String::new(),
        created: 0,
    };
    Ok((Value::Object(out), meta))
}

/// OpenAI messages as Ollama's: `{role, content}`, one message per text part.
fn messages(v: Option<&Value>) -> Result<Vec<Value>, String> {
    let list = v
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("messages: expected a non-empty array")?;
    let mut out = Vec::new();
    for m in list {
        let role = m["role"].as_str().ok_or("messages: each needs a role")?;
        if !["system", "user", "assistant", "developer"].contains(&role) {
            return Err(format!("messages: the role {role:?} is not supported"));
        }
        let role = if role == "developer" { "system" } else { role };
        if let Some(k) = m.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["role", "content", "name"].contains(&k.as_str()))
        }) {
            return Err(format!("messages: the field {k:?} is not supported"));
        }
        match &m["content"] {
            Value::String(s) => out.push(json!({"role": role, "content": s})),
            Value::Array(parts) => {
                for p in parts {
                    match (p["type"].as_str(), p["text"].as_str()) {
                        (Some("text"), Some(t)) => out.push(json!({"role": role, "content": t})),
                        _ => return Err("messages: only text content is supported".into()),
                    }
                }
            }
            other => return Err(format!("messages: content must be text, found {other}")),
        }
    }
    Ok(out)
}

fn usage(answer: &Value) -> Value {
    let p = answer["prompt_eval_count"].as_u64().unwrap_or(0);
    let c = answer["eval_count"].as_u64().unwrap_or(0);
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn finish_reason(answer: &Value) -> Value {
    match answer["done_reason"].as_str() {
        Some("length") => json!("length"),
        _ => json!("stop"),
    }
}

fn text_of(kind: Kind, line: &Value) -> String {
    match kind {
        Kind::Chat => line["message"]["content"].as_str(),
        Kind::Completion => line["response"].as_str(),
    }
    .unwrap_or_default()
    .to_string()
}

/// A non-streamed answer.
fn whole(meta: &Meta, answer: &Value) -> Value {
    let model = answer["model"].clone();
    let text = text_of(meta.kind, answer);
    let choice = match meta.kind {
        Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish_reason(answer)}),
        Kind::Completion => json!({"index": 0, "text": text, "logprobs": null,
                                   "finish_reason": finish_reason(answer)}),
    };
    json!({"id": meta.id, "object": if meta.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
           "created": meta.created, "model": model, "system_fingerprint": "fp_ollama",
           "choices": [choice], "usage": usage(answer)})
}

/// Ollama NDJSON lines in, server-sent events out.
struct Translate {
    meta: Meta,
    partial: Vec<u8>,
    done: bool,
}

impl Translate {
    fn new(meta: Meta) -> Self {
        Self {
            meta,
            partial: Vec::new(),
            done: false,
        }
    }

    fn chunk(&self, line: &Value, finish: Value) -> Value {
        let text = if finish.is_null() {
            text_of(self.meta.kind, line)
        } else {
            String::new()
        };
        let (object, choice) = match self.meta.kind {
            Kind::Chat => (
                "chat.completion.chunk",
                json!({"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": finish}),
            ),
            Kind::Completion => (
                "text_completion",
                json!({"index": 0, "text": text, "finish_reason": finish}),
            ),
        };
        json!({"id": self.meta.id, "object": object, "created": self.meta.created,
               "model": line["model"], "system_fingerprint": "fp_ollama", "choices": [choice]})
    }

    fn event(v: &Value) -> Vec<u8> {
        format!("data: {v}\n\n").into_bytes()
    }

    /// Events for the complete lines in `data`.
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            if self.done {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(e) = v.get("error") {
                out.extend(Self::event(&json!({"error": {"message": e, "type": "api_error", "param": null, "code": null}})));
                continue;
            }
            if v["done"] == json!(true) {
                self.done = true;
                let last = text_of(self.meta.kind, &v);
                if !last.is_empty() {
                    out.extend(Self::event(&self.chunk(&v, Value::Null)));
                }
                out.extend(Self::event(&self.chunk(&v, finish_reason(&v))));
                if self.meta.include_usage {
                    let mut u = self.chunk(&v, Value::Null);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&v);
                    out.extend(Self::event(&u));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            } else {
                out.extend(Self::event(&self.chunk(&v, Value::Null)));
            }
        }
        out
    }

    /// Whatever ends the stream (nothing: the final line brought `[DONE]`).
    fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.partial);
        let mut out = if rest.is_empty() {
            Vec::new()
        } else {
            self.push(&[rest, b"\n".to_vec()].concat())
        };
        if !self.done {
            out.clear();
        }
        out
    }
}

/// The streamed OpenAI answer: the proxy's Ollama stream (final line held until the receipt
/// verified, aborted on failure) translated line by line.
struct SseBody {
    inner: Body,
    translate: Translate,
    ended: bool,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let out = self.translate.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    let out = self.translate.finish();
                    return Poll::Ready(
                        (!out.is_empty()).then(|| Ok(Frame::data(Bytes::from(out)))),
                    );
                }
            }
        }
    }
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

    fn meta(kind: Kind, include_usage: bool) -> Meta {
        Meta {
            kind,
            stream: true,
            include_usage,
            id: "chatcmpl-1".into(),
            created: 7,
        }
    }

    #[test]
    fn chat_requests_map_onto_ollamas_chat() {
        let (o, m) = to_ollama(
            Kind::Chat,
            &json!({
                "model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8, "temperature": 0, "stop": "x", "stream": true,
                "stream_options": {"include_usage": true}, "user": "u1"
            }),
        )
        .unwrap();
        assert_eq!(
            o,
            json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "options": {"num_predict": 8, "temperature": 0, "stop": ["x"]}})
        );
        assert!(m.stream && m.include_usage);
        // Defaults: not streamed, no options added.
        let (o, m) = to_ollama(Kind::Chat, &json!({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})).unwrap();
        assert_eq!(
            o,
            json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": false})
        );
        assert!(!m.stream);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let base = || json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in [
            ("n", json!(2)),
            ("tools", json!([{"type": "function"}])),
            ("logprobs", json!(true)),
            ("response_format", json!({"type": "json_object"})),
            ("logit_bias", json!({"1": 2})),
            ("max_completion_tokens", json!(3)),
        ] {
            let mut r = base();
            r[k] = v;
            if k == "max_completion_tokens" {
                r["max_tokens"] = json!(4);
            }
            assert!(to_ollama(Kind::Chat, &r).is_err(), "{k}");
        }
        let mut r = base();
        r["messages"] = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]);
        assert!(to_ollama(Kind::Chat, &r).is_err());
        assert!(
            to_ollama(
                Kind::Completion,
                &json!({"model": "m", "prompt": ["a", "b"]})
            )
            .is_err()
        );
        assert!(
            to_ollama(
                Kind::Completion,
                &json!({"model": "m", "prompt": "a", "echo": true})
            )
            .is_err()
        );
        let (o, _) = to_ollama(
            Kind::Completion,
            &json!({"model": "m", "prompt": ["a"], "n": 1, "echo": false}),
        )
        .unwrap();
        assert_eq!(o, json!({"model": "m", "prompt": "a", "stream": false}));
    }

    #[test]
    fn the_final_events_come_only_from_the_final_line() {
        let mut t = Translate::new(meta(Kind::Chat, true));
        let a = t.push(b"{\"model\":\"tiny:latest\",\"message\":{\"role\":\"assistant\",\"content\":\"he\"},\"done\":false}\n{\"mod");
        let a = String::from_utf8(a).unwrap();
        assert!(
            a.starts_with("data: {")
                && a.contains("\"content\":\"he\"")
                && a.contains("\"finish_reason\":null"),
            "{a}"
        );
        assert!(!a.contains("[DONE]"));
        let b = String::from_utf8(t.push(b"el\":\"tiny:latest\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":3,\"eval_count\":2}\n")).unwrap();
        assert!(b.contains("\"finish_reason\":\"length\""), "{b}");
        assert!(b.contains("\"total_tokens\":5"), "{b}");
        assert!(b.ends_with("data: [DONE]\n\n"), "{b}");
        // A stream that ended without its final line gets no [DONE].
        let mut t = Translate::new(meta(Kind::Completion, false));
        t.push(b"{\"response\":\"x\",\"done\":false}\n");
        assert!(t.finish().is_empty());
    }

    #[test]
    fn whole_answers_have_openais_shape() {
        let w = whole(
            &Meta {
                stream: false,
                ..meta(Kind::Completion, false)
            },
            &json!({"model": "tiny:latest", "response": "blue", "done": true, "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}),
        );
        assert_eq!(w["object"], "text_completion");
        assert_eq!(w["choices"][0]["text"], "blue");
        assert_eq!(w["usage"]["total_tokens"], 2);
        assert_eq!(unix_seconds("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            unix_seconds("2026-01-01T02:00:00.5+02:00"),
            Some(1_767_225_600)
        );
        assert_eq!(unix_seconds("yesterday"), None);
    }
}
