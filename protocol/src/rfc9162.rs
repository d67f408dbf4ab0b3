//! Merkle tree hashing, inclusion proofs and consistency proofs of RFC 9162 §2.1 (the Certificate
//! Transparency v2 log; the same hashing as RFC 6962 §2.1), with SHA-256:
//!
//! - leaf hash `SHA-256(0x00 ‖ entry)`, interior node `SHA-256(0x01 ‖ left ‖ right)`, the empty
//!   tree `SHA-256("")` (§2.1.1);
//! - [`Tree`]: an append-only list of leaf hashes that answers the root of any earlier size,
//!   inclusion paths (§2.1.3.1) and consistency proofs (§2.1.4.1), each in O(log² n) hashes
//!   (perfect subtrees are kept: 2 × 32 bytes per entry);
//! - [`verify_inclusion`] (§2.1.3.2) and [`verify_consistency`] (§2.1.4.2): the RFC's
//!   algorithms, which never panic and bound every proof to 63 hashes.
//!
//! Why our own code: the maintained Rust crate for this (`ct-merkle`) keeps every entry in memory
//! (receipts, not hashes), its 0.3 line needs `digest` 0.11 (we are pinned to 0.10), and its proof
//! builders panic on sizes a hostile caller can choose. It is the second implementation the tests
//! compare this module with, beside the transparency-dev/merkle test vectors.

use sha2::{Digest, Sha256};

/// A SHA-256 node or root hash.
pub type Hash = [u8; 32];

/// Longest proof accepted: a tree of 2^63 entries needs at most 63 hashes.
pub const MAX_PROOF_HASHES: usize = 63;

/// A proof request or proof that cannot be answered or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc9162Error {
    /// The sizes or index asked for are outside the tree.
    #[error("{what}: expected {expected}, found {found}")]
    Range {
        /// The request.
        what: &'static str,
        /// What is valid.
        expected: String,
        /// What was asked.
        found: String,
    },
    /// A proof does not verify.
    #[error("{what} proof does not verify: {reason}")]
    Proof {
        /// `inclusion` or `consistency`.
        what: &'static str,
        /// Which step failed.
        reason: String,
    },
}

/// `SHA-256(0x00 ‖ entry)` (§2.1.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)` (§2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree of leaf hashes. `levels[k][i]` is the hash of the perfect subtree
/// over entries `[i·2^k, (i+1)·2^k)`; every range the RFC's recursions ask for is made of them.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends an entry's leaf hash ([`leaf_hash`]); returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.len();
        let mut node = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(node);
            if row.len() % 2 == 1 {
                break;
            }
            node = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
        index
    }

    /// The leaf hash of entry `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The hash of entries `[start, end)`, `start < end ≤ len`, where `start` is a multiple of
    /// the largest power of two below `end - start` (true of every range the RFC recursions form).
    fn mth(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() {
            let level = n.trailing_zeros() as usize;
            // In range: the perfect subtree [start, end) is complete because end ≤ len.
            if let Some(h) = self
                .levels
                .get(level)
                .and_then(|row| row.get((start >> level) as usize))
            {
                return *h;
            }
        }
        if n <= 1 {
            // Unreachable for the ranges the callers form (start < end ≤ len): a single leaf is
            // always in levels[0].
            return [0; 32];
        }
        let k = split(n);
        node_hash(&self.mth(start, start + k), &self.mth(start + k, end))
    }

    /// The root hash of the first `size` entries (`size ≤ len`; [`empty_root`] for 0).
    pub fn root(&self, size: u64) -> Result<Hash, Rfc9162Error> {
        if size > self.len() {
            return Err(Rfc9162Error::Range {
                what: "tree size",
                expected: format!("at most {}", self.len()),
                found: size.to_string(),
            });
        }
        Ok(if size == 0 {
            empty_root()
        } else {
            self.mth(0, size)
        })
    }

    /// The inclusion path of entry `index` in the tree of the first `size` entries (§2.1.3.1),
    /// nearest sibling first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Rfc9162Error> {
        if size > self.len() || index >= size {
            return Err(Rfc9162Error::Range {
                what: "inclusion proof",
                expected: format!("index < size ≤ {}", self.len()),
                found: format!("index {index}, size {size}"),
            });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Ok(path)
    }

    /// PATH(m, D[start:end]), appended deepest first.
    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.mth(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.mth(start, start + k));
        }
    }

    /// The consistency proof between the trees of the first `first` and `second` entries
    /// (§2.1.4.1; empty when `first` is 0 or equals `second`).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, Rfc9162Error> {
        if second > self.len() || first > second {
            return Err(Rfc9162Error::Range {
                what: "consistency proof",
                expected: format!("first ≤ second ≤ {}", self.len()),
                found: format!("first {first}, second {second}"),
            });
        }
        let mut proof = Vec::new();
        if first > 0 && first < second {
            self.subproof(first, 0, second, true, &mut proof);
        }
        Ok(proof)
    }

    /// SUBPROOF(m, D[start:end], b).
    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.mth(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out);
            out.push(self.mth(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.mth(start, start + k));
        }
    }
}

fn proof_error(what: &'static str, reason: impl Into<String>) -> Rfc9162Error {
    Rfc9162Error::Proof {
        what,
        reason: reason.into(),
    }
}

/// Verifies that `leaf` (a [`leaf_hash`]) is entry `index` of the tree of `size` entries whose
/// root is `root`, with the inclusion path `proof` (§2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Rfc9162Error> {
    const W: &str = "inclusion";
    if index >= size {
        return Err(proof_error(
            W,
            format!("index {index} is not below the tree size {size}"),
        ));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(proof_error(
            W,
            format!("{} hashes (at most {MAX_PROOF_HASHES})", proof.len()),
        ));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(proof_error(W, "more hashes than the path has nodes"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(proof_error(W, "fewer hashes than the path has nodes"));
    }
    if r != *root {
        return Err(proof_error(
            W,
            "the path leads to another root than the one given",
        ));
    }
    Ok(())
}

/// Verifies that the tree of `second` entries with root `second_root` extends the tree of
/// `first` entries with root `first_root`, with the consistency proof `proof` (§2.1.4.2). A
/// `first` of 0 is consistent with any tree (empty proof); equal sizes need equal roots and an
/// empty proof.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), Rfc9162Error> {
    const W: &str = "consistency";
    if first > second {
        return Err(proof_error(
            W,
            format!("the first size {first} is above the second {second}"),
        ));
    }
    if first == 0 || first == second {
        if !proof.is_empty() {
            return Err(proof_error(
                W,
                format!(
                    "expected an empty proof for sizes {first} and {second}, found {} hashes",
                    proof.len()
                ),
            ));
        }
        if first == second && first_root != second_root {
            return Err(proof_error(
                W,
                format!("two different roots for size {first}"),
            ));
        }
        return Ok(());
    }
    if proof.is_empty() || proof.len() > MAX_PROOF_HASHES {
        return Err(proof_error(
            W,
            format!(
                "expected 1 to {MAX_PROOF_HASHES} hashes, found {}",
                proof.len()
            ),
        ));
    }
    // Step 2: a power-of-two first tree is itself the first node of the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(proof_error(W, "more hashes than the proof has nodes"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(proof_error(W, "fewer hashes than the proof has nodes"));
    }
    if fr != *first_root {
        return Err(proof_error(
            W,
            format!("the proof does not lead to the root of size {first}"),
        ));
    }
    if sr != *second_root {
        return Err(proof_error(
            W,
            format!("the proof does not lead to the root of size {second}"),
        ));
    }
    Ok(())
}
