//! I-JSON (RFC 7493) §2.3 for request bodies: object member names must be unique, at any depth.
//!
//! The policy decides on the body and the agent forwards the same bytes to the runner, so both
//! must read the same thing. JSON (RFC 8259 §4) leaves duplicate names to the parser: serde_json
//! keeps the last, Go's `encoding/json` (Ollama) merges duplicate objects. A body such as
//! `{"options":{"temperature":2},"options":{"num_predict":8}}` would then be checked as one request
//! and answered as another. Such a body is refused, never guessed at.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Checks that `body` is JSON whose objects have unique member names at every depth.
///
/// Errors: the JSON error, or `duplicate member "NAME" in PATH` (`PATH` like `$.options` or
/// `$.messages[1]`).
pub fn check_unique_names(body: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Check { path: "$".into() }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Walks one value, refusing duplicate names; `path` names the value in errors.
struct Check {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(Check {
                path: format!("{}[{i}]", self.path),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            let path = format!("{}.{name}", self.path);
            if !seen.insert(name) {
                let name = path.rsplit_once('.').map_or(path.as_str(), |(_, n)| n);
                return Err(de::Error::custom(format!(
                    "duplicate member \"{name}\" in {}",
                    self.path
                )));
            }
            map.next_value_seed(Check { path })?;
        }
        Ok(())
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
            let e = check_unique_names(body.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn unique_names_pass_also_when_repeated_in_sibling_objects() {
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"options":{"num_predict":8}}"#,
            r#"[1,"x",null,true,{"a":{"a":{"a":1}}}]"#,
            "{}",
        ] {
            check_unique_names(body.as_bytes()).unwrap();
        }
    }
}
