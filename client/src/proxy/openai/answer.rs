//! Ollama answers as OpenAI's: a whole `chat.completion` / `text_completion` object, or
//! server-sent events (`data: {chunk}` lines ending with `data: [DONE]`) produced line by line
//! from the proxy's Ollama stream, whose final line the proxy releases only after the receipt
//! verified.

use super::super::Body;
use super::{Kind, Meta};
use bytes::Bytes;
use hyper::body::Frame;
use serde_json::{Value, json};

/// OpenAI's `usage` from Ollama's counts (a count that is missing or not a `u64` is 0; the total
/// saturates rather than overflow: the counts come from the runner).
fn usage(answer: &Value) -> Value {
    let p = answer["prompt_eval_count"].as_u64().unwrap_or(0);
    let c = answer["eval_count"].as_u64().unwrap_or(0);
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p.saturating_add(c)})
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

/// The OpenAI object for a non-streamed Ollama answer.
pub fn whole(meta: &Meta, answer: &Value) -> Value {
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

/// Ollama NDJSON lines in, server-sent events out. Events that end the answer (the
/// `finish_reason` chunk, usage, `data: [DONE]`) come only from a line whose `done` is `true`.
pub struct Translate {
    meta: Meta,
    partial: Vec<u8>,
    done: bool,
}

impl Translate {
    /// A translation for the request `meta` describes.
    pub fn new(meta: Meta) -> Self {
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

    /// Events for the complete lines in `data` (bytes after the last newline wait).
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
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
    pub fn finish(&mut self) -> Vec<u8> {
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
pub(super) struct SseBody {
    pub(super) inner: Body,
    pub(super) translate: Translate,
    pub(super) ended: bool,
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
    }

    #[test]
    fn counts_near_u64_max_saturate() {
        // Found writing fuzz/fuzz_targets/proxy.rs: `prompt_eval_count + eval_count` overflowed.
        let u = usage(&json!({"prompt_eval_count": u64::MAX, "eval_count": 2}));
        assert_eq!(u["total_tokens"], u64::MAX);
    }
}
