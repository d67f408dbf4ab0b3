//! Neutral fields (docs/policy.md "Neutral fields"): what clients send on every request that means
//! to the runner exactly what its absence means.

use super::Endpoint;
use serde_json::Value;

/// Whether `v` is a field's "none" as the field's type spells it (docs/policy.md "Neutral fields"):
/// text fields `""` or `null`; list fields `[]` or `null`; `raw` only `false` (a boolean: `null`
/// is not one to every runner). Other spellings are not neutral.
pub(super) fn is_none_value(key: &str, v: &Value) -> bool {
    match key {
        "format" | "suffix" => v.is_null() || v.as_str() == Some(""),
        "images" | "context" | "tools" => v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "raw" => *v == Value::Bool(false),
        _ => false,
    }
}

/// Fields outside the policy's that do not change the answer (docs/policy.md "Neutral fields"),
/// so clients that always send them are served: `keep_alive` (scheduling only) with any value,
/// and, only with their "none" value ([`is_none_value`]), `format`, `images`, `raw`, `context`,
/// `suffix` for generate; `format`, `tools` for chat. The runner reads the same bytes, and that
/// value means to it what the field's absence means.
pub(super) fn neutral(endpoint: Endpoint, key: &str, v: &Value) -> bool {
    match (endpoint, key) {
        (_, "keep_alive") => true,
        (Endpoint::Generate, "format" | "images" | "raw" | "context" | "suffix")
        | (Endpoint::Chat, "format" | "tools") => is_none_value(key, v),
        _ => false,
    }
}

/// Chat messages as the dataset is matched against them: an empty `images` in a message (LiteLLM
/// sends `"images": []` in every one) is the same message without it.
pub(super) fn without_neutral_message_fields(content: &Value) -> Value {
    let mut c = content.clone();
    if let Value::Array(messages) = &mut c {
        for m in messages {
            if let Value::Object(o) = m
                && o.get("images").is_some_and(|v| is_none_value("images", v))
            {
                o.remove("images");
            }
        }
    }
    c
}
