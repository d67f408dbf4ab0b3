//! Public keys for COSE verification (PEM SubjectPublicKeyInfo, COSE_Key, JWK) and the enclave's
//! ES256 signing key with its canonical COSE_Key encoding.
//!
//! Algorithm/key agreement is strict (RFC 9053 §2.1): ES256 needs P-256, ES384 P-384, ES512 P-521,
//! PS256/384/512 an RSA key of at least 2048 bits (RFC 8230 §2).

use crate::cbor::{self, Key, MapReader, Value};
use crate::{Kid, ProtocolError, Result, sha256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ecdsa::signature::Verifier;
use rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;

/// A COSE signature algorithm secllama can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    /// ECDSA P-256 with SHA-256 (COSE -7).
    Es256,
    /// ECDSA P-384 with SHA-384 (COSE -35).
    Es384,
    /// ECDSA P-521 with SHA-512 (COSE -36).
    Es512,
    /// RSASSA-PSS with SHA-256 (COSE -37).
    Ps256,
    /// RSASSA-PSS with SHA-384 (COSE -38).
    Ps384,
    /// RSASSA-PSS with SHA-512 (COSE -39).
    Ps512,
}

impl SigAlg {
    /// Every algorithm, in COSE registry order.
    pub const ALL: [SigAlg; 6] = [
        SigAlg::Es256,
        SigAlg::Es384,
        SigAlg::Es512,
        SigAlg::Ps256,
        SigAlg::Ps384,
        SigAlg::Ps512,
    ];

    /// The COSE algorithm identifier.
    pub fn cose_id(self) -> i64 {
        match self {
            SigAlg::Es256 => -7,
            SigAlg::Es384 => -35,
            SigAlg::Es512 => -36,
            SigAlg::Ps256 => -37,
            SigAlg::Ps384 => -38,
            SigAlg::Ps512 => -39,
        }
    }

    /// The algorithm for a COSE identifier, if supported.
    pub fn from_cose_id(id: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.cose_id() == id)
    }

    /// The JOSE/COSE name.
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::Es256 => "ES256",
            SigAlg::Es384 => "ES384",
            SigAlg::Es512 => "ES512",
            SigAlg::Ps256 => "PS256",
            SigAlg::Ps384 => "PS384",
            SigAlg::Ps512 => "PS512",
        }
    }
}

/// A public key that verifies COSE signatures.
#[derive(Clone)]
pub enum VerifyingKey {
    /// An EC P-256 key.
    P256(p256::ecdsa::VerifyingKey),
    /// An EC P-384 key.
    P384(p384::ecdsa::VerifyingKey),
    /// An EC P-521 key.
    P521(Box<p521::ecdsa::VerifyingKey>),
    /// An RSA key (public only).
    Rsa(rsa::RsaPublicKey),
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.describe())
    }
}

/// Smallest RSA modulus accepted for PS256/384/512 (RFC 8230 §2).
pub const MIN_RSA_BITS: usize = 2048;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

fn key_err(what: &str, expected: &str, found: impl Into<String>) -> ProtocolError {
    ProtocolError::Key {
        what: what.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

impl VerifyingKey {
    /// Reads a key from PEM SubjectPublicKeyInfo, JWK (JSON) or COSE_Key (CBOR), by its first bytes.
    pub fn detect(input: &[u8]) -> Result<Self> {
        let trimmed = input.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(trimmed)
                .map_err(|_| key_err("PEM key", "ASCII text", "non-UTF-8 bytes"))?;
            Self::from_pem(text)
        } else if trimmed.starts_with(b"{") {
            let text = std::str::from_utf8(trimmed)
                .map_err(|_| key_err("JWK", "UTF-8 JSON", "non-UTF-8 bytes"))?;
            Self::from_jwk(text)
        } else {
            Self::from_cose_key(input)
        }
    }

    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block ([`crate::pem`]). Line length is not
    /// enforced, so keys pasted without wrapping are accepted; text outside the block is ignored,
    /// another PEM block is an error.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let der = crate::pem::blocks(pem.as_bytes(), "PUBLIC KEY", 1).map_err(|e| {
            key_err(
                "PEM key",
                "one PUBLIC KEY block (SubjectPublicKeyInfo)",
                e.to_string(),
            )
        })?;
        let der = der.into_iter().next().unwrap_or_default();
        Self::from_spki_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = crate::x690::parse::<spki::SubjectPublicKeyInfoRef<'_>>(der)
            .map_err(|found| key_err("SubjectPublicKeyInfo", "DER SubjectPublicKeyInfo", found))?;
        let point = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid.to_string().as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| key_err("EC key", "a named curve", e.to_string()))?
                    .to_string();
                match curve.as_str() {
                    OID_P256 => Self::ec_point("P-256", point),
                    OID_P384 => Self::ec_point("P-384", point),
                    OID_P521 => Self::ec_point("P-521", point),
                    other => Err(key_err("EC key", "curve P-256, P-384 or P-521", other)),
                }
            }
            OID_RSA_ENCRYPTION => {
                use rsa::pkcs8::DecodePublicKey;
                let key = rsa::RsaPublicKey::from_public_key_der(der)
                    .map_err(|e| key_err("RSA key", "a valid RSA public key", e.to_string()))?;
                Self::rsa(key)
            }
            other => Err(key_err(
                "SubjectPublicKeyInfo",
                "an EC or RSA key",
                format!("algorithm {other}"),
            )),
        }
    }

    fn ec_point(curve: &str, sec1: &[u8]) -> Result<Self> {
        let bad =
            |e: ecdsa::Error| key_err(curve, "a valid SEC1 point on the curve", e.to_string());
        match curve {
            "P-256" => Ok(Self::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map_err(bad)?,
            )),
            "P-384" => Ok(Self::P384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map_err(bad)?,
            )),
            "P-521" => Ok(Self::P521(Box::new(
                p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map_err(bad)?,
            ))),
            other => Err(key_err("EC key", "curve P-256, P-384 or P-521", other)),
        }
    }

    fn ec_xy(curve: &str, x: &[u8], y: &[u8]) -> Result<Self> {
        let size = match curve {
            "P-256" => 32,
            "P-384" => 48,
            "P-521" => 66,
            other => return Err(key_err("EC key", "curve P-256, P-384 or P-521", other)),
        };
        if x.len() != size || y.len() != size {
            return Err(key_err(
                curve,
                &format!("x and y of {size} bytes"),
                format!("x of {} and y of {} bytes", x.len(), y.len()),
            ));
        }
        let mut sec1 = Vec::with_capacity(1 + 2 * size);
        sec1.push(0x04);
        sec1.extend_from_slice(x);
        sec1.extend_from_slice(y);
        Self::ec_point(curve, &sec1)
    }

    fn rsa(key: rsa::RsaPublicKey) -> Result<Self> {
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(key_err(
                "RSA key",
                "a modulus of at least 2048 bits",
                format!("{bits} bits"),
            ));
        }
        Ok(Self::Rsa(key))
    }

    fn rsa_ne(n: &[u8], e: &[u8]) -> Result<Self> {
        let key = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from_bytes_be(e),
        )
        .map_err(|err| key_err("RSA key", "a valid modulus and exponent", err.to_string()))?;
        Self::rsa(key)
    }

    /// Reads a JWK (RFC 7517/7518): `kty` EC (crv, x, y) or RSA (n, e). Private members are ignored.
    pub fn from_jwk(json: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| key_err("JWK", "a JSON object", e.to_string()))?;
        let member = |name: &str| -> Result<Vec<u8>> {
            let s = v
                .get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| {
                    key_err("JWK", &format!("member {name:?} as a string"), "nothing")
                })?;
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|e| key_err("JWK", &format!("{name:?} in base64url"), e.to_string()))
        };
        match v.get("kty").and_then(serde_json::Value::as_str) {
            Some("EC") => {
                let crv = v
                    .get("crv")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("none");
                Self::ec_xy(crv, &member("x")?, &member("y")?)
            }
            Some("RSA") => Self::rsa_ne(&member("n")?, &member("e")?),
            other => Err(key_err("JWK", "kty EC or RSA", format!("{other:?}"))),
        }
    }

    /// Reads a COSE_Key (RFC 9052 §7): kty EC2 (crv, x, y) or RSA (n, e).
    pub fn from_cose_key(bytes: &[u8]) -> Result<Self> {
        let value = cbor::decode("COSE_Key", bytes, 16 * 1024)?;
        let mut r = MapReader::new("COSE_Key", value)?;
        let kty = r.require(Key::Int(1), "kty")?;
        // Optional members that do not change the key material.
        for label in [2, 3, 4, 5] {
            r.take(Key::Int(label));
        }
        match kty {
            Value::Integer(i) if i128::from(i) == 2 => {
                let crv = r.uint(Key::Int(-1))?;
                let name = match crv {
                    1 => "P-256",
                    2 => "P-384",
                    3 => "P-521",
                    other => return Err(key_err("COSE_Key", "crv 1, 2 or 3", other.to_string())),
                };
                let (x, y) = (r.bytes(Key::Int(-2))?, r.bytes(Key::Int(-3))?);
                r.finish()?;
                Self::ec_xy(name, &x, &y)
            }
            Value::Integer(i) if i128::from(i) == 3 => {
                let (n, e) = (r.bytes(Key::Int(-1))?, r.bytes(Key::Int(-2))?);
                r.finish()?;
                Self::rsa_ne(&n, &e)
            }
            other => Err(key_err(
                "COSE_Key",
                "kty 2 (EC2) or 3 (RSA)",
                cbor::describe_value(&other),
            )),
        }
    }

    /// Human description, e.g. "EC P-256" or "RSA-3072".
    pub fn describe(&self) -> String {
        match self {
            Self::P256(_) => "EC P-256".into(),
            Self::P384(_) => "EC P-384".into(),
            Self::P521(_) => "EC P-521".into(),
            Self::Rsa(k) => format!("RSA-{}", k.n().bits()),
        }
    }

    /// Whether `alg` is the right algorithm for this key (RFC 9053 §2.1, RFC 8230 §2).
    pub fn fits(&self, alg: SigAlg) -> bool {
        matches!(
            (self, alg),
            (Self::P256(_), SigAlg::Es256)
                | (Self::P384(_), SigAlg::Es384)
                | (Self::P521(_), SigAlg::Es512)
                | (Self::Rsa(_), SigAlg::Ps256 | SigAlg::Ps384 | SigAlg::Ps512)
        )
    }

    /// Verifies `sig` over `msg` with `alg`; the algorithm must fit the key.
    pub fn verify(&self, alg: SigAlg, msg: &[u8], sig: &[u8], what: &str) -> Result<()> {
        if !self.fits(alg) {
            return Err(ProtocolError::mismatch(
                format!("{what} algorithm"),
                format!("the algorithm of the {} key", self.describe()),
                alg.name(),
            ));
        }
        let bad = || ProtocolError::BadSignature {
            what: what.into(),
            alg: alg.name().into(),
        };
        let ok = match self {
            Self::P256(k) => {
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            Self::P384(k) => {
                p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            Self::P521(k) => {
                p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            Self::Rsa(k) => {
                if sig.len() != k.size() {
                    return Err(bad());
                }
                // COSE PS* uses a salt as long as the hash (RFC 8230 §2).
                use sha2::Digest;
                let (scheme, hashed) = match alg {
                    SigAlg::Ps256 => (
                        rsa::Pss::new_with_salt::<sha2::Sha256>(32),
                        sha2::Sha256::digest(msg).to_vec(),
                    ),
                    SigAlg::Ps384 => (
                        rsa::Pss::new_with_salt::<sha2::Sha384>(48),
                        sha2::Sha384::digest(msg).to_vec(),
                    ),
                    _ => (
                        rsa::Pss::new_with_salt::<sha2::Sha512>(64),
                        sha2::Sha512::digest(msg).to_vec(),
                    ),
                };
                k.verify(scheme, &hashed, sig).is_ok()
            }
        };
        if ok { Ok(()) } else { Err(bad()) }
    }
}

/// The enclave's P-256 public signing key in COSE_Key form.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CoseP256Key {
    /// Affine x coordinate.
    pub x: [u8; 32],
    /// Affine y coordinate.
    pub y: [u8; 32],
}

impl CoseP256Key {
    /// The COSE_Key map: {1 (kty): 2 (EC2), 3 (alg): -7 (ES256), -1 (crv): 1 (P-256), -2: x, -3: y}.
    pub fn to_value(&self) -> Value {
        cbor::map(vec![
            (Key::Int(1), Value::Integer(2.into())),
            (Key::Int(3), Value::Integer((-7).into())),
            (Key::Int(-1), Value::Integer(1.into())),
            (Key::Int(-2), Value::Bytes(self.x.to_vec())),
            (Key::Int(-3), Value::Bytes(self.y.to_vec())),
        ])
    }

    /// The deterministic COSE_Key encoding (`signing_pub_cose` in the key binding).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&self.to_value())
    }

    /// The key id: SHA-256 of the deterministic COSE_Key encoding.
    pub fn kid(&self) -> Result<Kid> {
        Ok(sha256(&[&self.to_bytes()?]))
    }

    /// Reads the exact map [`Self::to_value`] writes; anything else is an error.
    pub fn from_value(what: &str, value: Value) -> Result<Self> {
        let mut r = MapReader::new(what, value)?;
        let kty = r.require(Key::Int(1), "kty 2 (EC2)")?;
        let alg = r.require(Key::Int(3), "alg -7 (ES256)")?;
        let crv = r.require(Key::Int(-1), "crv 1 (P-256)")?;
        for (field, got, want) in [("kty", kty, 2), ("alg", alg, -7), ("crv", crv, 1)] {
            if got != Value::Integer(want.into()) {
                return Err(ProtocolError::mismatch(
                    format!("{what}.{field}"),
                    want.to_string(),
                    cbor::describe_value(&got),
                ));
            }
        }
        let key = Self {
            x: r.array(Key::Int(-2))?,
            y: r.array(Key::Int(-3))?,
        };
        r.finish()?;
        key.verifying_key()?;
        Ok(key)
    }

    /// The key as a verifier, checking that the point is on the curve.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        VerifyingKey::ec_xy("P-256", &self.x, &self.y)
    }
}

/// The enclave's ES256 signing key (ECDSA P-256). Signatures come from aws-lc-rs (constant time,
/// about 6× faster than RustCrypto's p256 here — it signs every receipt), with RustCrypto's
/// RFC 6979 signer as the fallback should aws-lc-rs ever refuse; the scalar and the public point
/// are handled by `p256`.
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
    fast: Option<aws_lc_rs::signature::EcdsaKeyPair>,
    /// The public key, computed once (every receipt names it).
    public: CoseP256Key,
}

impl SigningKey {
    fn new(key: p256::ecdsa::SigningKey) -> Self {
        let point = key.verifying_key().to_encoded_point(false);
        let fast = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.to_bytes(),
            point.as_bytes(),
        )
        .ok();
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        if let (Some(px), Some(py)) = (point.x(), point.y()) {
            x.copy_from_slice(px);
            y.copy_from_slice(py);
        }
        Self {
            key,
            fast,
            public: CoseP256Key { x, y },
        }
    }

    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::new(p256::ecdsa::SigningKey::random(rng))
    }

    /// A key from its 32-byte scalar (tests and sealed-secret restore).
    pub fn from_scalar(bytes: &[u8]) -> Result<Self> {
        p256::ecdsa::SigningKey::from_slice(bytes)
            .map(Self::new)
            .map_err(|e| {
                key_err(
                    "P-256 signing key",
                    "a 32-byte scalar in range",
                    e.to_string(),
                )
            })
    }

    /// The 32-byte scalar, for sealing to the TPM. Handle with care.
    pub fn to_scalar(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.key.to_bytes().to_vec())
    }

    /// The public key in COSE_Key form.
    pub fn public(&self) -> CoseP256Key {
        self.public
    }

    /// Signs `msg` (ES256: SHA-256, then ECDSA), returning r ‖ s (64 bytes).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        if let Some(fast) = &self.fast
            && let Ok(sig) = fast.sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
            && sig.as_ref().len() == 64
        {
            return sig.as_ref().to_vec();
        }
        use ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        sig.to_bytes().to_vec()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(ES256, private)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ecdsa::signature::Verifier;

    /// aws-lc-rs signs (the fast path is in use), and what it signs verifies under RustCrypto's
    /// verifier for the same public key, as does a scalar restored key's signature.
    #[test]
    fn aws_lc_signatures_verify_under_the_p256_public_key() {
        let k = SigningKey::generate(&mut rand_core::OsRng);
        assert!(k.fast.is_some(), "aws-lc-rs refused the key");
        let restored = SigningKey::from_scalar(&k.to_scalar()).unwrap();
        assert!(restored.fast.is_some());
        for key in [&k, &restored] {
            let sig = key.sign(b"receipt");
            assert_eq!(sig.len(), 64);
            let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            k.key.verifying_key().verify(b"receipt", &sig).unwrap();
            assert!(k.key.verifying_key().verify(b"receipT", &sig).is_err());
        }
    }
}
