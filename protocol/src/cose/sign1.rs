//! COSE_Sign1 (RFC 9052 §4.2): ES256 signing and strict verification.
//!
//! Output is always tagged (CBOR tag 18). Input may be tagged 18 or untagged; any other tag is an
//! error. The algorithm must be in the protected header (an alg only in the unprotected header, or in
//! both, is rejected), must be one we support and must fit the key. Detached payloads are refused.

use super::key::{SigAlg, SigningKey, VerifyingKey};
use crate::cbor::{self, Value};
use crate::{ProtocolError, Result};
use coset::{AsCborValue, CoseSign1, Header, RegisteredLabelWithPrivate, iana};

/// CBOR tag of COSE_Sign1.
pub const TAG_COSE_SIGN1: u64 = 18;

/// What a verification requires beyond a good signature.
#[derive(Debug, Clone, Copy)]
pub struct Sign1Policy<'a> {
    /// Externally supplied data bound into the signature (RFC 9052 §4.3).
    pub external_aad: &'a [u8],
    /// The content type the protected header must carry, if any.
    pub content_type: Option<&'a str>,
    /// Require an empty unprotected header (secllama's own objects carry nothing unauthenticated).
    pub empty_unprotected: bool,
    /// Require deterministic CBOR for the whole structure (secllama's own objects).
    pub deterministic: bool,
    /// Largest accepted input.
    pub max_len: usize,
}

impl Default for Sign1Policy<'_> {
    /// No external AAD, any content type, unprotected members allowed, non-deterministic CBOR
    /// accepted, at most 64 KiB.
    fn default() -> Self {
        Self {
            external_aad: &[],
            content_type: None,
            empty_unprotected: false,
            deterministic: false,
            max_len: 64 * 1024,
        }
    }
}

/// A COSE_Sign1 whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSign1 {
    /// The algorithm used.
    pub alg: SigAlg,
    /// The kid from the protected header, else from the unprotected header.
    pub kid: Option<Vec<u8>>,
    /// The content type from the protected header, if text.
    pub content_type: Option<String>,
    /// Whether the input carried tag 18.
    pub tagged: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A parsed, not yet verified COSE_Sign1.
#[derive(Debug, Clone)]
pub struct ParsedSign1 {
    /// The structure.
    pub sign1: CoseSign1,
    /// Whether the input carried tag 18.
    pub tagged: bool,
}

/// Signs `payload` as a tagged COSE_Sign1 with ES256, content type `content_type`, kid = the key's
/// COSE_Key digest, an empty unprotected header and `external_aad` bound into the signature.
pub fn sign(
    key: &SigningKey,
    content_type: &str,
    payload: &[u8],
    external_aad: &[u8],
) -> Result<Vec<u8>> {
    let kid = key.public().kid()?;
    let protected = coset::HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .content_type(content_type.to_string())
        .key_id(kid.0.to_vec())
        .build();
    let sign1 = coset::CoseSign1Builder::new()
        .protected(protected)
        .payload(payload.to_vec())
        .create_signature(external_aad, |tbs| key.sign(tbs))
        .build();
    let value = Value::Tag(TAG_COSE_SIGN1, Box::new(to_value("COSE_Sign1", sign1)?));
    cbor::to_vec(&value)
}

fn to_value<T: AsCborValue>(what: &str, t: T) -> Result<Value> {
    t.to_cbor_value().map_err(|e| ProtocolError::cose(what, e))
}

/// Splits an optional tag `expected_tag` from a decoded value: `(inner, tagged)`.
pub(crate) fn untag(what: &str, value: Value, expected_tag: u64) -> Result<(Value, bool)> {
    match value {
        Value::Tag(t, inner) if t == expected_tag => Ok((*inner, true)),
        Value::Tag(t, _) => Err(ProtocolError::WrongTag {
            what: what.into(),
            expected: expected_tag,
            found: t,
        }),
        other => Ok((other, false)),
    }
}

/// Parses a COSE_Sign1 without verifying it (to read the kid or payload before choosing a key).
pub fn parse(bytes: &[u8], policy: &Sign1Policy<'_>) -> Result<ParsedSign1> {
    let what = "COSE_Sign1";
    let value = if policy.deterministic {
        cbor::decode_deterministic(what, bytes, policy.max_len)?
    } else {
        cbor::decode(what, bytes, policy.max_len)?
    };
    let (inner, tagged) = untag(what, value, TAG_COSE_SIGN1)?;
    let sign1 = CoseSign1::from_cbor_value(inner).map_err(|e| ProtocolError::cose(what, e))?;
    Ok(ParsedSign1 { sign1, tagged })
}

/// The algorithm of a header, which must be in the protected bucket only.
pub(crate) fn protected_alg(
    what: &str,
    protected: &Header,
    unprotected: &Header,
) -> Result<Option<i64>> {
    if unprotected.alg.is_some() {
        let where_ = if protected.alg.is_some() {
            "both headers"
        } else {
            "the unprotected header"
        };
        return Err(ProtocolError::mismatch(
            format!("{what} alg"),
            "alg in the protected header only",
            format!("alg in {where_}"),
        ));
    }
    match &protected.alg {
        None => Err(ProtocolError::Missing {
            field: format!("{what} protected header alg"),
            expected: "a signature or encryption algorithm".into(),
        }),
        Some(RegisteredLabelWithPrivate::Assigned(a)) => Ok(Some(*a as i64)),
        Some(RegisteredLabelWithPrivate::Text(t)) => Err(ProtocolError::mismatch(
            format!("{what} alg"),
            "an integer COSE algorithm",
            format!("text {t:?}"),
        )),
        Some(RegisteredLabelWithPrivate::PrivateUse(p)) => Ok(Some(*p)),
    }
}

fn content_type_text(h: &Header) -> Option<String> {
    match &h.content_type {
        Some(coset::ContentType::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

impl ParsedSign1 {
    /// Verifies the parsed structure under `key` with `policy`.
    pub fn verify(self, key: &VerifyingKey, policy: &Sign1Policy<'_>) -> Result<VerifiedSign1> {
        let what = "COSE_Sign1";
        let s = self.sign1;
        let alg_id = protected_alg(what, &s.protected.header, &s.unprotected)?.unwrap_or_default();
        let alg = SigAlg::from_cose_id(alg_id).ok_or_else(|| {
            ProtocolError::mismatch(
                format!("{what} alg"),
                "ES256, ES384, ES512, PS256, PS384 or PS512",
                alg_id.to_string(),
            )
        })?;
        if policy.empty_unprotected && !s.unprotected.is_empty() {
            return Err(ProtocolError::mismatch(
                format!("{what} unprotected header"),
                "an empty map",
                "a header with members",
            ));
        }
        let content_type = content_type_text(&s.protected.header);
        if let Some(want) = policy.content_type
            && content_type.as_deref() != Some(want)
        {
            return Err(ProtocolError::mismatch(
                format!("{what} content type"),
                want,
                content_type.unwrap_or_else(|| "none".into()),
            ));
        }
        let payload = s.payload.clone().ok_or_else(|| ProtocolError::Missing {
            field: format!("{what} payload"),
            expected: "an attached payload (detached payloads are not accepted)".into(),
        })?;
        s.verify_signature(policy.external_aad, |sig, tbs| {
            key.verify(alg, tbs, sig, what)
        })?;
        let kid = if s.protected.header.key_id.is_empty() {
            s.unprotected.key_id.clone()
        } else {
            s.protected.header.key_id.clone()
        };
        Ok(VerifiedSign1 {
            alg,
            kid: (!kid.is_empty()).then_some(kid),
            content_type,
            tagged: self.tagged,
            payload,
        })
    }

    /// The kid in the protected header (empty if none).
    pub fn protected_kid(&self) -> &[u8] {
        &self.sign1.protected.header.key_id
    }

    /// The payload, not yet authenticated.
    pub fn unverified_payload(&self) -> Option<&[u8]> {
        self.sign1.payload.as_deref()
    }
}

/// Parses and verifies a COSE_Sign1 under `key`.
pub fn verify(bytes: &[u8], key: &VerifyingKey, policy: &Sign1Policy<'_>) -> Result<VerifiedSign1> {
    parse(bytes, policy)?.verify(key, policy)
}

/// Serializes any coset structure, tagged or untagged.
pub(crate) fn encode<T: AsCborValue>(what: &str, t: T, tag: Option<u64>) -> Result<Vec<u8>> {
    let v = to_value(what, t)?;
    let v = match tag {
        Some(tag) => Value::Tag(tag, Box::new(v)),
        None => v,
    };
    cbor::to_vec(&v)
}
