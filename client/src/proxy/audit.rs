//! The proxy's receipt log audit (docs/log.md): every verified receipt is queued for a background
//! task that proves it included in a signed head of the enclave's log, each head consistent with
//! the one before ([`crate::log_audit::LogAuditor`], batched: one head per batch). A failure is
//! final: the proxy answers every later request with `502` naming it, since an enclave whose log
//! does not hold its receipts cannot be trusted with more.

use crate::log_audit::LogAuditor;
use crate::transport::Endpoint;
use secllama_protocol::cose::CoseP256Key;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Receipts waiting for their audit; past it the audit has fallen too far behind and fails.
pub const AUDIT_QUEUE: usize = 8192;

/// How long an unreachable log is retried before the audit fails.
pub const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Largest batch proven against one head.
const BATCH: usize = 256;

/// Receipts and their log indices.
type Receipts = Vec<(Vec<u8>, u64)>;

struct Item {
    key: CoseP256Key,
    receipt: Vec<u8>,
    index: u64,
}

/// The handle the proxy keeps.
#[derive(Clone)]
pub struct Audit {
    tx: tokio::sync::mpsc::Sender<Item>,
    failed: Arc<RwLock<Option<String>>>,
    audited: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit(..)")
    }
}

impl Audit {
    /// Starts the audit task on the current runtime.
    pub fn spawn(endpoint: Endpoint, heads: Option<PathBuf>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(AUDIT_QUEUE);
        let failed = Arc::new(RwLock::new(None));
        let audited = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (f, n) = (failed.clone(), audited.clone());
        tokio::spawn(async move {
            let mut auditors: HashMap<[u8; 64], LogAuditor> = HashMap::new();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(i) => batch.push(i),
                        Err(_) => break,
                    }
                }
                // An enclave that is down or slow is retried (it is not evidence against the
                // log); for at most RETRY_FOR, after which withholding heads is a failure too.
                let started = tokio::time::Instant::now();
                let mut wait = std::time::Duration::from_millis(500);
                let result = loop {
                    match audit(&endpoint, heads.as_deref(), &mut auditors, &batch).await {
                        Err((why, true)) if started.elapsed() < RETRY_FOR => {
                            warn(&format!(
                                "secllama proxy: receipt log audit waits ({why}); retrying in {wait:?}"
                            ));
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(std::time::Duration::from_secs(30));
                        }
                        other => break other.map_err(|(why, _)| why),
                    }
                };
                match result {
                    Ok(()) => {
                        n.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(why) => {
                        warn(&format!("secllama proxy: receipt log audit FAILED: {why}"));
                        if let Ok(mut g) = f.write() {
                            *g = Some(why);
                        }
                        return;
                    }
                }
            }
        });
        Self {
            tx,
            failed,
            audited,
        }
    }

    /// Queues a verified receipt (log `index`) of the log whose key is `key`.
    pub fn submit(&self, key: CoseP256Key, receipt: &[u8], index: u64) {
        let item = Item {
            key,
            receipt: receipt.to_vec(),
            index,
        };
        if self.tx.try_send(item).is_err()
            && let Ok(mut g) = self.failed.write()
            && g.is_none()
        {
            *g = Some(format!(
                "the audit fell {AUDIT_QUEUE} receipts behind, or stopped"
            ));
        }
    }

    /// Why the audit failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.read().ok().and_then(|g| g.clone())
    }

    /// Receipts proven included so far.
    pub fn audited(&self) -> u64 {
        self.audited.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn audit(
    endpoint: &Endpoint,
    heads: Option<&std::path::Path>,
    auditors: &mut HashMap<[u8; 64], LogAuditor>,
    batch: &[Item],
) -> Result<(), (String, bool)> {
    let mut by_key: HashMap<[u8; 64], (CoseP256Key, Receipts)> = HashMap::new();
    for i in batch {
        let mut id = [0u8; 64];
        id[..32].copy_from_slice(&i.key.x);
        id[32..].copy_from_slice(&i.key.y);
        by_key
            .entry(id)
            .or_insert_with(|| (i.key, Vec::new()))
            .1
            .push((i.receipt.clone(), i.index));
    }
    for (id, (key, items)) in by_key {
        let auditor = match auditors.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(LogAuditor::new(key, heads).map_err(|e| (format!("{e:#}"), false))?)
            }
        };
        auditor
            .check_batch(endpoint, &items)
            .await
            .map_err(|e| (format!("{e:#}"), crate::log_audit::is_unavailable(&e)))?;
    }
    Ok(())
}

#[allow(clippy::print_stderr)]
fn warn(msg: &str) {
    eprintln!("{msg}");
}
