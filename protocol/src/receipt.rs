//! Receipts (DESIGN.md "Receipts and log"): a COSE_Sign1, ES256, signed by the enclave's signing key,
//! content type `application/vnd.secllama.receipt+cbor`, over the deterministic CBOR map
//!
//! ```text
//! {"req": SHA-256(salt ‖ request body), "resp": SHA-256(salt ‖ response bytes), "model": text,
//!  "policy": SHA-256 of the policy, "kid": attestation signing key id, "index": log index, "time": s,
//!  "params": {? "num_predict": uint, ? "defaults": [+ text]}}
//! ```
//!
//! `params` are the generation parameters the enclave gave the runner: `num_predict` the token
//! limit (absent for `/api/tags`), `defaults` the names of those the enclave filled in because the
//! request left them out (absent when none; never empty).
//!
//! Digests are salted with the request's random salt so the host cannot match them against the known
//! evaluation dataset.

use crate::cbor::{self, Key, MapReader, Value};
use crate::cose::{self, CoseP256Key, SigningKey};
use crate::{Kid, ProtocolError, Result, Sha256Digest};

/// COSE content type of a receipt.
pub const CONTENT_TYPE: &str = "application/vnd.secllama.receipt+cbor";
/// Largest accepted receipt.
pub const MAX_RECEIPT_LEN: usize = 4096;

/// What a receipt attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPayload {
    /// SHA-256(salt ‖ request body).
    pub request_digest: Sha256Digest,
    /// SHA-256(salt ‖ response bytes).
    pub response_digest: Sha256Digest,
    /// The model that answered.
    pub model: String,
    /// SHA-256 of the policy in force.
    pub policy_digest: Sha256Digest,
    /// The attestation signing key id.
    pub signing_kid: Kid,
    /// Position in the receipt log.
    pub log_index: u64,
    /// Time, seconds since the Unix epoch.
    pub time: u64,
    /// The parameters the runner was given.
    pub params: ReceiptParams,
}

/// The generation parameters a receipt records (the `params` map).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptParams {
    /// `options.num_predict` as the runner read it.
    pub num_predict: Option<u64>,
    /// Parameters the enclave set because the request left them out (e.g. `num_predict`: the
    /// policy's maximum).
    pub defaults: Vec<String>,
}

impl ReceiptParams {
    fn to_value(&self) -> Value {
        let mut entries = Vec::new();
        if let Some(n) = self.num_predict {
            entries.push((Key::Text("num_predict"), Value::Integer(n.into())));
        }
        if !self.defaults.is_empty() {
            entries.push((
                Key::Text("defaults"),
                Value::Array(self.defaults.iter().cloned().map(Value::Text).collect()),
            ));
        }
        cbor::map(entries)
    }

    fn from_reader(mut r: MapReader) -> Result<Self> {
        let num_predict = r
            .take(Key::Text("num_predict"))
            .map(|v| cbor::as_uint("receipt.params.num_predict", &v))
            .transpose()?;
        let defaults = match r.take(Key::Text("defaults")) {
            None => Vec::new(),
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|v| match v {
                    Value::Text(t) => Ok(t),
                    other => Err(ProtocolError::WrongType {
                        field: "receipt.params.defaults".into(),
                        expected: "text strings".into(),
                        found: cbor::describe_value(&other),
                    }),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(ProtocolError::WrongType {
                    field: "receipt.params.defaults".into(),
                    expected: "a non-empty array of text strings (absent when none)".into(),
                    found: cbor::describe_value(&other),
                });
            }
        };
        r.finish()?;
        Ok(Self {
            num_predict,
            defaults,
        })
    }
}

impl ReceiptPayload {
    /// Deterministic CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&cbor::map(vec![
            (
                Key::Text("req"),
                Value::Bytes(self.request_digest.0.to_vec()),
            ),
            (
                Key::Text("resp"),
                Value::Bytes(self.response_digest.0.to_vec()),
            ),
            (Key::Text("model"), Value::Text(self.model.clone())),
            (
                Key::Text("policy"),
                Value::Bytes(self.policy_digest.0.to_vec()),
            ),
            (Key::Text("kid"), Value::Bytes(self.signing_kid.0.to_vec())),
            (Key::Text("index"), Value::Integer(self.log_index.into())),
            (Key::Text("time"), Value::Integer(self.time.into())),
            (Key::Text("params"), self.params.to_value()),
        ]))
    }

    /// Strict decoding.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = MapReader::new(
            "receipt",
            cbor::decode_deterministic("receipt payload", b, MAX_RECEIPT_LEN)?,
        )?;
        let out = Self {
            request_digest: Sha256Digest(r.array(Key::Text("req"))?),
            response_digest: Sha256Digest(r.array(Key::Text("resp"))?),
            model: r.text(Key::Text("model"))?,
            policy_digest: Sha256Digest(r.array(Key::Text("policy"))?),
            signing_kid: Sha256Digest(r.array(Key::Text("kid"))?),
            log_index: r.uint(Key::Text("index"))?,
            time: r.uint(Key::Text("time"))?,
            params: ReceiptParams::from_reader(r.map(Key::Text("params"))?)?,
        };
        r.finish()?;
        Ok(out)
    }
}

/// Signs a receipt; the payload's `signing_kid` must be the key's id.
pub fn sign_receipt(payload: &ReceiptPayload, key: &SigningKey) -> Result<Vec<u8>> {
    let kid = key.public().kid()?;
    if kid != payload.signing_kid {
        return Err(ProtocolError::mismatch(
            "receipt kid",
            kid.to_hex(),
            payload.signing_kid.to_hex(),
        ));
    }
    cose::sign(key, CONTENT_TYPE, &payload.to_bytes()?, &[])
}

/// Verifies a receipt under the attested signing key and decodes it. The protected kid and the
/// payload's kid must both name that key.
pub fn verify_receipt(receipt: &[u8], signing_key: &CoseP256Key) -> Result<ReceiptPayload> {
    let policy = crate::attestation::own_policy(CONTENT_TYPE, MAX_RECEIPT_LEN);
    let kid = signing_key.kid()?;
    let verified = cose::verify(receipt, &signing_key.verifying_key()?, &policy)?;
    if verified.kid.as_deref() != Some(&kid.0[..]) {
        return Err(ProtocolError::mismatch(
            "receipt protected kid",
            kid.to_hex(),
            "another or no kid",
        ));
    }
    let payload = ReceiptPayload::from_bytes(&verified.payload)?;
    if payload.signing_kid != kid {
        return Err(ProtocolError::mismatch(
            "receipt payload kid",
            kid.to_hex(),
            payload.signing_kid.to_hex(),
        ));
    }
    Ok(payload)
}
