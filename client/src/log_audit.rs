//! Checking each receipt against the enclave's receipt log (docs/log.md): a signed tree head that
//! covers the receipt's index, verified under the log key the attestation document bound; the
//! receipt's inclusion proof in that head (RFC 9162 §2.1.3.2); and, against the last head kept
//! for the same log, a counter that did not go back and a consistency proof (§2.1.4.2). Heads are
//! kept in memory and, with a heads file, across runs (one JSON line per head: `{"log_id", "head"}`
//! with the COSE_Sign1 in hex), so a log rewritten between two runs is caught too.

use crate::transport::{Endpoint, problem_detail, read_limited};
use anyhow::{Context, anyhow, bail};
use secllama_protocol::cose::CoseP256Key;
use secllama_protocol::rfc9162::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use secllama_protocol::tree_head::{TreeHead, verify_tree_head};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for a head that covers a new receipt (the enclave signs at most one a second).
pub const HEAD_WAIT: Duration = Duration::from_secs(5);

/// Largest log endpoint answer (a proof is at most 63 hashes).
const MAX_LOG_ANSWER: usize = 16 * 1024;

/// The log could not be reached or did not answer in time (transport failure, HTTP 5xx, no head
/// covering the entry yet): not evidence against it, unlike every other audit error. Callers that
/// can wait retry; `generate` fails.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Whether an audit error is [`Unavailable`] rather than a failed check.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Unavailable>().is_some())
}

/// What one check established.
#[derive(Debug, Clone)]
pub struct Included {
    /// The receipt's index.
    pub index: u64,
    /// The head it was proven in.
    pub head: TreeHead,
    /// The kept head the new one was proven consistent with (None for the first of this log).
    pub consistent_with: Option<TreeHead>,
}

/// Audits receipts of one log (one log key).
#[derive(Debug)]
pub struct LogAuditor {
    key: CoseP256Key,
    log_id: String,
    last: Option<TreeHead>,
    heads_file: Option<PathBuf>,
}

impl LogAuditor {
    /// An auditor for the log of `key` (the attestation document's `log.key`); with `heads_file`,
    /// the last head kept there for this log is the starting point, and new heads are appended.
    pub fn new(key: CoseP256Key, heads_file: Option<&Path>) -> anyhow::Result<Self> {
        let log_id = key.kid()?.to_hex();
        let mut last = None;
        if let Some(path) = heads_file
            && path.exists()
        {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading kept heads {}", path.display()))?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: Value = serde_json::from_str(line)
                    .with_context(|| format!("{} line {}: expected JSON", path.display(), n + 1))?;
                if v["log_id"].as_str() != Some(log_id.as_str()) {
                    continue;
                }
                let bytes =
                    hex::decode(v["head"].as_str().unwrap_or_default()).with_context(|| {
                        format!("{} line {}: head: expected hex", path.display(), n + 1)
                    })?;
                let head = verify_tree_head(&bytes, &key).with_context(|| {
                    format!(
                        "{} line {}: a kept head that does not verify",
                        path.display(),
                        n + 1
                    )
                })?;
                last = Some(head);
            }
        }
        Ok(Self {
            key,
            log_id,
            last,
            heads_file: heads_file.map(Path::to_path_buf),
        })
    }

    /// The last head kept.
    pub fn last(&self) -> Option<&TreeHead> {
        self.last.as_ref()
    }

    async fn get(endpoint: &Endpoint, path: &str) -> anyhow::Result<Value> {
        let unavailable = |e: anyhow::Error| anyhow::Error::new(Unavailable(format!("{e:#}")));
        // A GET is idempotent: one retry covers a kept-alive connection the other side closed
        // meanwhile (hyper reports it as a request that never completed).
        let resp = match endpoint.send("GET", path, None, Vec::new()).await {
            Ok(r) => r,
            Err(_) => endpoint
                .send("GET", path, None, Vec::new())
                .await
                .map_err(unavailable)?,
        };
        let status = resp.status();
        let body = read_limited(resp.into_body(), MAX_LOG_ANSWER)
            .await
            .map_err(unavailable)?;
        if status.is_server_error() {
            return Err(unavailable(anyhow!(
                "GET {path}: HTTP {status}: {}",
                problem_detail(&body)
            )));
        }
        if !status.is_success() {
            bail!("GET {path}: HTTP {status}: {}", problem_detail(&body));
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: expected JSON"))
    }

    async fn head(&self, endpoint: &Endpoint) -> anyhow::Result<(TreeHead, Vec<u8>)> {
        let v = Self::get(endpoint, "/log/head").await?;
        let bytes = hex::decode(v["head"].as_str().unwrap_or_default())
            .context("GET /log/head: head: expected hex")?;
        let head = verify_tree_head(&bytes, &self.key)
            .context("GET /log/head: expected a head signed by the attested log key")?;
        Ok((head, bytes))
    }

    /// Checks `receipt` (log `index`): waits up to [`HEAD_WAIT`] for a head that covers it,
    /// proves it consistent with the kept head and the receipt included in it, then keeps it.
    pub async fn check(
        &mut self,
        endpoint: &Endpoint,
        receipt: &[u8],
        index: u64,
    ) -> anyhow::Result<Included> {
        self.check_batch(endpoint, &[(receipt.to_vec(), index)])
            .await
    }

    /// As [`LogAuditor::check`] for several receipts against one head (the first that covers
    /// them all); returns what the last one established.
    pub async fn check_batch(
        &mut self,
        endpoint: &Endpoint,
        receipts: &[(Vec<u8>, u64)],
    ) -> anyhow::Result<Included> {
        let max = receipts
            .iter()
            .map(|(_, i)| *i)
            .max()
            .ok_or_else(|| anyhow!("log: no receipt to check"))?;
        let deadline = tokio::time::Instant::now() + HEAD_WAIT;
        let (head, bytes) = loop {
            let (head, bytes) = self.head(endpoint).await?;
            // A head behind the kept one is a rollback at once, not a head still to come.
            self.not_rolled_back(&head)?;
            if head.size > max {
                break (head, bytes);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow::Error::new(Unavailable(format!(
                    "log: no signed head covers entry {max} within {HEAD_WAIT:?} (the latest has {} entries)",
                    head.size
                ))));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let consistent_with = self.consistent(endpoint, &head).await?;
        for (receipt, index) in receipts {
            let path = format!("/log/proof?index={index}&size={}", head.size);
            let v = Self::get(endpoint, &path).await?;
            let proof = hashes(&v["path"]).with_context(|| format!("GET {path}: path"))?;
            verify_inclusion(&leaf_hash(receipt), *index, head.size, &proof, &head.root.0)
                .map_err(|e| {
                    anyhow!(
                        "log: the receipt at index {index} is not in the signed head of {} entries: {e}",
                        head.size
                    )
                })?;
        }
        self.keep(head, &bytes)?;
        Ok(Included {
            index: max,
            head,
            consistent_with,
        })
    }

    /// Refuses a head with fewer entries or a lower TPM counter than the kept one.
    fn not_rolled_back(&self, head: &TreeHead) -> anyhow::Result<()> {
        if let Some(prev) = self.last
            && (head.counter < prev.counter || head.size < prev.size)
        {
            bail!(
                "log: rolled back: a kept head has {} entries and counter {}, the enclave's head {} entries and counter {}",
                prev.size,
                prev.counter,
                head.size,
                head.counter
            );
        }
        Ok(())
    }

    /// The new head against the kept one: same log, counter not lower, size not lower, and a
    /// consistency proof between them.
    async fn consistent(
        &self,
        endpoint: &Endpoint,
        head: &TreeHead,
    ) -> anyhow::Result<Option<TreeHead>> {
        let Some(prev) = self.last else {
            return Ok(None);
        };
        self.not_rolled_back(head)?;
        let proof = if prev.size == 0 || prev.size == head.size {
            Vec::new()
        } else {
            let path = format!("/log/consistency?from={}&to={}", prev.size, head.size);
            let v = Self::get(endpoint, &path).await?;
            hashes(&v["proof"]).with_context(|| format!("GET {path}: proof"))?
        };
        verify_consistency(prev.size, head.size, &prev.root.0, &head.root.0, &proof).map_err(
            |e| {
                anyhow!(
                    "log: the head of {} entries does not extend the kept head of {}: {e}",
                    head.size,
                    prev.size
                )
            },
        )?;
        Ok(Some(prev))
    }

    fn keep(&mut self, head: TreeHead, bytes: &[u8]) -> anyhow::Result<()> {
        if self.last.is_some_and(|l| l.counter == head.counter) {
            return Ok(());
        }
        if let Some(path) = &self.heads_file {
            let line = serde_json::json!({"log_id": self.log_id, "head": hex::encode(bytes)});
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening kept heads {}", path.display()))?;
            writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
        }
        self.last = Some(head);
        Ok(())
    }
}

fn hashes(v: &Value) -> anyhow::Result<Vec<Hash>> {
    let items = v
        .as_array()
        .ok_or_else(|| anyhow!("expected an array of hex hashes"))?;
    if items.len() > secllama_protocol::rfc9162::MAX_PROOF_HASHES {
        bail!("expected at most 63 hashes, found {}", items.len());
    }
    items
        .iter()
        .map(|h| {
            let b = hex::decode(h.as_str().unwrap_or_default())?;
            b.try_into()
                .map_err(|b: Vec<u8>| anyhow!("expected 32-byte hashes, found {} bytes", b.len()))
        })
        .collect()
}
