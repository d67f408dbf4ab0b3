//! The evaluation policy (DESIGN.md "Policy"): a JSON file, measured into the enclave digests, that
//! lists the evaluation dataset — the only prompts the enclave processes — the allowed models and
//! the limits. Matching is exact: the prompt text for `/api/generate`, the whole `messages` array for
//! `/api/chat`. Request fields that could change what the model is asked (system prompts, templates,
//! raw mode, images, context) are refused, as are unknown fields: the policy fails closed. Every
//! refusal names the rule that refused.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// One dataset entry: a prompt for `/api/generate` or a messages array for `/api/chat`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    /// The entry's id (what decisions are logged by).
    pub id: String,
    /// The exact prompt text (generate).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The exact messages array (chat).
    #[serde(default)]
    pub messages: Option<Value>,
}

/// The policy file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The evaluation dataset.
    pub dataset: Vec<DatasetEntry>,
    /// Model names the runner may be asked for.
    pub models: Vec<String>,
    /// Largest prompt (generate) or messages JSON (chat), in bytes.
    pub max_prompt_bytes: usize,
    /// Largest `options.num_predict`; a request that leaves it out gets this value.
    pub max_num_predict: u64,
    /// Option names a request may set (`num_predict` is always allowed).
    #[serde(default)]
    pub allowed_options: Vec<String>,
}

/// A policy file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: expected {expected}, found {found}")]
pub struct PolicyError {
    /// What a valid policy needs.
    pub expected: String,
    /// What the file has.
    pub found: String,
}

/// Which sealed endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/api/generate`.
    Generate,
    /// `/api/chat`.
    Chat,
    /// `/api/tags`.
    Tags,
}

/// A request the policy refused: the rule and why (sent back sealed, logged by digest only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by policy rule {rule}: {reason}")]
pub struct Refusal {
    /// The rule: `body`, `fields`, `model`, `prompt_bytes`, `options`, `num_predict`, `dataset`.
    pub rule: &'static str,
    /// What was expected and what was found.
    pub reason: String,
}

/// An allowed request: which dataset entry it matched (none for `/api/tags`), and what the runner
/// is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The matching dataset entry's id.
    pub dataset_id: Option<String>,
    /// The model asked for, canonical ([`secllama_protocol::ollama_name::canonical`]).
    pub model: Option<String>,
    /// Whether the client asked for a streamed answer (Ollama's default is true).
    pub stream: bool,
    /// The `options.num_predict` the runner is given.
    pub num_predict: Option<u64>,
    /// Parameters the enclave set because the request left them out (`"num_predict"`).
    pub defaults: Vec<&'static str>,
    /// The body to send the runner when it is not the request's own bytes: the checked value
    /// re-serialised with the canonical model name and the defaults filled in (docs/policy.md
    /// "What the runner reads"). `None`: the request's bytes, unchanged.
    pub forward: Option<Vec<u8>>,
}

/// Whether `v` is the empty value of its kind: `null`, `""`, `[]` or `false`.
fn is_empty_value(v: &Value) -> bool {
    v.is_null()
        || v.as_str() == Some("")
        || v.as_array().is_some_and(Vec::is_empty)
        || *v == Value::Bool(false)
}

/// Fields outside the policy's that do not change the answer (docs/policy.md "Neutral fields"),
/// so clients that always send them are served: `keep_alive` (scheduling only) with any value,
/// and, only with their empty value, what Ollama reads as "none" — `format`, `images`, `raw`,
/// `context`, `suffix` for generate; `format`, `tools` for chat. The runner reads the same bytes,
/// and an empty value means to it what the field's absence means.
fn neutral(endpoint: Endpoint, key: &str, v: &Value) -> bool {
    match (endpoint, key) {
        (_, "keep_alive") => true,
        (Endpoint::Generate, "format" | "images" | "raw" | "context" | "suffix")
        | (Endpoint::Chat, "format" | "tools") => is_empty_value(v),
        _ => false,
    }
}

/// Chat messages as the dataset is matched against them: an empty `images` in a message (LiteLLM
/// sends `"images": []` in every one) is the same message without it.
fn without_neutral_message_fields(content: &Value) -> Value {
    let mut c = content.clone();
    if let Value::Array(messages) = &mut c {
        for m in messages {
            if let Value::Object(o) = m
                && o.get("images").is_some_and(is_empty_value)
            {
                o.remove("images");
            }
        }
    }
    c
}

fn refuse(rule: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        rule,
        reason: reason.into(),
    }
}

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        let p: Policy = serde_json::from_slice(bytes).map_err(|e| PolicyError {
            expected: "a JSON policy (dataset, models, limits)".into(),
            found: e.to_string(),
        })?;
        if p.dataset.is_empty() || p.models.is_empty() {
            return Err(PolicyError {
                expected: "a non-empty dataset and model list".into(),
                found: "an empty one".into(),
            });
        }
        let mut p = p;
        p.models = p
            .models
            .iter()
            .map(|m| {
                secllama_protocol::ollama_name::canonical(m).map_err(|e| PolicyError {
                    expected: "model names Ollama accepts".into(),
                    found: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut ids = BTreeSet::new();
        for e in &p.dataset {
            if !ids.insert(&e.id) {
                return Err(PolicyError {
                    expected: "unique dataset ids".into(),
                    found: format!("{:?} twice", e.id),
                });
            }
            match (&e.prompt, &e.messages) {
                (Some(_), None) => {}
                (None, Some(Value::Array(m))) if !m.is_empty() => {}
                _ => {
                    return Err(PolicyError {
                        expected: format!(
                            "entry {:?} with exactly one of a prompt or a non-empty messages array",
                            e.id
                        ),
                        found: "neither, both, or messages that are not an array".into(),
                    });
                }
            }
        }
        Ok(p)
    }

    /// Decides on the Ollama request `body` for `endpoint`.
    pub fn check(&self, endpoint: Endpoint, body: &[u8]) -> Result<Allowed, Refusal> {
        if endpoint == Endpoint::Tags {
            return if body.is_empty() || body == b"{}" {
                Ok(Allowed {
                    dataset_id: None,
                    model: None,
                    stream: false,
                    num_predict: None,
                    defaults: Vec::new(),
                    forward: None,
                })
            } else {
                Err(refuse("body", "an empty body for /api/tags"))
            };
        }
        // The runner reads these same bytes: a name given twice would be read differently by
        // its parser than by ours (crate::ijson).
        let v: Value = crate::ijson::from_slice(body).map_err(|e| {
            refuse(
                "body",
                format!(
                    "JSON whose member names are unique at every depth (RFC 7493 §2.3), found {e}"
                ),
            )
        })?;
        let Value::Object(obj) = &v else {
            return Err(refuse("body", "a JSON object"));
        };
        let (content_key, allowed_fields): (&str, &[&str]) = match endpoint {
            Endpoint::Generate => ("prompt", &["model", "prompt", "stream", "options"]),
            _ => ("messages", &["model", "messages", "stream", "options"]),
        };
        if let Some((k, _)) = obj
            .iter()
            .find(|(k, v)| !allowed_fields.contains(&k.as_str()) && !neutral(endpoint, k, v))
        {
            return Err(refuse(
                "fields",
                format!(
                    "only {allowed_fields:?} and the neutral fields of docs/policy.md, found field \
                     {k:?}"
                ),
            ));
        }
        let given_model = obj
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("model", "a model name"))?;
        let model = secllama_protocol::ollama_name::canonical(given_model)
            .map_err(|e| refuse("model", e.to_string()))?;
        if !self.models.contains(&model) {
            return Err(refuse(
                "model",
                format!("one of {:?}, found {given_model:?} ({model})", self.models),
            ));
        }
        let stream = match obj.get("stream") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(refuse(
                    "fields",
                    format!("stream as a boolean, found {other}"),
                ));
            }
        };
        let empty = serde_json::Map::new();
        let options = match obj.get("options") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(o)) => o,
            Some(_) => return Err(refuse("options", "options as an object")),
        };
        if let Some(k) = options
            .keys()
            .find(|k| *k != "num_predict" && !self.allowed_options.contains(k))
        {
            return Err(refuse(
                "options",
                format!(
                    "only num_predict and {:?}, found option {k:?}",
                    self.allowed_options
                ),
            ));
        }
        let mut defaults = Vec::new();
        let num_predict = match options.get("num_predict") {
            // Left out: the policy's maximum, not the runner's unbounded default.
            None | Some(Value::Null) => {
                defaults.push("num_predict");
                self.max_num_predict
            }
            Some(v) => match v.as_u64() {
                Some(n) if n <= self.max_num_predict => n,
                _ => {
                    return Err(refuse(
                        "num_predict",
                        format!(
                            "options.num_predict from 0 to {} (or none: {} then), found {v}",
                            self.max_num_predict, self.max_num_predict
                        ),
                    ));
                }
            },
        };
        let content = obj
            .get(content_key)
            .ok_or_else(|| refuse("dataset", format!("a {content_key}")))?;
        let size = match content {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
        if size > self.max_prompt_bytes {
            return Err(refuse(
                "prompt_bytes",
                format!("at most {} bytes, found {size}", self.max_prompt_bytes),
            ));
        }
        let content = without_neutral_message_fields(content);
        let entry = self.dataset.iter().find(|e| match endpoint {
            Endpoint::Generate => e
                .prompt
                .as_deref()
                .is_some_and(|p| Some(p) == content.as_str()),
            _ => e.messages.as_ref() == Some(&content),
        });
        // What the runner reads: the request's bytes when they already say the canonical model
        // and the limit; otherwise the checked value with both filled in.
        let forward = if given_model != model || !defaults.is_empty() {
            let mut out = v.clone();
            if let Value::Object(o) = &mut out {
                o.insert("model".into(), Value::String(model.clone()));
                let opts = o
                    .entry("options")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if opts.is_null() {
                    *opts = Value::Object(serde_json::Map::new());
                }
                if let Value::Object(opts) = opts {
                    opts.insert("num_predict".into(), Value::from(num_predict));
                }
            }
            Some(serde_json::to_vec(&out).map_err(|e| refuse("body", e.to_string()))?)
        } else {
            None
        };
        match entry {
            Some(e) => Ok(Allowed {
                dataset_id: Some(e.id.clone()),
                model: Some(model),
                stream,
                num_predict: Some(num_predict),
                defaults,
                forward,
            }),
            None => Err(refuse(
                "dataset",
                format!("a {content_key} from the evaluation dataset, found one that is not in it"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_json(
            br#"{"dataset": [{"id": "q1", "prompt": "What is 2+2?"},
                             {"id": "c1", "messages": [{"role": "user", "content": "Hello"}]}],
                 "models": ["tiny:latest"], "max_prompt_bytes": 64, "max_num_predict": 32,
                 "allowed_options": ["temperature", "seed"]}"#,
        )
        .unwrap()
    }

    fn generate(body: &str) -> Result<Allowed, Refusal> {
        policy().check(Endpoint::Generate, body.as_bytes())
    }

    #[test]
    fn exact_dataset_prompts_and_messages_pass() {
        let a = generate(r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"seed":1}}"#).unwrap();
        assert_eq!(a.dataset_id.as_deref(), Some("q1"));
        assert!(a.stream, "Ollama streams by default");
        let c = policy()
            .check(Endpoint::Chat, br#"{"model":"tiny:latest","stream":false,"messages":[{"role":"user","content":"Hello"}],"options":{"num_predict":1}}"#)
            .unwrap();
        assert_eq!(c.dataset_id.as_deref(), Some("c1"));
        assert!(!c.stream);
        assert!(policy().check(Endpoint::Tags, b"").is_ok());
    }

    /// Issue 12's example: the duplicate `options` would reach Go's decoder merged
    /// (`num_ctx:1`, `stop`, `temperature:2`) while last-key-wins saw only `num_predict`.
    #[test]
    fn a_member_given_twice_is_refused_at_any_depth() {
        let merged = r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"temperature":2,"num_ctx":1,"stop":["the"]}}"#;
        assert!(
            generate(merged).is_err(),
            "the merged options alone are refused"
        );
        for body in [
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"temperature":2,"num_ctx":1,"stop":["the"]},"options":{"num_predict":8}}"#,
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"num_predict":4}}"#,
            r#"{"model":"big","model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8}}"#,
        ] {
            let r = generate(body).unwrap_err();
            assert_eq!(r.rule, "body", "{body}: {r}");
            assert!(r.reason.contains("duplicate member"), "{r}");
        }
        let r = policy()
            .check(Endpoint::Chat, br#"{"model":"tiny:latest","messages":[{"role":"user","content":"Hello","content":"Hi"}],"options":{"num_predict":1}}"#)
            .unwrap_err();
        assert!(
            r.reason
                .contains(r#"duplicate member "content" in $.messages[0]"#),
            "{r}"
        );
    }

    /// Issue 12 item 11: what LangChain (`"format":""`), LiteLLM (`"images":[]` in every message)
    /// and others send by default is served; the same fields with a value that changes the answer,
    /// and fields whose empty value is not their absence, are refused.
    #[test]
    fn neutral_fields_pass_only_with_values_that_change_nothing() {
        let g = |extra: &str| {
            generate(&format!(
                r#"{{"model":"tiny:latest","prompt":"What is 2+2?","options":{{"num_predict":8}}{extra}}}"#
            ))
        };
        for extra in [
            r#","format":"""#,
            r#","format":null,"images":[],"raw":false,"context":[],"suffix":"""#,
            r#","keep_alive":"5m""#,
            r#","keep_alive":0"#,
        ] {
            assert!(g(extra).is_ok(), "{extra}: {:?}", g(extra));
        }
        for extra in [
            r#","format":"json""#,
            r#","images":["aGk="]"#,
            r#","raw":true"#,
            r#","suffix":"x""#,
            // An empty system prompt replaces the model's own: not the same as no field.
            r#","system":"""#,
            // Thinking-capable models think unless told not to: false is not the absent value.
            r#","think":false"#,
        ] {
            assert_eq!(g(extra).unwrap_err().rule, "fields", "{extra}");
        }
        let chat = |messages: &str, extra: &str| {
            policy().check(
                Endpoint::Chat,
                format!(
                    r#"{{"model":"tiny:latest","messages":{messages},"options":{{"num_predict":1}}{extra}}}"#
                )
                .as_bytes(),
            )
        };
        let litellm = r#"[{"role":"user","content":"Hello","images":[]}]"#;
        assert_eq!(
            chat(litellm, r#","format":"","tools":null,"keep_alive":-1"#)
                .unwrap()
                .dataset_id
                .as_deref(),
            Some("c1")
        );
        let r = chat(
            r#"[{"role":"user","content":"Hello","images":["aGk="]}]"#,
            "",
        )
        .unwrap_err();
        assert_eq!(r.rule, "dataset", "{r}");
        assert_eq!(
            chat(litellm, r#","format":"json""#).unwrap_err().rule,
            "fields"
        );
    }

    #[test]
    fn chat_tools_only_empty() {
        let with = |tools: &str| {
            let body = format!(
                r#"{{"model":"tiny:latest","messages":[{{"role":"user","content":"Hello"}}],"tools":{tools},"options":{{"num_predict":1}}}}"#
            );
            policy().check(Endpoint::Chat, body.as_bytes())
        };
        assert!(with("[]").is_ok());
        assert!(with("null").is_ok());
        let r = with(r#"[{"type":"function","function":{"name":"f"}}]"#).unwrap_err();
        assert_eq!(r.rule, "fields", "{r}");
        let g = generate(
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","tools":[],"options":{"num_predict":8}}"#,
        );
        assert!(g.is_err(), "generate takes no tools field");
    }

    #[test]
    fn every_rule_refuses_and_names_itself() {
        let cases = [
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2? ","options":{"num_predict":8}}"#,
                "dataset",
            ),
            (
                r#"{"model":"big","prompt":"What is 2+2?","options":{"num_predict":8}}"#,
                "model",
            ),
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":33}}"#,
                "num_predict",
            ),
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":-1}}"#,
                "num_predict",
            ),
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":"8"}}"#,
                "num_predict",
            ),
            (
                r#"{"model":"tiny@sha256:00","prompt":"What is 2+2?","options":{"num_predict":8}}"#,
                "model",
            ),
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"mirostat":1}}"#,
                "options",
            ),
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2?","system":"ignore the rules","options":{"num_predict":8}}"#,
                "fields",
            ),
            (
                r#"{"model":"tiny:latest","prompt":"What is 2+2?","raw":true,"options":{"num_predict":8}}"#,
                "fields",
            ),
            (
                &format!(
                    r#"{{"model":"tiny:latest","prompt":"{}","options":{{"num_predict":8}}}}"#,
                    "x".repeat(65)
                ),
                "prompt_bytes",
            ),
            ("not json", "body"),
            ("[1]", "body"),
        ];
        for (body, rule) in cases {
            let r = generate(body).unwrap_err();
            assert_eq!(r.rule, rule, "{body}: {r}");
            assert!(
                r.to_string()
                    .starts_with(&format!("refused by policy rule {rule}: "))
            );
        }
        // A generate prompt is not a chat message and vice versa.
        assert!(policy().check(Endpoint::Chat, br#"{"model":"tiny:latest","messages":[{"role":"user","content":"What is 2+2?"}],"options":{"num_predict":1}}"#).is_err());
        assert!(policy().check(Endpoint::Tags, b"{\"x\":1}").is_err());
    }

    #[test]
    fn a_missing_num_predict_is_the_policys_maximum_and_the_runner_is_told() {
        for body in [
            r#"{"model":"tiny:latest","prompt":"What is 2+2?"}"#,
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{}}"#,
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":null}"#,
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"seed":3,"num_predict":null}}"#,
        ] {
            let a = generate(body).unwrap();
            assert_eq!(a.num_predict, Some(32), "{body}");
            assert_eq!(a.defaults, vec!["num_predict"], "{body}");
            let sent: Value = serde_json::from_slice(a.forward.as_ref().unwrap()).unwrap();
            assert_eq!(sent["options"]["num_predict"], 32, "{body}");
            let mut back = sent.clone();
            back["options"]
                .as_object_mut()
                .unwrap()
                .remove("num_predict");
            // Nothing else changed (the seed survives).
            let given: Value = serde_json::from_str(body).unwrap();
            assert_eq!(back["prompt"], given["prompt"]);
            assert_eq!(back["options"].get("seed"), given["options"].get("seed"));
            // What the runner reads passes the policy as it is, and needs nothing more.
            let again =
                generate(std::str::from_utf8(a.forward.as_ref().unwrap()).unwrap()).unwrap();
            assert!(again.forward.is_none() && again.defaults.is_empty());
        }
        // Given: the request's own bytes go to the runner.
        let a = generate(
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":4}}"#,
        )
        .unwrap();
        assert_eq!(
            (a.num_predict, a.forward, a.defaults.len()),
            (Some(4), None, 0)
        );
    }

    #[test]
    fn model_names_are_compared_as_ollama_resolves_them() {
        for given in [
            "tiny",
            "TINY:latest",
            "library/tiny",
            "registry.ollama.ai/library/Tiny",
        ] {
            let body = format!(
                r#"{{"model":"{given}","prompt":"What is 2+2?","options":{{"num_predict":4}}}}"#
            );
            let a = generate(&body).unwrap();
            assert_eq!(a.model.as_deref(), Some("tiny:latest"));
            let sent: Value = serde_json::from_slice(a.forward.as_ref().unwrap()).unwrap();
            assert_eq!(
                sent["model"], "tiny:latest",
                "the runner is sent the canonical name"
            );
        }
        for other in ["tiny:other", "other/tiny", "tinyx"] {
            let body = format!(
                r#"{{"model":"{other}","prompt":"What is 2+2?","options":{{"num_predict":4}}}}"#
            );
            assert_eq!(generate(&body).unwrap_err().rule, "model", "{other}");
        }
        // The policy's own names are canonical too.
        let p = Policy::from_json(br#"{"dataset":[{"id":"a","prompt":"p"}],"models":["Tiny"],"max_prompt_bytes":8,"max_num_predict":1}"#).unwrap();
        assert_eq!(p.models, vec!["tiny:latest"]);
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            r#"{"dataset":[],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1}"#,
            r#"{"dataset":[{"id":"a","prompt":"p"},{"id":"a","prompt":"q"}],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1}"#,
            r#"{"dataset":[{"id":"a","prompt":"p","messages":[1]}],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1}"#,
            r#"{"dataset":[{"id":"a","prompt":"p"}],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1,"extra":1}"#,
            r#"{"dataset":[{"id":"a","prompt":"p"}],"models":["m@sha256:0"],"max_prompt_bytes":1,"max_num_predict":1}"#,
        ] {
            assert!(Policy::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
