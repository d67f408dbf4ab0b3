//! Sealed requests: COSE_Encrypt (RFC 9052 §5.1), tag 96.
//!
//! ```text
//! 96([ << {1: 3} >>,                      ; protected: alg A256GCM
//!      {5: iv(12)},                        ; unprotected: random 96-bit IV
//!      ciphertext,                         ; AES-256-GCM(content key, iv, Enc_structure, plaintext)
//!      [[ h'', {1: -41, 4: kid(32)}, wrapped_key ]] ])   ; RSAES-OAEP-SHA256 for the enclave key
//!                                          ; or [[ h'', {1: -6, 4: session_id(16)}, h'' ]] on reuse
//! ```
//!
//! kid = SHA-256(SPKI DER of the enclave encryption key). The external AAD is the deterministic CBOR
//! array `["secllama/v1/request", method, path, attestation_document_digest]`, so a sealed body cannot
//! be replayed to another endpoint or another enclave. The plaintext is the deterministic CBOR map
//! `{"id": request id (16), "ts": client time in ms, "salt": salt (32), "body": Ollama JSON bytes}`.
//!
//! Every field is checked on input: anything other than exactly the structure above is an error.

use super::{
    ALG_DIRECT, ALG_RSAES_OAEP_SHA256, ContentKey, IV_LEN, Unwrap, aes_gcm_open, aes_gcm_seal,
};
use crate::cbor::{self, Key, MapReader, Value};
use crate::cose::sign1::{encode, protected_alg, untag};
use crate::{Kid, ProtocolError, RequestId, Result, Salt, Sha256Digest, sha256};
use coset::{AsCborValue, CoseEncrypt, CoseRecipient, Header, HeaderBuilder, iana};
use rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;

/// CBOR tag of COSE_Encrypt.
pub const TAG_COSE_ENCRYPT: u64 = 96;
/// Largest accepted sealed request.
pub const MAX_REQUEST_LEN: usize = 8 * 1024 * 1024;
/// Smallest accepted enclave encryption key.
pub const MIN_ENCRYPTION_KEY_BITS: usize = 3072;
const AAD_CONTEXT: &str = "secllama/v1/request";

/// Where a request is going: bound into its external AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext<'a> {
    /// HTTP method of the sealed call, e.g. "POST".
    pub method: &'a str,
    /// HTTP path of the sealed call, e.g. "/v1/sealed/api/generate".
    pub path: &'a str,
    /// SHA-256 of the attestation document the client verified.
    pub attestation_digest: Sha256Digest,
}

impl RequestContext<'_> {
    /// The external AAD: `["secllama/v1/request", method, path, attestation_digest]`.
    pub fn external_aad(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&Value::Array(vec![
            Value::Text(AAD_CONTEXT.into()),
            Value::Text(self.method.into()),
            Value::Text(self.path.into()),
            Value::Bytes(self.attestation_digest.0.to_vec()),
        ]))
    }
}

/// What a sealed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlaintext {
    /// Random request id, unique per content key.
    pub id: RequestId,
    /// Client time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Random salt for the receipt digests.
    pub salt: Salt,
    /// The Ollama request JSON.
    pub body: Vec<u8>,
}

impl RequestPlaintext {
    /// A plaintext with a fresh random id and salt.
    pub fn new(body: Vec<u8>, timestamp_ms: u64, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut id = [0u8; 16];
        let mut salt = [0u8; 32];
        rng.try_fill_bytes(&mut id)
            .map_err(|e| ProtocolError::crypto("random request id", e))?;
        rng.try_fill_bytes(&mut salt)
            .map_err(|e| ProtocolError::crypto("random salt", e))?;
        Ok(Self {
            id: RequestId(id),
            timestamp_ms,
            salt: Salt(salt),
            body,
        })
    }

    /// Deterministic CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&cbor::map(vec![
            (Key::Text("id"), Value::Bytes(self.id.0.to_vec())),
            (Key::Text("ts"), Value::Integer(self.timestamp_ms.into())),
            (Key::Text("salt"), Value::Bytes(self.salt.0.to_vec())),
            (Key::Text("body"), Value::Bytes(self.body.clone())),
        ]))
    }

    /// Strict decoding.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = MapReader::new(
            "request plaintext",
            cbor::decode_deterministic("request plaintext", b, MAX_REQUEST_LEN)?,
        )?;
        let out = Self {
            id: RequestId(r.array(Key::Text("id"))?),
            timestamp_ms: r.uint(Key::Text("ts"))?,
            salt: Salt(r.array(Key::Text("salt"))?),
            body: r.bytes(Key::Text("body"))?,
        };
        r.finish()?;
        Ok(out)
    }
}

/// How the content key reaches the enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientKind {
    /// RSAES-OAEP-SHA256-wrapped for the enclave key named by `kid`.
    Wrapped {
        /// SHA-256 of the enclave encryption key's SPKI DER.
        kid: Kid,
        /// The OAEP ciphertext.
        wrapped_key: Vec<u8>,
    },
    /// A content key the enclave already holds, named by its session id.
    Session {
        /// [`ContentKey::session_id`] of the reused key.
        id: [u8; 16],
    },
}

/// A structurally valid sealed request, not yet decrypted.
#[derive(Debug, Clone)]
pub struct SealedRequest {
    encrypt: CoseEncrypt,
    recipient: RecipientKind,
}

/// A request the enclave opened.
#[derive(Debug, Clone)]
pub struct OpenedRequest {
    /// The plaintext.
    pub plaintext: RequestPlaintext,
    /// The content key (for the response keys and the session cache).
    pub content_key: ContentKey,
    /// How the key arrived.
    pub recipient: RecipientKind,
}

fn content_protected() -> Header {
    HeaderBuilder::new()
        .algorithm(iana::Algorithm::A256GCM)
        .build()
}

fn build(
    key: &ContentKey,
    ctx: &RequestContext<'_>,
    plaintext: &RequestPlaintext,
    recipient: CoseRecipient,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>> {
    let mut iv = [0u8; IV_LEN];
    rng.try_fill_bytes(&mut iv)
        .map_err(|e| ProtocolError::crypto("random IV", e))?;
    let aad = ctx.external_aad()?;
    let pt = plaintext.to_bytes()?;
    let encrypt = coset::CoseEncryptBuilder::new()
        .protected(content_protected())
        .unprotected(HeaderBuilder::new().iv(iv.to_vec()).build())
        .try_create_ciphertext(&pt, &aad, |pt, enc_structure| {
            aes_gcm_seal(key.as_bytes(), &iv, enc_structure, pt)
        })?
        .add_recipient(recipient)
        .build();
    encode("COSE_Encrypt", encrypt, Some(TAG_COSE_ENCRYPT))
}

/// Seals `plaintext` for the enclave whose encryption key is `enclave_spki_der` (RSA ≥ 3072 bits),
/// under a fresh content key wrapped with RSAES-OAEP-SHA256. Returns the request and the content key
/// (needed to open the response and to reuse the session).
pub fn seal_request(
    enclave_spki_der: &[u8],
    ctx: &RequestContext<'_>,
    plaintext: &RequestPlaintext,
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, ContentKey)> {
    use rsa::pkcs8::DecodePublicKey;
    crate::x690::check("enclave encryption key", enclave_spki_der)?;
    let public = rsa::RsaPublicKey::from_public_key_der(enclave_spki_der).map_err(|e| {
        ProtocolError::Key {
            what: "enclave encryption key".into(),
            expected: "an RSA SubjectPublicKeyInfo".into(),
            found: e.to_string(),
        }
    })?;
    let bits = public.n().bits();
    if bits < MIN_ENCRYPTION_KEY_BITS {
        return Err(ProtocolError::Key {
            what: "enclave encryption key".into(),
            expected: format!("RSA of at least {MIN_ENCRYPTION_KEY_BITS} bits"),
            found: format!("RSA-{bits}"),
        });
    }
    let key = ContentKey::generate(rng)?;
    let wrapped = public
        .encrypt(rng, rsa::Oaep::new::<sha2::Sha256>(), key.as_bytes())
        .map_err(|e| ProtocolError::crypto("RSAES-OAEP-SHA256 wrap", e))?;
    let kid = sha256(&[enclave_spki_der]);
    let recipient = coset::CoseRecipientBuilder::new()
        .unprotected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::RSAES_OAEP_SHA_256)
                .key_id(kid.0.to_vec())
                .build(),
        )
        .ciphertext(wrapped)
        .build();
    Ok((build(&key, ctx, plaintext, recipient, rng)?, key))
}

/// Seals `plaintext` under a content key the enclave already holds (session reuse): the recipient is
/// `direct` (-6) with kid = the key's session id, so no RSA operation is needed.
pub fn seal_request_session(
    key: &ContentKey,
    ctx: &RequestContext<'_>,
    plaintext: &RequestPlaintext,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>> {
    let recipient = coset::CoseRecipientBuilder::new()
        .unprotected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::Direct)
                .key_id(key.session_id()?.to_vec())
                .build(),
        )
        .ciphertext(Vec::new())
        .build();
    build(key, ctx, plaintext, recipient, rng)
}

fn only(what: &str, h: &Header, expected: Header, describe: &str) -> Result<()> {
    if *h != expected {
        return Err(ProtocolError::mismatch(
            what,
            describe,
            "a header with other or missing members",
        ));
    }
    Ok(())
}

impl SealedRequest {
    /// Parses and structurally checks a sealed request (no key needed).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let what = "sealed request";
        let value = cbor::decode_deterministic(what, bytes, MAX_REQUEST_LEN)?;
        let (inner, _) = untag(what, value, TAG_COSE_ENCRYPT)?;
        let encrypt =
            CoseEncrypt::from_cbor_value(inner).map_err(|e| ProtocolError::cose(what, e))?;
        protected_alg(what, &encrypt.protected.header, &encrypt.unprotected)?;
        only(
            "sealed request protected header",
            &encrypt.protected.header,
            content_protected(),
            "{1: 3 (A256GCM)}",
        )?;
        let iv = &encrypt.unprotected.iv;
        if iv.len() != IV_LEN {
            return Err(ProtocolError::length("sealed request IV", "12", iv.len()));
        }
        only(
            "sealed request unprotected header",
            &encrypt.unprotected,
            HeaderBuilder::new().iv(iv.clone()).build(),
            "{5: iv}",
        )?;
        if encrypt.ciphertext.is_none() {
            return Err(ProtocolError::Missing {
                field: "sealed request ciphertext".into(),
                expected: "an attached ciphertext".into(),
            });
        }
        let [r] = encrypt.recipients.as_slice() else {
            return Err(ProtocolError::mismatch(
                "sealed request recipients",
                "exactly 1",
                encrypt.recipients.len().to_string(),
            ));
        };
        let recipient = Self::recipient_kind(r)?;
        Ok(Self { encrypt, recipient })
    }

    fn recipient_kind(r: &CoseRecipient) -> Result<RecipientKind> {
        let what = "sealed request recipient";
        if !r.protected.header.is_empty()
            || r.protected
                .original_data
                .as_ref()
                .is_some_and(|d| !d.is_empty())
        {
            return Err(ProtocolError::mismatch(
                format!("{what} protected header"),
                "h'' (empty)",
                "a non-empty header",
            ));
        }
        if !r.recipients.is_empty() {
            return Err(ProtocolError::mismatch(
                format!("{what} recipients"),
                "none",
                r.recipients.len().to_string(),
            ));
        }
        let alg = match &r.unprotected.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => *a as i64,
            _ => {
                return Err(ProtocolError::Missing {
                    field: format!("{what} alg"),
                    expected: "-41 (RSAES-OAEP w/ SHA-256) or -6 (direct, session reuse)".into(),
                });
            }
        };
        let kid = r.unprotected.key_id.clone();
        let ciphertext = r.ciphertext.clone().unwrap_or_default();
        let header = |alg: iana::Algorithm| {
            HeaderBuilder::new()
                .algorithm(alg)
                .key_id(kid.clone())
                .build()
        };
        match alg {
            ALG_RSAES_OAEP_SHA256 => {
                only(
                    &format!("{what} header"),
                    &r.unprotected,
                    header(iana::Algorithm::RSAES_OAEP_SHA_256),
                    "{1: -41, 4: kid}",
                )?;
                let kid = Sha256Digest::from_slice("sealed request recipient kid", &kid)?;
                if ciphertext.is_empty() {
                    return Err(ProtocolError::Missing {
                        field: format!("{what} ciphertext"),
                        expected: "the wrapped content key".into(),
                    });
                }
                Ok(RecipientKind::Wrapped {
                    kid,
                    wrapped_key: ciphertext,
                })
            }
            ALG_DIRECT => {
                only(
                    &format!("{what} header"),
                    &r.unprotected,
                    header(iana::Algorithm::Direct),
                    "{1: -6, 4: session id}",
                )?;
                let id: [u8; 16] = kid
                    .as_slice()
                    .try_into()
                    .map_err(|_| ProtocolError::length("session id", "16", kid.len()))?;
                if r.ciphertext.as_deref() != Some(&[][..]) {
                    return Err(ProtocolError::mismatch(
                        format!("{what} ciphertext"),
                        "h'' (direct)",
                        "other bytes",
                    ));
                }
                Ok(RecipientKind::Session { id })
            }
            other => Err(ProtocolError::mismatch(
                format!("{what} alg"),
                "-41 or -6",
                other.to_string(),
            )),
        }
    }

    /// How the content key is delivered.
    pub fn recipient(&self) -> &RecipientKind {
        &self.recipient
    }

    /// Decrypts with `key` for `ctx`. A session request's key must match its session id.
    pub fn open(&self, ctx: &RequestContext<'_>, key: &ContentKey) -> Result<RequestPlaintext> {
        if let RecipientKind::Session { id } = &self.recipient
            && key.session_id()? != *id
        {
            return Err(ProtocolError::mismatch(
                "session id",
                "the id of the given content key",
                "another id",
            ));
        }
        let iv: [u8; IV_LEN] = self
            .encrypt
            .unprotected
            .iv
            .as_slice()
            .try_into()
            .map_err(|_| {
                ProtocolError::length("sealed request IV", "12", self.encrypt.unprotected.iv.len())
            })?;
        let aad = ctx.external_aad()?;
        let pt = self.encrypt.decrypt_ciphertext(
            &aad,
            || ProtocolError::Missing {
                field: "sealed request ciphertext".into(),
                expected: "an attached ciphertext".into(),
            },
            |ct, enc_structure| {
                aes_gcm_open(key.as_bytes(), &iv, enc_structure, ct, "sealed request")
            },
        )?;
        RequestPlaintext::from_bytes(&pt)
    }
}

/// Opens a sealed request in the enclave: unwraps the content key through `unwrap` (checking the kid)
/// or takes it from `session` for a reused key, then decrypts for `ctx`.
pub fn open_request(
    bytes: &[u8],
    ctx: &RequestContext<'_>,
    unwrap: &dyn Unwrap,
    session: impl FnOnce(&[u8; 16]) -> Option<ContentKey>,
) -> Result<OpenedRequest> {
    let sealed = SealedRequest::parse(bytes)?;
    let content_key = match sealed.recipient() {
        RecipientKind::Wrapped { kid, wrapped_key } => {
            let ours = unwrap.kid();
            if *kid != ours {
                return Err(ProtocolError::mismatch(
                    "sealed request recipient kid",
                    ours.to_hex(),
                    kid.to_hex(),
                ));
            }
            unwrap.unwrap_key(wrapped_key)?
        }
        RecipientKind::Session { id } => session(id).ok_or_else(|| ProtocolError::Missing {
            field: "session".into(),
            expected: "a cached content key for this session id (unknown or expired)".into(),
        })?,
    };
    let plaintext = sealed.open(ctx, &content_key)?;
    Ok(OpenedRequest {
        plaintext,
        content_key,
        recipient: sealed.recipient,
    })
}
