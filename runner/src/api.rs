//! Ollama's API shapes as this runner reads and writes them (see Ollama's `docs/api.md`): request
//! bodies, the `options` object with Ollama's defaults, model names (`name` means `name:latest`),
//! the final statistics of an answer, and RFC 3339 timestamps.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Ollama release whose API this runner follows (`GET /api/version`).
pub const OLLAMA_VERSION: &str = "0.12.0";

/// `POST /api/generate`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GenerateRequest {
    /// The model name.
    pub model: Option<String>,
    /// The prompt (a user message through the chat template unless `raw`).
    pub prompt: Option<String>,
    /// A system message put before the prompt.
    pub system: Option<String>,
    /// Use the prompt as is, without the chat template.
    pub raw: bool,
    /// Stream NDJSON chunks (the default) or answer with one object.
    pub stream: Option<bool>,
    /// Sampling and context options.
    pub options: Option<Map<String, Value>>,
    /// Structured output (not supported: refused when set).
    pub format: Option<Value>,
    /// Images (not supported: refused when not empty).
    pub images: Option<Vec<Value>>,
    /// A Go template overriding the model's (not supported: refused when not empty).
    pub template: Option<String>,
    /// The context of an earlier answer (not supported: refused when not empty).
    pub context: Option<Vec<Value>>,
    /// Fill-in-the-middle suffix (not supported: refused when not empty).
    pub suffix: Option<String>,
    /// Thinking (the bundled models do not think: refused when true).
    pub think: Option<Value>,
}

/// One message of `POST /api/chat`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Images (not supported: refused when not empty).
    #[serde(skip_serializing)]
    pub images: Option<Vec<Value>>,
}

/// `POST /api/chat`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatRequest {
    /// The model name.
    pub model: Option<String>,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Stream NDJSON chunks (the default) or answer with one object.
    pub stream: Option<bool>,
    /// Sampling and context options.
    pub options: Option<Map<String, Value>>,
    /// Structured output (not supported: refused when set).
    pub format: Option<Value>,
    /// Tools (not supported: refused when not empty).
    pub tools: Option<Vec<Value>>,
    /// Thinking (the bundled models do not think: refused when true).
    pub think: Option<Value>,
}

/// `POST /api/show`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowRequest {
    /// The model name.
    pub model: Option<String>,
    /// The model name (older clients).
    pub name: Option<String>,
    /// Long arrays in `model_info` in full.
    pub verbose: bool,
}

/// The sampling and context options of one request, Ollama's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Tokens to generate at most; zero or negative: until the end of text or a full context.
    pub num_predict: i64,
    /// Sampling temperature; zero or less is greedy (deterministic).
    pub temperature: f32,
    /// Top-k (zero or less: off).
    pub top_k: i32,
    /// Top-p (1: off).
    pub top_p: f32,
    /// Min-p (0: off).
    pub min_p: f32,
    /// The sampler's seed; `None` draws one at random.
    pub seed: Option<u32>,
    /// The answer ends before the first of these strings.
    pub stop: Vec<String>,
    /// The context length for this request (`None`: the runner's `--ctx`).
    pub num_ctx: Option<u32>,
    /// Repetition penalty (1: off).
    pub repeat_penalty: f32,
    /// How many of the last tokens the penalties look at.
    pub repeat_last_n: i32,
    /// Frequency penalty (0: off).
    pub frequency_penalty: f32,
    /// Presence penalty (0: off).
    pub presence_penalty: f32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            num_predict: -1,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            seed: None,
            stop: Vec::new(),
            num_ctx: None,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
        }
    }
}

fn int(k: &str, v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| format!("option {k:?} must be an integer")),
        _ => Err(format!("option {k:?} must be an integer, found {v}")),
    }
}

fn float(k: &str, v: &Value) -> Result<f32, String> {
    match v.as_f64() {
        Some(f) if f.is_finite() => Ok(f as f32),
        _ => Err(format!("option {k:?} must be a number, found {v}")),
    }
}

fn clamp_i32(x: i64) -> i32 {
    i32::try_from(x.clamp(i64::from(i32::MIN), i64::from(i32::MAX))).unwrap_or_default()
}

/// Reads a request's `options`: Ollama's defaults for what is absent or `null`, an error for a
/// known option of the wrong type, unknown options ignored (as Ollama does).
pub fn parse_options(m: Option<&Map<String, Value>>) -> Result<Options, String> {
    let mut o = Options::default();
    let Some(m) = m else { return Ok(o) };
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "num_predict" => o.num_predict = int(k, v)?,
            "temperature" => o.temperature = float(k, v)?,
            "top_k" => o.top_k = clamp_i32(int(k, v)?),
            "top_p" => o.top_p = float(k, v)?,
            "min_p" => o.min_p = float(k, v)?,
            // Ollama: -1 (the default) means a random seed; other values are used modulo 2^32.
            "seed" => {
                let s = int(k, v)?;
                o.seed = (s >= 0).then_some((s & 0xffff_ffff) as u32);
            }
            "stop" => {
                o.stop = match v {
                    Value::Array(a) => a
                        .iter()
                        .map(|s| {
                            s.as_str().map(str::to_string).ok_or_else(|| {
                                format!("option \"stop\" must hold strings, found {s}")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Value::String(s) => vec![s.clone()],
                    _ => {
                        return Err(format!(
                            "option \"stop\" must be a list of strings, found {v}"
                        ));
                    }
                }
            }
            "num_ctx" => {
                let n = int(k, v)?;
                o.num_ctx = (n > 0).then(|| u32::try_from(n).unwrap_or(u32::MAX));
            }
            "repeat_penalty" => o.repeat_penalty = float(k, v)?,
            "repeat_last_n" => o.repeat_last_n = clamp_i32(int(k, v)?),
            "frequency_penalty" => o.frequency_penalty = float(k, v)?,
            "presence_penalty" => o.presence_penalty = float(k, v)?,
            _ => {} // unknown or unsupported: ignored, like Ollama
        }
    }
    Ok(o)
}

/// A model name as Ollama compares them: trimmed, lower case, `:latest` when there is no tag.
pub fn normalize_name(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    let last = name.rsplit('/').next().unwrap_or_default();
    if last.contains(':') {
        name
    } else {
        format!("{name}:latest")
    }
}

/// Checks a model name given on the command line (`NAME[:TAG]`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.matches(':').count() <= 1
        && !name.starts_with(':')
        && !name.ends_with(':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
}

/// Why an answer ended, as Ollama's `done_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DoneReason {
    /// End of text or a stop string.
    Stop,
    /// `num_predict` reached or the context is full.
    Length,
    /// An empty request only loaded the model.
    Load,
}

/// The statistics Ollama puts in the last object of an answer (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// From receiving the request to the end of the answer.
    pub total_duration: u64,
    /// Getting the model ready (here: preparing the context).
    pub load_duration: u64,
    /// Tokens in the prompt.
    pub prompt_eval_count: u64,
    /// Evaluating the prompt.
    pub prompt_eval_duration: u64,
    /// Tokens generated.
    pub eval_count: u64,
    /// Generating them.
    pub eval_duration: u64,
}

/// A duration in whole nanoseconds, at least 1 (Ollama's clients divide by these).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// `t` as RFC 3339 in UTC with nanoseconds, like Ollama's `created_at`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(i64::try_from(days).unwrap_or_default());
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `{"error": message}`, Ollama's error body.
pub fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_defaults_and_overrides() {
        assert_eq!(parse_options(None).unwrap(), Options::default());
        let m = json!({"num_predict": 64, "temperature": 0, "seed": 42, "stop": ["a", "b"],
                       "num_ctx": 512.0, "top_k": 1, "top_p": 0.5, "repeat_penalty": 1.0,
                       "mirostat": 2, "numa": true, "temperature_x": "y", "min_p": null});
        let o = parse_options(m.as_object()).unwrap();
        assert_eq!(o.num_predict, 64);
        assert_eq!(o.temperature, 0.0);
        assert_eq!(o.seed, Some(42));
        assert_eq!(o.stop, vec!["a", "b"]);
        assert_eq!(o.num_ctx, Some(512));
        assert_eq!(o.top_k, 1);
        assert_eq!(o.top_p, 0.5);
        assert_eq!(o.repeat_penalty, 1.0);
        assert_eq!(o.min_p, 0.0);
        assert_eq!(
            parse_options(json!({"seed": -1}).as_object()).unwrap().seed,
            None
        );
    }

    #[test]
    fn options_of_the_wrong_type_are_refused() {
        for bad in [
            json!({"num_predict": "64"}),
            json!({"temperature": [1]}),
            json!({"stop": [1]}),
            json!({"stop": 3}),
        ] {
            assert!(parse_options(bad.as_object()).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_like_ollama() {
        assert_eq!(normalize_name("smollm2"), "smollm2:latest");
        assert_eq!(normalize_name("SmolLM2:135M "), "smollm2:135m");
        assert_eq!(normalize_name("library/x:1"), "library/x:1");
        assert_eq!(normalize_name("host:5000/x"), "host:5000/x:latest");
        assert!(valid_name("smollm2:135m"));
        assert!(valid_name("smollm2"));
        for bad in ["", ":x", "x:", "a:b:c", "a b", "a=b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5); // 2024-02-29T23:59:59
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
