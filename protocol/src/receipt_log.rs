//! The receipt log file (DESIGN.md "Receipts and log"; docs/log.md): the bytes the enclave appends
//! on the host's disk and every verifier reads. An append-only sequence of records
//!
//! ```text
//! record := kind (1 byte) ‖ length (u32 big-endian, 1..=65536) ‖ body ‖ SHA-256(kind ‖ length ‖ body)
//! kind   := 2 log identity (first record only; [`LogIdentity`]) | 0 entry (a receipt, one leaf of
//!           the RFC 9162 tree) | 1 signed tree head ([`crate::tree_head`])
//! ```
//!
//! The checksum only tells a torn write from a complete record; the host can rewrite the file at
//! will. [`verify`] is what makes rewriting visible: every head must be signed by the identity key,
//! cover exactly the entries before it with the root it states, and count up (TPM NV counter);
//! verifiers that kept an earlier head check consistency with it ([`crate::rfc9162`]).
//!
//! [`parse`] treats a damaged end of file as a write torn by a crash (an incomplete last record,
//! a last record whose checksum fails, or a tail of zeros) and reports where the valid part ends;
//! a bad record with anything after it is corruption.

use crate::rfc9162::{Tree, leaf_hash};
use crate::tree_head::{LogIdentity, TreeHead, verify_tree_head};
use crate::{ProtocolError, Result, Sha256Digest};
use sha2::{Digest, Sha256};

/// Largest record body.
pub const MAX_BODY: usize = 64 * 1024;

/// Bytes a record adds around its body.
pub const OVERHEAD: usize = 1 + 4 + 32;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A receipt: one leaf of the Merkle tree.
    Entry,
    /// A signed tree head.
    TreeHead,
    /// The log identity (first record).
    Identity,
}

impl Kind {
    /// The kind byte.
    pub fn byte(self) -> u8 {
        match self {
            Kind::Entry => 0,
            Kind::TreeHead => 1,
            Kind::Identity => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Kind::Entry),
            1 => Some(Kind::TreeHead),
            2 => Some(Kind::Identity),
            _ => None,
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What it holds.
    pub kind: Kind,
    /// Its body.
    pub body: Vec<u8>,
    /// Byte offset of its first byte in the file.
    pub offset: u64,
}

fn checksum(kind: u8, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((body.len() as u32).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// Encodes one record; the body must be 1 to [`MAX_BODY`] bytes.
pub fn encode(kind: Kind, body: &[u8]) -> Result<Vec<u8>> {
    if body.is_empty() || body.len() > MAX_BODY {
        return Err(ProtocolError::Length {
            what: "receipt log record body".into(),
            expected: format!("1 to {MAX_BODY}"),
            found: body.len(),
        });
    }
    let mut r = Vec::with_capacity(OVERHEAD + body.len());
    r.push(kind.byte());
    r.extend_from_slice(&(body.len() as u32).to_be_bytes());
    r.extend_from_slice(body);
    r.extend_from_slice(&checksum(kind.byte(), body));
    Ok(r)
}

/// The records of a file and where its valid part ends.
#[derive(Debug)]
pub struct Parsed {
    /// Every complete record, in order.
    pub records: Vec<Record>,
    /// Length of the valid prefix: below the file's length when its end was torn.
    pub valid_len: u64,
}

/// Splits a log file's bytes into records (see the module docs for what counts as torn).
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let Some((&kind, after_kind)) = rest.split_first() else {
            break;
        };
        let Some((len, after_len)) = after_kind.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let kind = Kind::from_byte(kind).filter(|_| (1..=MAX_BODY).contains(&len));
        if kind.is_some() && after_len.len() < len + 32 {
            break;
        }
        let valid =
            kind.is_some() && after_len[len..len + 32] == checksum(rest[0], &after_len[..len]);
        let Some(kind) = kind.filter(|_| valid) else {
            // A file extended by a crash before its data landed ends in zeros; so does a log
            // disk (a block device) after a torn last write.
            let last = kind.is_some()
                && bytes
                    .get(pos + OVERHEAD + len..)
                    .is_some_and(|after| after.iter().all(|&b| b == 0));
            if last || rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(ProtocolError::mismatch(
                format!("receipt log record {} at byte offset {pos}", records.len()),
                "kind 0, 1 or 2, a length of 1 to 65536, the body and its SHA-256",
                if kind.is_some() {
                    format!(
                        "a checksum mismatch with {} more bytes after the record",
                        bytes.len() - (pos + OVERHEAD + len)
                    )
                } else {
                    format!("kind {}, length {len}, {} bytes left", rest[0], rest.len())
                },
            ));
        };
        records.push(Record {
            kind,
            body: after_len[..len].to_vec(),
            offset: pos as u64,
        });
        pos += OVERHEAD + len;
    }
    Ok(Parsed {
        records,
        valid_len: pos as u64,
    })
}

/// A signed tree head as stored: its decoded fields and its COSE_Sign1 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// What it states.
    pub head: TreeHead,
    /// The COSE_Sign1.
    pub bytes: Vec<u8>,
}

/// A verified log: its identity, its Merkle tree and every head in order.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// The identity record (None only for an empty file).
    pub identity: Option<LogIdentity>,
    /// Leaf hashes of every entry.
    pub tree: Tree,
    /// Every signed head, in file order.
    pub heads: Vec<SignedHead>,
}

impl Verified {
    /// The last head, if any.
    pub fn last_head(&self) -> Option<&SignedHead> {
        self.heads.last()
    }

    /// Checks and adds one record, as [`verify`] does for each.
    pub fn push(&mut self, record: &Record, index: usize) -> Result<()> {
        let at = || {
            format!(
                "receipt log record {index} at byte offset {}",
                record.offset
            )
        };
        match (record.kind, &self.identity) {
            (Kind::Identity, None) if index == 0 => {
                self.identity = Some(LogIdentity::from_bytes(&record.body)?);
            }
            (Kind::Identity, _) | (_, None) => {
                return Err(ProtocolError::mismatch(
                    at(),
                    "the log identity as the first record, and only there",
                    format!("{:?}", record.kind),
                ));
            }
            (Kind::Entry, Some(_)) => {
                self.tree.push(leaf_hash(&record.body));
            }
            (Kind::TreeHead, Some(identity)) => {
                let head = verify_tree_head(&record.body, &identity.key).map_err(|e| {
                    ProtocolError::mismatch(
                        at(),
                        "a tree head signed by the log identity",
                        e.to_string(),
                    )
                })?;
                let size = self.tree.len();
                if head.size != size {
                    return Err(ProtocolError::mismatch(
                        format!("{}: tree head size", at()),
                        format!("{size} (the entries before it)"),
                        head.size.to_string(),
                    ));
                }
                let root = Sha256Digest(self.tree.root(size).map_err(|e| {
                    ProtocolError::mismatch(at(), "a tree size within the log", e.to_string())
                })?);
                if head.root != root {
                    return Err(ProtocolError::mismatch(
                        format!("{}: tree head root of size {size}", at()),
                        root.to_hex(),
                        head.root.to_hex(),
                    ));
                }
                if let Some(prev) = self.heads.last()
                    && head.counter <= prev.head.counter
                {
                    return Err(ProtocolError::mismatch(
                        format!("{}: tree head counter", at()),
                        format!("above the previous head's {}", prev.head.counter),
                        head.counter.to_string(),
                    ));
                }
                self.heads.push(SignedHead {
                    head,
                    bytes: record.body.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Verifies a whole record sequence: the identity first, every head signed by it, stating exactly
/// the size and root of the entries before it, with counters that only grow.
pub fn verify(records: &[Record]) -> Result<Verified> {
    let mut v = Verified::default();
    for (i, r) in records.iter().enumerate() {
        v.push(r, i)?;
    }
    Ok(v)
}
