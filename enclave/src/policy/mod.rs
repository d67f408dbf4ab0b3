//! The evaluation policy (DESIGN.md "Policy"): a JSON file, measured into the enclave digests, that
//! lists the evaluation dataset — the only prompts the enclave processes — the allowed models and
//! the limits. Matching is exact: the prompt text for `/api/generate`, the whole `messages` array for
//! `/api/chat`. Request fields that could change what the model is asked (system prompts, templates,
//! raw mode, images, context) are refused, as are unknown fields: the policy fails closed. Every
//! refusal names the rule that refused.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

mod neutral;
#[cfg(test)]
mod tests;

use neutral::{neutral, without_neutral_message_fields};

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
    /// `/api/show`: one model's details (no prompt).
    Show,
    /// `/api/ps`: the models loaded (no prompt).
    Ps,
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

    /// `/api/show`: `{"model": NAME}` (or `"name"`, older clients) with an optional boolean
    /// `verbose`; the model must be one of the policy's. The runner is sent
    /// `{"model": CANONICAL[, "verbose": …]}`.
    fn check_show(&self, body: &[u8]) -> Result<Allowed, Refusal> {
        let v: Value = secllama_protocol::ijson::from_slice(body).map_err(|e| {
            refuse(
                "body",
                format!("a JSON object with unique names, found {e}"),
            )
        })?;
        let Value::Object(obj) = &v else {
            return Err(refuse("body", "a JSON object"));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["model", "name", "verbose"].contains(&k.as_str()))
        {
            return Err(refuse(
                "fields",
                format!("only model (or name) and verbose for /api/show, found field {k:?}"),
            ));
        }
        let given = match (obj.get("model"), obj.get("name")) {
            (Some(Value::String(m)), None) | (None, Some(Value::String(m))) => m,
            _ => return Err(refuse("model", "one model name, as model or name")),
        };
        let model = secllama_protocol::ollama_name::canonical(given)
            .map_err(|e| refuse("model", e.to_string()))?;
        if !self.models.contains(&model) {
            return Err(refuse(
                "model",
                format!("one of {:?}, found {given:?} ({model})", self.models),
            ));
        }
        let mut out = serde_json::Map::new();
        out.insert("model".into(), Value::String(model.clone()));
        match obj.get("verbose") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => {
                out.insert("verbose".into(), Value::Bool(*b));
            }
            Some(other) => {
                return Err(refuse(
                    "fields",
                    format!("verbose as a boolean, found {other}"),
                ));
            }
        }
        Ok(Allowed {
            dataset_id: None,
            model: Some(model),
            stream: false,
            num_predict: None,
            defaults: Vec::new(),
            forward: Some(
                serde_json::to_vec(&Value::Object(out))
                    .map_err(|e| refuse("body", e.to_string()))?,
            ),
        })
    }

    /// Decides on the Ollama request `body` for `endpoint`.
    pub fn check(&self, endpoint: Endpoint, body: &[u8]) -> Result<Allowed, Refusal> {
        if endpoint == Endpoint::Show {
            return self.check_show(body);
        }
        if matches!(endpoint, Endpoint::Tags | Endpoint::Ps) {
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
                Err(refuse("body", "an empty body for /api/tags and /api/ps"))
            };
        }
        // The runner reads these same bytes: a name given twice would be read differently by
        // its parser than by ours (secllama_protocol::ijson).
        let v: Value = secllama_protocol::ijson::from_slice(body).map_err(|e| {
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
            // Ollama's default (and what `null` means to it and to our runner).
            None | Some(Value::Null) => true,
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
                match endpoint {
                    Endpoint::Generate => {
                        "a prompt from the evaluation dataset, found one that is not in it"
                    }
                    _ => "messages from the evaluation dataset, found messages that are not in it",
                },
            )),
        }
    }
}
