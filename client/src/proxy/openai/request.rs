//! OpenAI requests as Ollama's (ollama `openai/openai.go` `fromChatRequest`,
//! `fromCompleteRequest`): what can be honoured is mapped, the rest refused with its reason.

use super::{Kind, Meta};
use serde_json::{Map, Value, json};

/// The Ollama request body (compact JSON) for the OpenAI request `body` of `kind`, and what the
/// answer translation needs; or why it is refused (the proxy answers `400` with it).
///
/// The body is read as I-JSON ([`secllama_protocol::ijson`]): a member name given twice at any
/// depth is refused, because the proxy re-serialises the request and the enclave's own check for
/// ambiguity would never see it.
pub fn request(kind: Kind, body: &[u8]) -> Result<(Vec<u8>, Meta), String> {
    let v = secllama_protocol::ijson::from_slice(body)
        .map_err(|e| format!("the request is not JSON with unique member names: {e}"))?;
    let (ollama, meta) = to_ollama(kind, &v)?;
    Ok((ollama.to_string().into_bytes(), meta))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn a_member_name_given_twice_is_refused_not_guessed() {
        // serde_json would keep the last `max_tokens`; the re-serialised Ollama request would hide
        // the ambiguity from the enclave.
        for body in [
            r#"{"model":"m","prompt":"a","max_tokens":2,"max_tokens":500}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"a","role":"system"}]}"#,
        ] {
            let kind = if body.contains("prompt") {
                Kind::Completion
            } else {
                Kind::Chat
            };
            let e = request(kind, body.as_bytes()).unwrap_err();
            assert!(e.contains("duplicate member"), "{body}: {e}");
        }
        let (o, m) = request(
            Kind::Completion,
            br#"{"model":"m","prompt":"a","max_tokens":2,"stream":true}"#,
        )
        .unwrap();
        assert_eq!(
            o,
            br#"{"model":"m","options":{"num_predict":2},"prompt":"a","stream":true}"#
        );
        assert!(m.stream());
    }
}
