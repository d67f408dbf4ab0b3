//! Signed tree heads (STH) of the receipt log (DESIGN.md "Receipts and log"; the fields of RFC 9162
//! §4.10 `TreeHeadDataV2` plus the TPM counter): a COSE_Sign1, ES256, signed by the log's identity
//! key, content type `application/vnd.secllama.tree-head+cbor`, over the deterministic CBOR map
//!
//! ```text
//! {"log_id": SHA-256 of the log key's COSE_Key (its kid), "size": uint, "root": bstr .size 32,
//!  "time": uint (ms since the Unix epoch), "counter": uint (the TPM NV counter after this head)}
//! ```
//!
//! `root` is the RFC 9162 §2.1 Merkle tree hash of the first `size` entries ([`crate::rfc9162`]).
//! `counter` only grows from one head to the next of the same log: a head whose counter is not
//! above the last one a verifier kept comes from a rolled-back log.

use crate::cbor::{self, Key, MapReader, Value};
use crate::cose::{self, CoseP256Key, SigningKey};
use crate::{Kid, ProtocolError, Result, Sha256Digest};

/// COSE content type of a signed tree head.
pub const CONTENT_TYPE: &str = "application/vnd.secllama.tree-head+cbor";
/// Largest accepted signed tree head.
pub const MAX_TREE_HEAD_LEN: usize = 1024;

/// What a signed tree head states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// The log identity key's id (SHA-256 of its COSE_Key).
    pub log_id: Kid,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 Merkle tree hash of those entries.
    pub root: Sha256Digest,
    /// When it was signed, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The TPM NV counter's value after this head was counted.
    pub counter: u64,
}

impl TreeHead {
    /// Deterministic CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&cbor::map(vec![
            (Key::Text("log_id"), Value::Bytes(self.log_id.0.to_vec())),
            (Key::Text("size"), Value::Integer(self.size.into())),
            (Key::Text("root"), Value::Bytes(self.root.0.to_vec())),
            (Key::Text("time"), Value::Integer(self.time_ms.into())),
            (Key::Text("counter"), Value::Integer(self.counter.into())),
        ]))
    }

    /// Strict decoding: every field, nothing else, canonical CBOR.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = MapReader::new(
            "tree head",
            cbor::decode_deterministic("tree head payload", b, MAX_TREE_HEAD_LEN)?,
        )?;
        let out = Self {
            log_id: Sha256Digest(r.array(Key::Text("log_id"))?),
            size: r.uint(Key::Text("size"))?,
            root: Sha256Digest(r.array(Key::Text("root"))?),
            time_ms: r.uint(Key::Text("time"))?,
            counter: r.uint(Key::Text("counter"))?,
        };
        r.finish()?;
        Ok(out)
    }
}

/// Signs a tree head; its `log_id` must be the key's id.
pub fn sign_tree_head(head: &TreeHead, key: &SigningKey) -> Result<Vec<u8>> {
    let kid = key.public().kid()?;
    if kid != head.log_id {
        return Err(ProtocolError::mismatch(
            "tree head log_id",
            kid.to_hex(),
            head.log_id.to_hex(),
        ));
    }
    cose::sign(key, CONTENT_TYPE, &head.to_bytes()?, &[])
}

/// Verifies a signed tree head under the log key and decodes it; the protected kid and the
/// payload's `log_id` must both name that key.
pub fn verify_tree_head(sth: &[u8], log_key: &CoseP256Key) -> Result<TreeHead> {
    let policy = crate::attestation::own_policy(CONTENT_TYPE, MAX_TREE_HEAD_LEN);
    let kid = log_key.kid()?;
    let verified = cose::verify(sth, &log_key.verifying_key()?, &policy)?;
    if verified.kid.as_deref() != Some(&kid.0[..]) {
        return Err(ProtocolError::mismatch(
            "tree head protected kid",
            kid.to_hex(),
            "another or no kid",
        ));
    }
    let head = TreeHead::from_bytes(&verified.payload)?;
    if head.log_id != kid {
        return Err(ProtocolError::mismatch(
            "tree head log_id",
            kid.to_hex(),
            head.log_id.to_hex(),
        ));
    }
    Ok(head)
}

/// The first record of a receipt log file: the log's identity. `key` is the log key's public
/// COSE_Key (its kid is every head's `log_id`); `sealed` is the private key sealed to the TPM
/// under a PCR policy (opaque here: the enclave's `secllama-tpm` encoding), useless without that
/// TPM in that measured state. Deterministic CBOR `{"key": COSE_Key, "sealed": bstr}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogIdentity {
    /// The log key's public part.
    pub key: CoseP256Key,
    /// The sealed private key.
    pub sealed: Vec<u8>,
}

/// Largest accepted identity record.
pub const MAX_IDENTITY_LEN: usize = 4096;

impl LogIdentity {
    /// Deterministic CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&cbor::map(vec![
            (Key::Text("key"), self.key.to_value()),
            (Key::Text("sealed"), Value::Bytes(self.sealed.clone())),
        ]))
    }

    /// Strict decoding.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = MapReader::new(
            "log identity",
            cbor::decode_deterministic("log identity", b, MAX_IDENTITY_LEN)?,
        )?;
        let key = CoseP256Key::from_value(
            "log identity key",
            r.require(Key::Text("key"), "a COSE_Key")?,
        )?;
        let sealed = r.bytes(Key::Text("sealed"))?;
        r.finish()?;
        Ok(Self { key, sealed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand_core::OsRng)
    }

    #[test]
    fn round_trip_and_every_mismatch_is_refused() {
        let k = key();
        let head = TreeHead {
            log_id: k.public().kid().unwrap(),
            size: 7,
            root: Sha256Digest([7; 32]),
            time_ms: 1_700_000_000_123,
            counter: 42,
        };
        let sth = sign_tree_head(&head, &k).unwrap();
        assert_eq!(verify_tree_head(&sth, &k.public()).unwrap(), head);
        // Another key: refused.
        let other = key();
        assert!(verify_tree_head(&sth, &other.public()).is_err());
        // A head naming another log is never signed.
        let mut wrong = head;
        wrong.log_id = other.public().kid().unwrap();
        assert!(sign_tree_head(&wrong, &k).is_err());
        // Any flipped byte: refused.
        for i in 0..sth.len() {
            let mut b = sth.clone();
            b[i] ^= 0x20;
            assert!(verify_tree_head(&b, &k.public()).is_err(), "flip at {i}");
        }
        // Unknown and missing fields: refused.
        let mut extra = cbor::decode("t", &head.to_bytes().unwrap(), 1024).unwrap();
        if let Value::Map(m) = &mut extra {
            m.push((Value::Text("zz".into()), Value::Integer(1.into())));
        }
        assert!(TreeHead::from_bytes(&cbor::to_vec(&extra).unwrap()).is_err());
    }

    #[test]
    fn identity_round_trip() {
        let k = key();
        let id = LogIdentity {
            key: k.public(),
            sealed: vec![1, 2, 3],
        };
        let b = id.to_bytes().unwrap();
        assert_eq!(LogIdentity::from_bytes(&b).unwrap(), id);
        assert!(LogIdentity::from_bytes(&b[..b.len() - 1]).is_err());
    }
}
