//! I-JSON (RFC 7493) §2.3 for request bodies: object member names must be unique, at any depth.
//!
//! The policy decides on the body and the agent forwards the same bytes to the runner, so both
//! must read the same thing. JSON (RFC 8259 §4) leaves duplicate names to the parser: serde_json
//! keeps the last, Go's `encoding/json` (Ollama) merges duplicate objects. A body such as
//! `{"options":{"temperature":2},"options":{"num_predict":8}}` would then be checked as one request
//! and answered as another. Such a body is refused, never guessed at.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `body` as JSON whose objects have unique member names at every depth (one pass: the
/// value is built while the names are checked).
///
/// Errors: the JSON error, or `duplicate member "NAME" in PATH` (`PATH` like `$.options` or
/// `$.messages[1]`).
pub fn from_slice(body: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Strict { path: "$".into() }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// Builds one value, refusing duplicate names; `path` names the value in errors.
struct Strict {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("a finite number in {}", self.path)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, items.len()),
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format!(
                    "duplicate member \"{name}\" in {}",
                    self.path
                )));
            }
            let path = format!("{}.{name}", self.path);
            let v = map.next_value_seed(Strict { path })?;
            members.insert(name, v);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn duplicates_at_any_depth_are_refused_with_their_place() {
        for (body, says) in [
            (
                r#"{"model":"m","prompt":"p","options":{"num_predict":8,"temperature":2,"num_ctx":1,"stop":["the"]},"options":{"num_predict":8}}"#,
                r#"duplicate member "options" in $"#,
            ),
            (r#"{"a":1,"a":1}"#, r#"duplicate member "a" in $"#),
            (
                r#"{"options":{"seed":1,"seed":2}}"#,
                r#"duplicate member "seed" in $.options"#,
            ),
            (
                r#"{"messages":[{"role":"user"},{"role":"user","content":"x","role":"system"}]}"#,
                r#"duplicate member "role" in $.messages[1]"#,
            ),
            // The same name spelled with an escape is the same name.
            (
                r#"{"model":"m","mod\u0065l":"n"}"#,
                r#"duplicate member "model""#,
            ),
            (r#"{"a":1} x"#, "trailing characters"),
            (r#"{"a":"#, "EOF"),
        ] {
            let e = from_slice(body.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn unique_names_pass_also_when_repeated_in_sibling_objects() {
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"options":{"num_predict":8}}"#,
            r#"[1,"x",null,true,{"a":{"a":{"a":1}}}]"#,
            r#"{"n":[-1,18446744073709551615,1.5e300,0.1],"s":"\u00e9\n"}"#,
            "{}",
        ] {
            // The same value serde_json builds.
            let ours = from_slice(body.as_bytes()).unwrap();
            assert_eq!(ours, serde_json::from_str::<Value>(body).unwrap());
        }
    }
}
