//! The receipt log, offline (docs/log.md): a whole log file checked record by record
//! ([`secllama_protocol::receipt_log`]: the identity first, every head signed by it over exactly
//! the entries before it, counters that only grow), optionally against the log key an attestation
//! document bound; inclusion and consistency proofs between the file's signed heads
//! ([`secllama_protocol::rfc9162`]).

use secllama_protocol::cose::CoseP256Key;
use secllama_protocol::receipt_log::{self, Kind, Verified};
use secllama_protocol::rfc9162::{self, Hash};
use secllama_protocol::tree_head::TreeHead;

/// A log file that does not verify, or a request it cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum LogVerifyError {
    /// The records do not verify.
    #[error("{0}")]
    Records(#[from] secllama_protocol::ProtocolError),
    /// A proof request or proof failed.
    #[error("{0}")]
    Proof(#[from] rfc9162::Rfc9162Error),
    /// Something expected is not in the file.
    #[error("{what}: expected {expected}, found {found}")]
    Missing {
        /// The check.
        what: &'static str,
        /// What was expected.
        expected: String,
        /// What is there.
        found: String,
    },
}

/// What a verified log file holds.
#[derive(Debug, Clone)]
pub struct LogFileReport {
    /// The verified records.
    pub log: Verified,
    /// Entry bodies (receipts), in order.
    pub entries: Vec<Vec<u8>>,
    /// Bytes after the last complete record up to the last non-zero byte (a write torn by a
    /// crash; 0 normally). Zeros past the log (a log disk's free space) are not counted.
    pub torn_tail: u64,
}

impl LogFileReport {
    /// The head of exactly `size` entries.
    pub fn head_of_size(&self, size: u64) -> Result<&TreeHead, LogVerifyError> {
        self.log
            .heads
            .iter()
            .map(|h| &h.head)
            .find(|h| h.size == size)
            .ok_or_else(|| LogVerifyError::Missing {
                what: "tree head",
                expected: format!("a signed head of size {size}"),
                found: format!(
                    "heads of sizes {:?}",
                    self.log
                        .heads
                        .iter()
                        .map(|h| h.head.size)
                        .collect::<Vec<_>>()
                ),
            })
    }
}

/// Verifies a whole log file's bytes. With `log_key` (the key an attestation document bound),
/// the file's identity must be that key.
pub fn verify_file(
    bytes: &[u8],
    log_key: Option<&CoseP256Key>,
) -> Result<LogFileReport, LogVerifyError> {
    let parsed = receipt_log::parse(bytes)?;
    let log = receipt_log::verify(&parsed.records)?;
    let Some(identity) = &log.identity else {
        return Err(LogVerifyError::Missing {
            what: "log identity",
            expected: "an identity record first".into(),
            found: "an empty file".into(),
        });
    };
    if let Some(k) = log_key
        && identity.key != *k
    {
        return Err(LogVerifyError::Missing {
            what: "log identity",
            expected: format!("the attested log key {}", k.kid()?.to_hex()),
            found: format!("key {}", identity.key.kid()?.to_hex()),
        });
    }
    if log.heads.is_empty() {
        return Err(LogVerifyError::Missing {
            what: "tree heads",
            expected: "at least the head written at creation".into(),
            found: "none".into(),
        });
    }
    let entries = parsed
        .records
        .iter()
        .filter(|r| r.kind == Kind::Entry)
        .map(|r| r.body.clone())
        .collect();
    Ok(LogFileReport {
        log,
        entries,
        torn_tail: bytes
            .get(usize::try_from(parsed.valid_len).unwrap_or(usize::MAX)..)
            .and_then(|tail| tail.iter().rposition(|&b| b != 0))
            .map_or(0, |last| last as u64 + 1),
    })
}

/// An inclusion proof checked against a signed head.
#[derive(Debug, Clone)]
pub struct InclusionCheck {
    /// The entry's leaf hash.
    pub leaf: Hash,
    /// The path, nearest sibling first.
    pub path: Vec<Hash>,
    /// The head it was checked against.
    pub head: TreeHead,
}

/// The inclusion proof of entry `index` in the file's signed head of `size` entries, built from
/// the file and verified against that head's root.
pub fn prove_inclusion(
    report: &LogFileReport,
    index: u64,
    size: u64,
) -> Result<InclusionCheck, LogVerifyError> {
    let head = *report.head_of_size(size)?;
    let path = report.log.tree.inclusion_proof(index, size)?;
    let leaf = report
        .log
        .tree
        .leaf(index)
        .ok_or_else(|| LogVerifyError::Missing {
            what: "entry",
            expected: format!("index below {}", report.log.tree.len()),
            found: index.to_string(),
        })?;
    rfc9162::verify_inclusion(&leaf, index, size, &path, &head.root.0)?;
    Ok(InclusionCheck { leaf, path, head })
}

/// A consistency proof checked between two signed heads.
#[derive(Debug, Clone)]
pub struct ConsistencyCheck {
    /// The proof.
    pub proof: Vec<Hash>,
    /// The earlier head.
    pub from: TreeHead,
    /// The later head.
    pub to: TreeHead,
}

/// The consistency proof between the file's signed heads of `from` and `to` entries, verified
/// against both roots.
pub fn prove_consistency(
    report: &LogFileReport,
    from: u64,
    to: u64,
) -> Result<ConsistencyCheck, LogVerifyError> {
    let first = *report.head_of_size(from)?;
    let second = *report.head_of_size(to)?;
    let proof = report.log.tree.consistency_proof(from, to)?;
    rfc9162::verify_consistency(from, to, &first.root.0, &second.root.0, &proof)?;
    Ok(ConsistencyCheck {
        proof,
        from: first,
        to: second,
    })
}
