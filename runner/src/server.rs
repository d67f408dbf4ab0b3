//! The HTTP side: hyper 1 (HTTP/1.1, keep-alive, TCP_NODELAY, a header read timeout, bounded
//! request bodies) serving Ollama's routes: the model list and details here, generate and chat
//! checked here and answered by [`crate::answer`] through the model's worker.

use crate::answer::{Kind, answer, reply, reply_resp};
use crate::api::{self, ChatRequest, DoneReason, GenerateRequest, ShowRequest};
use crate::engine::{Model, Prompt};
use crate::gguf;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Largest request body accepted (larger: 413).
pub const MAX_BODY: usize = 1 << 20;
/// Time allowed for a request's headers to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The response body type.
pub type Resp = Response<BoxBody<Bytes, Infallible>>;

/// What every request handler sees.
#[derive(Debug)]
pub struct State {
    /// The loaded models.
    pub models: Vec<Arc<Model>>,
}

impl State {
    fn find(&self, name: &str) -> Option<&Arc<Model>> {
        let n = api::normalize_name(name);
        self.models.iter().find(|m| m.name == n)
    }

    /// The model a generate or chat request names: 400 when it names none or asks for a
    /// `format`, 404 (Ollama's message) when the model is not loaded.
    fn requested(
        &self,
        name: Option<&str>,
        format: Option<&Value>,
    ) -> Result<&Arc<Model>, Box<Resp>> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "model is required",
            )));
        };
        let Some(model) = self.find(name) else {
            return Err(Box::new(not_found(name)));
        };
        if set(format) {
            return Err(Box::new(unsupported("format")));
        }
        Ok(model)
    }
}

/// Serves one connection (TCP or unix) until it closes.
pub async fn serve_connection<S>(io: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}

pub(crate) fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    full(
        status,
        "application/json; charset=utf-8",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

pub(crate) fn error(status: StatusCode, msg: &str) -> Resp {
    full(
        status,
        "application/json; charset=utf-8",
        api::error_body(msg),
    )
}

async fn handle(state: &State, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let allowed: &[Method] = match path.as_str() {
        "/" | "/api/version" | "/api/tags" => &[Method::GET, Method::HEAD],
        "/api/ps" => &[Method::GET],
        "/api/show" | "/api/generate" | "/api/chat" => &[Method::POST],
        "/api/pull" | "/api/push" | "/api/create" | "/api/copy" | "/api/embed"
        | "/api/embeddings" => {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                &format!(
                    "{path} is not supported: secllama-runner serves the models it was started with"
                ),
            );
        }
        "/api/delete" => &[Method::DELETE],
        _ => return full(StatusCode::NOT_FOUND, "text/plain", "404 page not found"),
    };
    if !allowed.contains(&method) {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            r.headers_mut().insert(ALLOW, v);
        }
        return r;
    }
    let received = Instant::now();
    match path.as_str() {
        "/" => full(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "Ollama is running",
        ),
        "/api/version" => json_resp(StatusCode::OK, &json!({ "version": api::OLLAMA_VERSION })),
        "/api/tags" => tags(state),
        "/api/ps" => ps(state),
        "/api/delete" => error(
            StatusCode::NOT_IMPLEMENTED,
            "/api/delete is not supported: secllama-runner serves the models it was started with",
        ),
        _ => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(f) => return f.resp(),
            };
            match path.as_str() {
                "/api/show" => show(state, &body),
                "/api/generate" => generate(state, &body, received).await,
                _ => chat(state, &body, received).await,
            }
        }
    }
}

/// A request refused before it reached a model: a status and Ollama's error message.
#[derive(Debug)]
struct Fail(StatusCode, String);

impl Fail {
    fn resp(&self) -> Resp {
        error(self.0, &self.1)
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Fail> {
    let too_large = || {
        Fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".into(),
        )
    };
    if let Some(n) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if n > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => {
            let b = c.to_bytes();
            if b.is_empty() {
                Err(Fail(StatusCode::BAD_REQUEST, "missing request body".into()))
            } else {
                Ok(b)
            }
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Fail(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(body).map_err(|e| Fail(StatusCode::BAD_REQUEST, e.to_string()))
}

fn details(m: &Model) -> Value {
    let arch = m.info.architecture();
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": arch,
        "families": [arch],
        "parameter_size": gguf::human_number(m.info.parameter_count),
        "quantization_level": m.info.quantization_level(),
    })
}

fn tags(state: &State) -> Resp {
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "modified_at": api::rfc3339(m.modified),
                "size": m.size,
                "digest": m.digest,
                "details": details(m),
            })
        })
        .collect();
    json_resp(StatusCode::OK, &json!({ "models": models }))
}

fn ps(state: &State) -> Resp {
    // Models stay loaded for the life of the process: report an expiry far in the future.
    let expires = api::rfc3339(SystemTime::now() + Duration::from_secs(100 * 365 * 86_400));
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "size": m.size,
                "digest": m.digest,
                "details": details(m),
                "expires_at": expires,
                "size_vram": 0,
                "context_length": m.default_ctx,
            })
        })
        .collect();
    json_resp(StatusCode::OK, &json!({ "models": models }))
}

fn not_found(name: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!("model {name:?} not found, try pulling it first"),
    )
}

fn show(state: &State, body: &[u8]) -> Resp {
    let req: ShowRequest = match parse(body) {
        Ok(r) => r,
        Err(f) => return f.resp(),
    };
    let Some(name) = req.model.or(req.name).filter(|n| !n.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "model is required");
    };
    let Some(m) = state.find(&name) else {
        return not_found(&name);
    };
    let mut v = json!({
        "modelfile": format!("# Modelfile generated by secllama-runner\nFROM {}\n", m.name),
        "parameters": format!("num_ctx {}", m.default_ctx),
        "template": m.info.chat_template(),
        "details": details(m),
        "model_info": m.info.model_info(req.verbose),
        "capabilities": ["completion"],
        "modified_at": api::rfc3339(m.modified),
    });
    if let (Some(l), Some(o)) = (m.info.get_str("general.license"), v.as_object_mut()) {
        o.insert("license".into(), Value::from(l));
    }
    json_resp(StatusCode::OK, &v)
}

fn unsupported(what: &str) -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        &format!("{what} is not supported by secllama-runner"),
    )
}

fn thinks(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true)) | Some(Value::String(_)))
}

fn set(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Null)) && v != Some(&Value::String(String::new()))
}

async fn generate(state: &State, body: &[u8], received: Instant) -> Resp {
    let req: GenerateRequest = match parse(body) {
        Ok(r) => r,
        Err(f) => return f.resp(),
    };
    let model = match state.requested(req.model.as_deref(), req.format.as_ref()) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    if req.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return unsupported("images");
    }
    if req.template.as_ref().is_some_and(|t| !t.is_empty()) {
        return unsupported("a template in the request");
    }
    if req.context.as_ref().is_some_and(|c| !c.is_empty()) {
        return unsupported("context (use /api/chat)");
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return unsupported("suffix");
    }
    if thinks(req.think.as_ref()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{:?} does not support thinking", model.name),
        );
    }
    let options = match api::parse_options(req.options.as_ref()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let prompt_text = req.prompt.unwrap_or_default();
    let system = req.system.unwrap_or_default();
    if prompt_text.is_empty() && (req.raw || system.is_empty()) {
        return reply_resp(reply(
            Kind::Generate,
            &model.name,
            "",
            Some((DoneReason::Load, None)),
        ));
    }
    let prompt = if req.raw {
        Prompt::Raw(prompt_text)
    } else {
        let mut msgs = Vec::new();
        if !system.is_empty() {
            msgs.push(api::Message {
                role: "system".into(),
                content: system,
                images: None,
            });
        }
        if !prompt_text.is_empty() {
            msgs.push(api::Message {
                role: "user".into(),
                content: prompt_text,
                images: None,
            });
        }
        Prompt::Chat(msgs)
    };
    answer(
        Kind::Generate,
        model,
        prompt,
        options,
        req.stream.unwrap_or(true),
        received,
    )
    .await
}

async fn chat(state: &State, body: &[u8], received: Instant) -> Resp {
    let req: ChatRequest = match parse(body) {
        Ok(r) => r,
        Err(f) => return f.resp(),
    };
    let model = match state.requested(req.model.as_deref(), req.format.as_ref()) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{:?} does not support tools", model.name),
        );
    }
    if thinks(req.think.as_ref()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{:?} does not support thinking", model.name),
        );
    }
    for m in &req.messages {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid message role {:?}", m.role),
            );
        }
        if m.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return unsupported("images");
        }
    }
    let options = match api::parse_options(req.options.as_ref()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if req.messages.is_empty() {
        return reply_resp(reply(
            Kind::Chat,
            &model.name,
            "",
            Some((DoneReason::Load, None)),
        ));
    }
    let prompt = Prompt::Chat(req.messages);
    answer(
        Kind::Chat,
        model,
        prompt,
        options,
        req.stream.unwrap_or(true),
        received,
    )
    .await
}
