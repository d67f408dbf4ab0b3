//! `GET /status`: the operator's view of a running enclave (`secllama status`), outside the sealed
//! channel. It carries counts, digests and public values only — never a prompt, an answer or a
//! key: isolation mode, agent version and uptime, the enclave digests, the quoted PCRs as they are
//! now (read from the TPM), whether the runner accepts connections, sealed requests served,
//! refused and failed, the receipt log (size, root, log id, last head) and the TPM NV counter.

use crate::agent::{Agent, LOG_COUNTER_INDEX, now_ms};
use crate::service::{Body, plain, plain_problem};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long the runner gets to accept a connection.
const RUNNER_PROBE: Duration = Duration::from_secs(2);

fn tpm_part(agent: &Agent) -> anyhow::Result<(Value, u64)> {
    let mut tpm = agent
        .tpm
        .lock()
        .map_err(|_| anyhow::anyhow!("TPM lock poisoned"))?;
    let sel = secllama_tpm::pcr::selection(&agent.banks, &agent.quote_pcrs)?;
    let values = tpm.read_pcrs(sel)?;
    let mut pcrs = BTreeMap::new();
    for (bank, v) in values {
        let bank_map: BTreeMap<String, String> = v
            .into_iter()
            .map(|(i, d)| (i.to_string(), hex::encode(d)))
            .collect();
        pcrs.insert(bank.name().to_string(), bank_map);
    }
    let counter = tpm.counter_read(LOG_COUNTER_INDEX)?;
    Ok((json!(pcrs), counter))
}

fn log_part(agent: &Agent) -> anyhow::Result<Value> {
    let log = agent
        .receipts
        .lock()
        .map_err(|_| anyhow::anyhow!("receipt log lock poisoned"))?;
    let head = log.last_head().map(|h| {
        json!({"size": h.head.size, "counter": h.head.counter, "time_ms": h.head.time_ms, "root": h.head.root.to_hex()})
    });
    Ok(json!({
        "size": log.len(),
        "root": hex::encode(log.root()),
        "log_id": log.identity().kid()?.to_hex(),
        "head": head,
    }))
}

/// The status document (blocks on the TPM: run it with `spawn_blocking`).
pub fn document(agent: &Agent, runner_reachable: Result<(), String>) -> anyhow::Result<Value> {
    let (pcrs, counter) = tpm_part(agent)?;
    let d = &agent.digests;
    let trees: BTreeMap<&str, String> = d
        .trees
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_hex()))
        .collect();
    Ok(json!({
        "status": "up",
        "isolation": agent.isolation.as_str(),
        "agent_version": env!("CARGO_PKG_VERSION"),
        "uptime_s": now_ms().saturating_sub(agent.started_ms) / 1000,
        "digests": {
            "agent": d.agent.to_hex(),
            "runner": d.runner.to_hex(),
            "model": d.model.to_hex(),
            "policy": d.policy.to_hex(),
            "config": d.config.to_hex(),
            "trees": trees,
        },
        "pcrs": pcrs,
        "runner": match runner_reachable {
            Ok(()) => json!({"address": agent.runner.to_string(), "reachable": true}),
            Err(e) => json!({"address": agent.runner.to_string(), "reachable": false, "error": e}),
        },
        "requests": {
            "served": agent.stats.served.load(Ordering::Relaxed),
            "refused": agent.stats.refused.load(Ordering::Relaxed),
            "failed": agent.stats.failed.load(Ordering::Relaxed),
        },
        "log": log_part(agent)?,
        "tpm_counter": counter,
    }))
}

/// `GET /status`.
pub async fn handle(agent: Arc<Agent>) -> Response<Body> {
    let probe = tokio::time::timeout(RUNNER_PROBE, crate::runner::Pool::connect(&agent.runner))
        .await
        .map_err(|_| format!("no connection within {RUNNER_PROBE:?}"))
        .and_then(|r| r.map(|_| ()));
    match tokio::task::spawn_blocking(move || document(&agent, probe)).await {
        Ok(Ok(v)) => plain(
            StatusCode::OK,
            "application/json",
            v.to_string().into_bytes(),
        ),
        Ok(Err(e)) => plain_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Status Failed",
            format!("{e:#}"),
        ),
        Err(e) => plain_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Status Failed",
            e.to_string(),
        ),
    }
}
