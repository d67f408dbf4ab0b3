//! `secllama status --url unix:PATH|http://HOST:PORT [--json]`: the operator's view of a running
//! enclave, from the agent's `GET /status` (counts, digests and public values only; never a
//! prompt, an answer or a key): up or down, isolation mode, uptime, the enclave digests, the
//! quoted PCRs as they are now, whether the runner accepts connections, sealed requests served,
//! refused and failed, the receipt log (size, root, log id, last signed head) and the TPM NV
//! counter. `--url` is the agent's socket (`listener` in its config; in process mode
//! `<state>/run/enclave.sock`) or the bridge.
//!
//! Exit codes: 0 the enclave is up, 1 it is down or answered something else (the reason is printed).

use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// Arguments of `secllama status`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  $ secllama status --url unix:/run/secllama/enclave.sock\n  $ secllama status --url http://127.0.0.1:11435 --json"
)]
pub struct Args {
    /// The enclave: unix:PATH (the agent's listener) or http://HOST:PORT (the bridge).
    #[arg(long)]
    pub url: String,
    /// Print the agent's status document as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Seconds to wait for an answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest status answer.
const MAX_ANSWER: u64 = 256 * 1024;

/// One `GET /status`, `Connection: close`, over a unix socket or TCP; returns (status, body).
fn get_status(url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let request = b"GET /status HTTP/1.1\r\nHost: enclave\r\nConnection: close\r\n\r\n";
    let mut raw = Vec::new();
    if let Some(path) = url.strip_prefix("unix:") {
        let mut s = std::os::unix::net::UnixStream::connect(path)
            .with_context(|| format!("connecting to {path}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(request)?;
        s.take(MAX_ANSWER).read_to_end(&mut raw)?;
    } else if let Some(hostport) = url.strip_prefix("http://") {
        let hostport = hostport.trim_end_matches('/');
        let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .with_context(|| format!("resolving {hostport}"))?
            .collect();
        let addr = addrs
            .first()
            .with_context(|| format!("{hostport}: no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(addr, TIMEOUT)
            .with_context(|| format!("connecting to {hostport}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(request)?;
        s.take(MAX_ANSWER).read_to_end(&mut raw)?;
    } else {
        bail!("--url: expected unix:PATH or http://HOST:PORT, found {url:?}");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .context("the answer has no HTTP status")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("expected a Content-Length answer, found a chunked one");
    }
    Ok((code, raw[split + 4..].to_vec()))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn short(v: &Value) -> String {
    let t = s(v);
    if t.chars().count() > 16 {
        format!("{}…", t.chars().take(16).collect::<String>())
    } else {
        t
    }
}

fn text(v: &Value) -> String {
    let up = v["uptime_s"].as_u64().unwrap_or(0);
    let mut out = format!(
        "enclave:  up ({} mode, agent {}, up {} h {} min)\n",
        s(&v["isolation"]),
        s(&v["agent_version"]),
        up / 3600,
        (up % 3600) / 60
    );
    let r = &v["runner"];
    out.push_str(&format!(
        "runner:   {} ({})\n",
        if r["reachable"].as_bool() == Some(true) {
            "accepts connections".to_string()
        } else {
            format!("NOT reachable: {}", s(&r["error"]))
        },
        s(&r["address"])
    ));
    let q = &v["requests"];
    out.push_str(&format!(
        "requests: {} served, {} refused, {} failed (counts only; no content is kept)\n",
        s(&q["served"]),
        s(&q["refused"]),
        s(&q["failed"])
    ));
    let l = &v["log"];
    let h = &l["head"];
    out.push_str(&format!(
        "log:      {} entries, root {}, log id {}\n          last signed head: {} entries, counter {}, at {} ms\n",
        s(&l["size"]),
        short(&l["root"]),
        short(&l["log_id"]),
        s(&h["size"]),
        s(&h["counter"]),
        s(&h["time_ms"])
    ));
    out.push_str(&format!("TPM NV counter: {}\n", s(&v["tpm_counter"])));
    if let Some(banks) = v["pcrs"].as_object() {
        for (bank, pcrs) in banks {
            if let Some(p) = pcrs.as_object() {
                for (i, d) in p {
                    out.push_str(&format!("PCR {bank}:{i:<2} {}\n", s(d)));
                }
            }
        }
    }
    if let Some(d) = v["digests"].as_object() {
        for k in ["agent", "runner", "model", "policy", "config"] {
            out.push_str(&format!("{k:<8}  sha256:{}\n", s(&d[k])));
        }
    }
    out
}

/// Runs `status`.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let (code, body) =
        get_status(&args.url).with_context(|| format!("enclave at {}: down", args.url))?;
    if code != 200 {
        bail!(
            "enclave at {}: answered HTTP {code}: {}",
            args.url,
            String::from_utf8_lossy(&body)
        );
    }
    let v: Value = serde_json::from_slice(&body)
        .with_context(|| format!("enclave at {}: expected its status as JSON", args.url))?;
    Ok(if args.json {
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        text(&v)
    })
}
