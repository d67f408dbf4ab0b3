//! The verifying proxy's parsing (`client/src/proxy`): OpenAI requests translated into Ollama's,
//! the Ollama stream's hold-back of the final line, and Ollama answers translated into OpenAI's.
//! First input byte: what the rest is (0 chat request, 1 completion request, 2 an Ollama stream
//! cut into chunks, 3 an Ollama stream or answer to translate). Properties:
//! - a translated request is I-JSON, says `stream` as the proxy will treat it, and the enclave's
//!   policy never refuses it for its shape (rules `body`, `fields`) — only for what it asks;
//! - the hold-back passes on only complete lines, never the final one (`"done": true`) nor what
//!   follows it, loses nothing (passed + released = the stream) and does not depend on how the
//!   stream was cut;
//! - a translated stream is server-sent events of JSON objects, with `data: [DONE]` at most once,
//!   last, and only after a final line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_client::proxy::openai::{self, Kind, Translate};
use secllama_client::proxy::stream::{HoldBack, is_final_line};
use secllama_enclave::policy::{Endpoint, Policy};
use serde_json::Value;
use std::sync::OnceLock;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::from_json(
            br#"{"dataset": [{"id": "q1", "prompt": "What is 2+2?"},
                 {"id": "c1", "messages": [{"role": "user", "content": "Hello"}]}],
                 "models": ["tiny:latest"], "max_prompt_bytes": 256, "max_num_predict": 32}"#,
        )
        .expect("the fuzz policy loads")
    })
}

fn request(kind: Kind, body: &[u8]) {
    let Ok((ollama, meta)) = openai::request(kind, body) else {
        return;
    };
    let v = secllama_protocol::ijson::from_slice(&ollama).expect("the Ollama request is I-JSON");
    assert_eq!(v.get("stream"), Some(&Value::Bool(meta.stream())));
    let endpoint = match kind {
        Kind::Chat => Endpoint::Chat,
        Kind::Completion => Endpoint::Generate,
    };
    if let Err(r) = policy().check(endpoint, &ollama) {
        assert!(
            !matches!(r.rule, "body" | "fields"),
            "the proxy sent a request the policy refuses for its shape: {r}"
        );
    }
}

fn hold_back(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 17) + 1;
    let mut whole = HoldBack::default();
    let at_once = whole.push(stream);
    let mut cut_up = HoldBack::default();
    let mut passed = Vec::new();
    for chunk in stream.chunks(step) {
        passed.extend(cut_up.push(chunk));
    }
    assert_eq!(
        passed, at_once,
        "what passes depends on how the stream was cut"
    );
    assert!(
        passed.is_empty() || passed.ends_with(b"\n"),
        "only complete lines pass"
    );
    for line in passed.split_inclusive(|b| *b == b'\n') {
        assert!(
            !is_final_line(line),
            "the final line passed before the receipt"
        );
    }
    let mut all = passed;
    all.extend(cut_up.release());
    assert_eq!(all, stream, "passed and released is the stream");
}

fn translate(which: u8, data: &[u8]) {
    let kind = if which & 4 == 0 {
        Kind::Chat
    } else {
        Kind::Completion
    };
    let usage = if which & 8 == 0 { "false" } else { "true" };
    let req = match kind {
        Kind::Chat => format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"a"}}],"stream":true,"stream_options":{{"include_usage":{usage}}}}}"#
        ),
        Kind::Completion => format!(
            r#"{{"model":"m","prompt":"a","stream":true,"stream_options":{{"include_usage":{usage}}}}}"#
        ),
    };
    let (_, meta) = openai::request(kind, req.as_bytes()).expect("the fixed request translates");
    if let Ok(answer) = serde_json::from_slice::<Value>(data) {
        let w = openai::whole(&meta, &answer);
        assert!(w["choices"].is_array());
    }
    let mut t = Translate::new(meta);
    let mut out = t.push(data);
    out.extend(t.finish());
    let text = String::from_utf8(out).expect("events are UTF-8");
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(text.is_empty() || text.ends_with("\n\n"));
    let final_line = data
        .split(|b| *b == b'\n')
        .any(|l| serde_json::from_slice::<Value>(l).is_ok_and(|v| v["done"] == Value::Bool(true)));
    for (i, e) in events.iter().enumerate() {
        let body = e.strip_prefix("data: ").expect("a data event");
        if body == "[DONE]" {
            assert_eq!(i + 1, events.len(), "[DONE] is the last event");
            assert!(final_line, "[DONE] without a final line");
        } else {
            let v: Value = serde_json::from_str(body).expect("a JSON event");
            assert!(v.is_object());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = policy();
    secllama_fuzz_bounds::decided(data, || {
        let Some((&which, rest)) = data.split_first() else {
            return;
        };
        match which & 3 {
            0 => request(Kind::Chat, rest),
            1 => request(Kind::Completion, rest),
            2 => hold_back(rest),
            _ => translate(which, rest),
        }
    });
});
