//! The receipt log's endpoints (DESIGN.md "Enclave API"; outside the sealed channel: heads and
//! proofs hold only hashes and signatures, no secret):
//!
//! | method, path | answer (JSON) |
//! |---|---|
//! | `GET /log/head` | `{"head": hex COSE_Sign1 tree head, "log_key": hex COSE_Key}`: a new head when entries arrived since the last one and it is older than one second, else the last |
//! | `GET /log/proof?index=I&size=S` | `{"index": I, "size": S, "path": [hex, …]}` (RFC 9162 §2.1.3.1) |
//! | `GET /log/consistency?from=A&to=B` | `{"from": A, "to": B, "proof": [hex, …]}` (RFC 9162 §2.1.4.1) |
//!
//! Query strings are strict: exactly the named parameters, once each, in decimal.

use crate::agent::Agent;
use crate::service::{Body, plain, plain_problem};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// Reads exactly the parameters `names` from `query`, each once, as decimal u64.
fn query_u64s<const N: usize>(query: &str, names: [&str; N]) -> Result<[u64; N], String> {
    let mut out = [None; N];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected name=value, found {pair:?}"))?;
        let i = names
            .iter()
            .position(|n| *n == k)
            .ok_or_else(|| format!("expected only {names:?}, found parameter {k:?}"))?;
        if out[i].is_some() {
            return Err(format!("expected {k} once, found it twice"));
        }
        if v.is_empty()
            || !v.bytes().all(|b| b.is_ascii_digit())
            || (v.len() > 1 && v.starts_with('0'))
        {
            return Err(format!("{k}: expected a decimal number, found {v:?}"));
        }
        out[i] = Some(v.parse::<u64>().map_err(|e| format!("{k}: {e}"))?);
    }
    let mut values = [0; N];
    for (i, v) in out.iter().enumerate() {
        values[i] =
            v.ok_or_else(|| format!("expected ?{}, missing {}", names.join("=&"), names[i]))?;
    }
    Ok(values)
}

fn hashes(h: &[[u8; 32]]) -> Vec<String> {
    h.iter().map(hex::encode).collect()
}

fn json_ok(v: &serde_json::Value) -> Response<Body> {
    plain(
        StatusCode::OK,
        "application/json",
        v.to_string().into_bytes(),
    )
}

/// `GET /log/head`.
pub async fn head(agent: Arc<Agent>) -> Response<Body> {
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || a.log_head()).await {
        Ok(Ok(head)) => {
            let key = agent
                .receipts
                .lock()
                .map_err(|_| "receipt log lock poisoned".to_string())
                .and_then(|l| l.identity().to_bytes().map_err(|e| e.to_string()));
            match key {
                Ok(k) => json_ok(&json!({"head": hex::encode(head), "log_key": hex::encode(k)})),
                Err(e) => plain_problem(StatusCode::INTERNAL_SERVER_ERROR, "Log Head Failed", e),
            }
        }
        Ok(Err(e)) => plain_problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Log Head Failed",
            format!("{e:#}"),
        ),
        Err(e) => plain_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Log Head Failed",
            e.to_string(),
        ),
    }
}

/// `GET /log/proof?index=&size=`.
pub fn proof(agent: &Agent, query: &str) -> Response<Body> {
    let [index, size] = match query_u64s(query, ["index", "size"]) {
        Ok(v) => v,
        Err(e) => return plain_problem(StatusCode::BAD_REQUEST, "Bad Proof Request", e),
    };
    let path = match agent.receipts.lock() {
        Ok(log) => log.inclusion_proof(index, size),
        Err(_) => {
            return plain_problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Proof Failed",
                "receipt log lock poisoned".into(),
            );
        }
    };
    match path {
        Ok(p) => json_ok(&json!({"index": index, "size": size, "path": hashes(&p)})),
        Err(e) => plain_problem(StatusCode::BAD_REQUEST, "Bad Proof Request", e.to_string()),
    }
}

/// `GET /log/consistency?from=&to=`.
pub fn consistency(agent: &Agent, query: &str) -> Response<Body> {
    let [from, to] = match query_u64s(query, ["from", "to"]) {
        Ok(v) => v,
        Err(e) => return plain_problem(StatusCode::BAD_REQUEST, "Bad Proof Request", e),
    };
    let proof = match agent.receipts.lock() {
        Ok(log) => log.consistency_proof(from, to),
        Err(_) => {
            return plain_problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Proof Failed",
                "receipt log lock poisoned".into(),
            );
        }
    };
    match proof {
        Ok(p) => json_ok(&json!({"from": from, "to": to, "proof": hashes(&p)})),
        Err(e) => plain_problem(StatusCode::BAD_REQUEST, "Bad Proof Request", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::query_u64s;

    #[test]
    fn queries_are_strict() {
        assert_eq!(
            query_u64s("index=3&size=10", ["index", "size"]),
            Ok([3, 10])
        );
        assert_eq!(
            query_u64s("size=10&index=0", ["index", "size"]),
            Ok([0, 10])
        );
        for bad in [
            "",
            "index=3",
            "index=3&size=10&size=11",
            "index=3&size=10&x=1",
            "index=03&size=10",
            "index=-1&size=10",
            "index=+1&size=10",
            "index=3&size=18446744073709551616",
            "index&size=1",
            "index=&size=1",
        ] {
            assert!(query_u64s(bad, ["index", "size"]).is_err(), "{bad:?}");
        }
    }
}
