//! Ollama model names (ollama `types/model/name.go`): `[host/][namespace/]model[:tag]`, compared
//! case-insensitively, with `registry.ollama.ai`, `library` and `latest` filled in when left out.
//! The policy compares canonical names, and the runner is sent the canonical name, so `tiny`,
//! `TINY:latest` and `registry.ollama.ai/library/tiny:latest` all mean `tiny:latest` to both.

/// The registry Ollama assumes.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace Ollama assumes.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag Ollama assumes.
pub const DEFAULT_TAG: &str = "latest";
/// Longest name accepted, in bytes.
pub const MAX_NAME: usize = 350;

/// A model name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model name: expected [host/][namespace/]model[:tag] of letters, digits, '.', '-', '_', found {0:?}"
)]
pub struct BadName(pub String);

fn part_ok(p: &str, max: usize) -> bool {
    !p.is_empty()
        && p.len() <= max
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && p.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The shortest canonical form of `name`: lower case, with `:latest` when untagged and without the
/// default host and namespace (`TINY` → `tiny:latest`, `library/tiny` → `tiny:latest`,
/// `example.com/me/m:q4` stays). Digest references (`@sha256:…`) are not names here.
pub fn canonical(name: &str) -> Result<String, BadName> {
    let bad = || BadName(name.chars().take(64).collect());
    if name.len() > MAX_NAME || name.contains('@') {
        return Err(bad());
    }
    let lower = name.to_ascii_lowercase();
    // The tag follows the last ':' that has no '/' after it (a host's port has one).
    let (path, tag) = match lower.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (lower.as_str(), DEFAULT_TAG),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let (host, namespace, model) = match parts.as_slice() {
        [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
        [n, m] => (DEFAULT_HOST, *n, *m),
        [h, n, m] => (*h, *n, *m),
        _ => return Err(bad()),
    };
    let host_ok = host
        .split_once(':')
        .map_or(part_ok(host, 350), |(h, port)| {
            part_ok(h, 350) && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
    if !host_ok || !part_ok(namespace, 80) || !part_ok(model, 80) || !part_ok(tag, 80) {
        return Err(bad());
    }
    Ok(
        match (host == DEFAULT_HOST, namespace == DEFAULT_NAMESPACE) {
            (true, true) => format!("{model}:{tag}"),
            (true, false) => format!("{namespace}/{model}:{tag}"),
            (false, _) => format!("{host}/{namespace}/{model}:{tag}"),
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_resolve_as_ollama_resolves_them() {
        for (given, want) in [
            ("tiny", "tiny:latest"),
            ("TINY:latest", "tiny:latest"),
            ("Tiny:LATEST", "tiny:latest"),
            ("library/tiny", "tiny:latest"),
            ("registry.ollama.ai/library/tiny:latest", "tiny:latest"),
            ("REGISTRY.OLLAMA.AI/library/tiny", "tiny:latest"),
            ("smollm2:135m", "smollm2:135m"),
            ("me/model:q4_1", "me/model:q4_1"),
            ("registry.ollama.ai/me/model", "me/model:latest"),
            (
                "example.com:5000/me/model:v1.2",
                "example.com:5000/me/model:v1.2",
            ),
            ("hf.co/org/m-gguf:Q4_K_M", "hf.co/org/m-gguf:q4_k_m"),
        ] {
            assert_eq!(canonical(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn what_is_not_a_name_is_refused() {
        for bad in [
            "",
            ":latest",
            "tiny:",
            "a/b/c/d",
            "tiny@sha256:00",
            "ti ny",
            "tiny:la test",
            "/tiny",
            "tiny/",
            "-tiny",
            "tiny:lat/est",
            "../tiny",
            "tïny",
            &"a".repeat(400),
        ] {
            assert!(canonical(bad).is_err(), "{bad:?}");
        }
    }
}
