//! TPM 2.0 Part 2 §12.2 `TPMT_PUBLIC` / `TPM2B_PUBLIC` for RSA and ECC keys (§12.2.3
//! `TPMU_PUBLIC_PARMS`, §8.3 `TPMA_OBJECT`), the object's Name and qualified name (Part 1 §16), the
//! checks that make a key fit to be an attestation key, and conversion to a
//! [`VerifyingKey`].

use super::alg::{self, HashAlg, TPM_ALG_ECC, TPM_ALG_NULL, TPM_ALG_RSA};
use super::error::{Result, TpmError};
use super::marshal::{Reader, strip_tpm2b};
use super::signature::{MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES, SigScheme};
use secllama_protocol::cose::VerifyingKey;

/// `TPM_RH_OWNER`: the storage hierarchy handle.
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_NULL`: the null hierarchy handle.
pub const TPM_RH_NULL: u32 = 0x4000_0007;
/// `TPM_RH_ENDORSEMENT`: the endorsement hierarchy handle (the parent QN of an EK or other
/// endorsement primary).
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;
/// `TPM_RH_PLATFORM`: the platform hierarchy handle.
pub const TPM_RH_PLATFORM: u32 = 0x4000_000C;

/// `TPMA_OBJECT`: an object's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// `fixedTPM`: the object cannot be duplicated (its hierarchy is fixed to this TPM).
    pub const FIXED_TPM: u32 = 1 << 1;
    /// `stClear`.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// `fixedParent`: the parent cannot change.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// `sensitiveDataOrigin`: the TPM generated the private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// `userWithAuth`.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// `adminWithPolicy`.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// `noDA`.
    pub const NO_DA: u32 = 1 << 10;
    /// `encryptedDuplication`.
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// `restricted`: a signing key signs only TPM-generated digests (never data starting with
    /// `TPM_GENERATED_VALUE` from outside); a decryption key is a storage parent.
    pub const RESTRICTED: u32 = 1 << 16;
    /// `decrypt`.
    pub const DECRYPT: u32 = 1 << 17;
    /// `sign` (`sign_encrypt`).
    pub const SIGN_ENCRYPT: u32 = 1 << 18;
    /// `x509sign`.
    pub const X509SIGN: u32 = 1 << 19;
    /// Bits Part 2 §8.3 reserves (0, 3, 8–9, 12–15, 20–31): a TPM rejects them on input with
    /// TPM_RC_RESERVED_BITS, and so does this parser.
    pub const RESERVED: u32 = 0xfff0_f309;

    const NAMES: [(u32, &'static str); 12] = [
        (Self::FIXED_TPM, "fixedtpm"),
        (Self::ST_CLEAR, "stclear"),
        (Self::FIXED_PARENT, "fixedparent"),
        (Self::SENSITIVE_DATA_ORIGIN, "sensitivedataorigin"),
        (Self::USER_WITH_AUTH, "userwithauth"),
        (Self::ADMIN_WITH_POLICY, "adminwithpolicy"),
        (Self::NO_DA, "noda"),
        (Self::ENCRYPTED_DUPLICATION, "encryptedduplication"),
        (Self::RESTRICTED, "restricted"),
        (Self::DECRYPT, "decrypt"),
        (Self::SIGN_ENCRYPT, "sign"),
        (Self::X509SIGN, "x509sign"),
    ];

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

impl std::fmt::Display for ObjectAttributes {
    /// tpm2-tools style: `fixedtpm|fixedparent|...` followed by the raw value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(f, "{} (0x{:08x})", names.join("|"), self.0)
    }
}

/// `TPMT_SYM_DEF_OBJECT` when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// `algorithm`, e.g. `TPM_ALG_AES`.
    pub algorithm: u16,
    /// `keyBits`.
    pub key_bits: u16,
    /// `mode`, e.g. `TPM_ALG_CFB`.
    pub mode: u16,
}

/// A `TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME` / `TPMT_KDF_SCHEME` when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// `scheme`, e.g. `TPM_ALG_RSASSA`.
    pub scheme: u16,
    /// `details.hashAlg`; `None` for a scheme without one (`TPM_ALG_RSAES`).
    pub hash: Option<HashAlg>,
}

/// The key material (`unique`) with its type's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `TPM_ALG_RSA`.
    Rsa {
        /// `keyBits`.
        key_bits: u16,
        /// `exponent` as marshalled (0 means 65537).
        exponent: u32,
        /// The modulus, big-endian.
        modulus: Vec<u8>,
    },
    /// `TPM_ALG_ECC`.
    Ecc {
        /// `curveID`, e.g. `TPM_ECC_NIST_P256`.
        curve: u16,
        /// `kdf`, when not `TPM_ALG_NULL`.
        kdf: Option<Scheme>,
        /// The point's x coordinate.
        x: Vec<u8>,
        /// The point's y coordinate.
        y: Vec<u8>,
    },
}

/// A parsed `TPMT_PUBLIC` of an RSA or ECC key, with its exact bytes (the Name hashes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// `nameAlg`.
    pub name_alg: HashAlg,
    /// `objectAttributes`.
    pub attributes: ObjectAttributes,
    /// `authPolicy`.
    pub auth_policy: Vec<u8>,
    /// `parameters.symmetric`, when not `TPM_ALG_NULL`.
    pub symmetric: Option<SymDef>,
    /// `parameters.scheme`, when not `TPM_ALG_NULL`.
    pub scheme: Option<Scheme>,
    /// The key.
    pub key: PublicKey,
    bytes: Vec<u8>,
}

impl TpmPublic {
    /// Parses a `TPMT_PUBLIC` or a `TPM2B_PUBLIC` holding one (detected: a `TPMT_PUBLIC` starts
    /// with its type). Trailing bytes are an error.
    pub fn parse(input: &[u8]) -> Result<Self> {
        let body = strip_tpm2b(input, |b| {
            matches!(
                b,
                [0x00, 0x01 | 0x08 | 0x23 | 0x25, ..] // RSA, KEYEDHASH, ECC, SYMCIPHER
            )
        });
        let mut r = Reader::new("TPMT_PUBLIC", body);
        let at = r.offset();
        let object_type = r.u16("type")?;
        if object_type != TPM_ALG_RSA && object_type != TPM_ALG_ECC {
            return Err(r.invalid_at(
                "type",
                at,
                "TPM_ALG_RSA or TPM_ALG_ECC",
                alg::alg_name(object_type),
            ));
        }
        let at = r.offset();
        let id = r.u16("nameAlg")?;
        let name_alg = HashAlg::from_alg_id(id).ok_or_else(|| {
            r.invalid_at(
                "nameAlg",
                at,
                "TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384 or TPM_ALG_SHA512",
                alg::alg_name(id),
            )
        })?;
        let at = r.offset();
        let attributes = ObjectAttributes(r.u32("objectAttributes")?);
        if attributes.0 & ObjectAttributes::RESERVED != 0 {
            return Err(r.invalid_at(
                "objectAttributes",
                at,
                "no reserved bits set",
                format!("{:#010x}", attributes.0),
            ));
        }
        let auth_policy = r.tpm2b("authPolicy", super::attest::MAX_DIGEST)?.to_vec();
        let symmetric = read_symmetric(&mut r)?;
        let scheme = read_scheme(&mut r, "parameters.scheme")?;
        let key = if object_type == TPM_ALG_RSA {
            let key_bits = r.u16("parameters.keyBits")?;
            let exponent = r.u32("parameters.exponent")?;
            let at = r.offset();
            let modulus = r.tpm2b("unique.rsa", MAX_RSA_KEY_BYTES)?.to_vec();
            if modulus.len() * 8 != usize::from(key_bits) {
                return Err(r.invalid_at(
                    "unique.rsa",
                    at,
                    format!("a {key_bits}-bit modulus (parameters.keyBits)"),
                    format!("{} bytes", modulus.len()),
                ));
            }
            PublicKey::Rsa {
                key_bits,
                exponent,
                modulus,
            }
        } else {
            let curve = r.u16("parameters.curveID")?;
            let kdf = read_scheme(&mut r, "parameters.kdf")?;
            let x = r.tpm2b("unique.ecc.x", MAX_ECC_KEY_BYTES)?.to_vec();
            let y = r.tpm2b("unique.ecc.y", MAX_ECC_KEY_BYTES)?.to_vec();
            PublicKey::Ecc { curve, kdf, x, y }
        };
        r.finish()?;
        Ok(Self {
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
            bytes: body.to_vec(),
        })
    }

    /// The exact `TPMT_PUBLIC` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The object's Name (Part 1 §16): `nameAlg` (2 bytes, big-endian) ‖ H_nameAlg(`TPMT_PUBLIC`).
    pub fn name(&self) -> Vec<u8> {
        let mut out = self.name_alg.alg_id().to_be_bytes().to_vec();
        out.extend_from_slice(&self.name_alg.hash(&[&self.bytes]));
        out
    }

    /// The object's qualified name under a parent whose qualified name is `parent_qn` (for a
    /// primary object, the hierarchy handle: `TPM_RH_ENDORSEMENT.to_be_bytes()`).
    pub fn qualified_name(&self, parent_qn: &[u8]) -> Vec<u8> {
        qualified_name(self.name_alg, parent_qn, &self.name())
    }

    /// The signing scheme the key is bound to, when it has one this module verifies.
    pub fn signing_scheme(&self) -> Option<(SigScheme, HashAlg)> {
        let s = self.scheme?;
        Some((SigScheme::from_id(s.scheme)?, s.hash?))
    }

    /// The public key, for signature verification or encryption. RSA needs at least 2048 bits; an
    /// exponent of 0 means 65537. ECC must be NIST P-256 or P-384.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        let bad =
            |expected: &str, found: String| TpmError::input("TPMT_PUBLIC key", expected, found);
        match &self.key {
            PublicKey::Rsa {
                exponent, modulus, ..
            } => {
                let e = if *exponent == 0 { 65_537 } else { *exponent };
                let key = rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(modulus),
                    rsa::BigUint::from(e),
                )
                .map_err(|err| bad("a valid RSA modulus and exponent", err.to_string()))?;
                let bits = rsa::traits::PublicKeyParts::n(&key).bits();
                if bits < secllama_protocol::cose::key::MIN_RSA_BITS {
                    return Err(bad(
                        "an RSA modulus of at least 2048 bits",
                        format!("{bits} bits"),
                    ));
                }
                Ok(VerifyingKey::Rsa(key))
            }
            PublicKey::Ecc { curve, x, y, .. } => {
                let size = match *curve {
                    alg::TPM_ECC_NIST_P256 => 32,
                    alg::TPM_ECC_NIST_P384 => 48,
                    other => {
                        return Err(bad(
                            "curve TPM_ECC_NIST_P256 or TPM_ECC_NIST_P384",
                            format!("curve 0x{other:04x}"),
                        ));
                    }
                };
                if x.len() > size || y.len() > size {
                    return Err(bad(
                        &format!("coordinates of at most {size} bytes"),
                        format!("x of {} and y of {} bytes", x.len(), y.len()),
                    ));
                }
                let mut sec1 = vec![0u8; 1 + 2 * size];
                sec1[0] = 0x04;
                sec1[1 + size - x.len()..1 + size].copy_from_slice(x);
                sec1[1 + 2 * size - y.len()..].copy_from_slice(y);
                let point = |e: ecdsa::Error| bad("a point on the curve", e.to_string());
                if size == 32 {
                    Ok(VerifyingKey::P256(
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(point)?,
                    ))
                } else {
                    Ok(VerifyingKey::P384(
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(point)?,
                    ))
                }
            }
        }
    }

    /// Why this key is not fit to be an attestation key (empty when it is): a restricted signing
    /// key (so it signs only digests the TPM computed, never outside data that mimics a quote),
    /// not a decryption key, generated inside the TPM and never duplicable.
    pub fn ak_problems(&self) -> Vec<String> {
        let a = self.attributes;
        let mut out = Vec::new();
        let need = [
            (ObjectAttributes::RESTRICTED, "restricted"),
            (ObjectAttributes::SIGN_ENCRYPT, "sign"),
            (ObjectAttributes::FIXED_TPM, "fixedtpm"),
            (ObjectAttributes::FIXED_PARENT, "fixedparent"),
            (
                ObjectAttributes::SENSITIVE_DATA_ORIGIN,
                "sensitivedataorigin",
            ),
        ];
        for (bit, name) in need {
            if !a.has(bit) {
                out.push(format!(
                    "AK objectAttributes: expected {name} set, found {a}"
                ));
            }
        }
        if a.has(ObjectAttributes::DECRYPT) {
            out.push(format!(
                "AK objectAttributes: expected decrypt clear, found {a}"
            ));
        }
        out
    }
}

/// A qualified name (Part 1 §16): `nameAlg` ‖ H_nameAlg(`parent_qn` ‖ `name`), where `nameAlg` is
/// the object's own name algorithm.
pub fn qualified_name(name_alg: HashAlg, parent_qn: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = name_alg.alg_id().to_be_bytes().to_vec();
    out.extend_from_slice(&name_alg.hash(&[parent_qn, name]));
    out
}

fn read_symmetric(r: &mut Reader<'_>) -> Result<Option<SymDef>> {
    let at = r.offset();
    let algorithm = r.u16("parameters.symmetric.algorithm")?;
    match algorithm {
        TPM_ALG_NULL => Ok(None),
        alg::TPM_ALG_XOR => Err(r.invalid_at(
            "parameters.symmetric.algorithm",
            at,
            "a block cipher or TPM_ALG_NULL",
            alg::alg_name(algorithm),
        )),
        _ => Ok(Some(SymDef {
            algorithm,
            key_bits: r.u16("parameters.symmetric.keyBits")?,
            mode: r.u16("parameters.symmetric.mode")?,
        })),
    }
}

fn read_scheme(r: &mut Reader<'_>, field: &'static str) -> Result<Option<Scheme>> {
    let at = r.offset();
    let scheme = r.u16(field)?;
    let hash_alg = |r: &mut Reader<'_>| -> Result<Option<HashAlg>> {
        let at = r.offset();
        let id = r.u16("scheme.details.hashAlg")?;
        HashAlg::from_alg_id(id).map(Some).ok_or_else(|| {
            r.invalid_at(
                "scheme.details.hashAlg",
                at,
                "TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384 or TPM_ALG_SHA512",
                alg::alg_name(id),
            )
        })
    };
    let hash = match scheme {
        TPM_ALG_NULL => return Ok(None),
        alg::TPM_ALG_RSAES => None,
        alg::TPM_ALG_RSASSA
        | alg::TPM_ALG_RSAPSS
        | alg::TPM_ALG_OAEP
        | alg::TPM_ALG_ECDSA
        | alg::TPM_ALG_SM2
        | alg::TPM_ALG_ECSCHNORR
        | alg::TPM_ALG_ECDH
        | alg::TPM_ALG_ECMQV
        | alg::TPM_ALG_MGF1
        | alg::TPM_ALG_KDF1_SP800_56A
        | alg::TPM_ALG_KDF2
        | alg::TPM_ALG_KDF1_SP800_108 => hash_alg(r)?,
        alg::TPM_ALG_ECDAA => {
            let hash = hash_alg(r)?;
            r.u16("scheme.details.count")?;
            hash
        }
        other => {
            return Err(r.invalid_at(
                field,
                at,
                "a TPM 2.0 asymmetric or KDF scheme",
                alg::alg_name(other),
            ));
        }
    };
    Ok(Some(Scheme { scheme, hash }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ECC P-256 restricted signing key, ECDSA-SHA256, as tpm2_createak would make it.
    fn ecc_ak() -> Vec<u8> {
        let sk = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let mut b = vec![0x00, 0x23, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00];
        b.extend_from_slice(&[0x00, 0x10, 0x00, 0x18, 0x00, 0x0b, 0x00, 0x03, 0x00, 0x10]);
        for c in [point.x().unwrap(), point.y().unwrap()] {
            b.extend_from_slice(&[0, 32]);
            b.extend_from_slice(c);
        }
        b
    }

    #[test]
    fn ecc_key_parses_names_and_converts() {
        let bytes = ecc_ak();
        let p = TpmPublic::parse(&bytes).unwrap();
        assert!(p.ak_problems().is_empty(), "{:?}", p.ak_problems());
        assert_eq!(
            p.signing_scheme(),
            Some((SigScheme::EcDsa, HashAlg::Sha256))
        );
        assert!(matches!(p.verifying_key().unwrap(), VerifyingKey::P256(_)));
        let name = p.name();
        assert_eq!(&name[..2], &[0, 0x0b]);
        assert_eq!(name[2..], HashAlg::Sha256.hash(&[&bytes])[..]);
        let mut wrapped = (bytes.len() as u16).to_be_bytes().to_vec();
        wrapped.extend_from_slice(&bytes);
        assert_eq!(TpmPublic::parse(&wrapped).unwrap(), p);
        let qn = p.qualified_name(&TPM_RH_ENDORSEMENT.to_be_bytes());
        let mut pre = TPM_RH_ENDORSEMENT.to_be_bytes().to_vec();
        pre.extend_from_slice(&name);
        assert_eq!(qn[2..], HashAlg::Sha256.hash(&[&pre])[..]);
    }

    #[test]
    fn attribute_problems_are_named() {
        let mut bytes = ecc_ak();
        bytes[5] = 0x02; // decrypt instead of restricted|sign
        let p = TpmPublic::parse(&bytes).unwrap();
        let problems = p.ak_problems().join("; ");
        for word in ["restricted set", "sign set", "decrypt clear"] {
            assert!(problems.contains(word), "{problems}");
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let bytes = ecc_ak();
        for len in 0..bytes.len() {
            assert!(TpmPublic::parse(&bytes[..len]).is_err(), "length {len}");
        }
        let mut keyedhash = bytes.clone();
        keyedhash[1] = 0x08;
        let e = TpmPublic::parse(&keyedhash).unwrap_err().to_string();
        assert!(e.contains("TPMT_PUBLIC.type at byte 0"), "{e}");
        let mut off_curve = bytes.clone();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        assert!(
            TpmPublic::parse(&off_curve)
                .unwrap()
                .verifying_key()
                .is_err()
        );
    }
}
