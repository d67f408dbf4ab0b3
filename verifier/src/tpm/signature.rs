//! TPM 2.0 Part 2 §11.3.4 `TPMT_SIGNATURE` (§11.3.1 `TPMS_SIGNATURE_RSA`, §11.3.2
//! `TPMS_SIGNATURE_ECC`): RSASSA-PKCS1-v1_5, RSASSA-PSS and ECDSA with SHA-1/256/384/512, and their
//! verification under a public key. Also a bare RSASSA signature without the `TPMT_SIGNATURE`
//! header, as Azure's vTPM tooling ships them.

use super::alg::{self, HashAlg, TPM_ALG_ECDSA, TPM_ALG_RSAPSS, TPM_ALG_RSASSA};
use super::error::{Result, TpmError};
use super::marshal::{Reader, put_tpm2b};
use ecdsa::signature::hazmat::PrehashVerifier;
use rsa::traits::PublicKeyParts;
use secllama_protocol::cose::VerifyingKey;

/// `TPM2B_PUBLIC_KEY_RSA` contents: `MAX_RSA_KEY_BYTES` (4096 bits).
pub(crate) const MAX_RSA_KEY_BYTES: usize = 512;
/// `TPM2B_ECC_PARAMETER` contents: `MAX_ECC_KEY_BYTES` (P-521).
pub(crate) const MAX_ECC_KEY_BYTES: usize = 66;

/// A signature scheme a quote may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigScheme {
    /// `TPM_ALG_RSASSA`: RSASSA-PKCS1-v1_5.
    RsaSsa,
    /// `TPM_ALG_RSAPSS`: RSASSA-PSS, MGF1 with the same hash.
    RsaPss,
    /// `TPM_ALG_ECDSA`.
    EcDsa,
}

impl SigScheme {
    /// The `TPM_ALG_ID`.
    pub fn id(self) -> u16 {
        match self {
            SigScheme::RsaSsa => TPM_ALG_RSASSA,
            SigScheme::RsaPss => TPM_ALG_RSAPSS,
            SigScheme::EcDsa => TPM_ALG_ECDSA,
        }
    }

    /// The scheme for a `TPM_ALG_ID`, if it is one of the three.
    pub fn from_id(id: u16) -> Option<Self> {
        [SigScheme::RsaSsa, SigScheme::RsaPss, SigScheme::EcDsa]
            .into_iter()
            .find(|s| s.id() == id)
    }

    /// `RSASSA`, `RSAPSS` or `ECDSA`.
    pub fn name(self) -> &'static str {
        match self {
            SigScheme::RsaSsa => "RSASSA",
            SigScheme::RsaPss => "RSAPSS",
            SigScheme::EcDsa => "ECDSA",
        }
    }
}

/// The signature value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureValue {
    /// An RSA signature (`TPM2B_PUBLIC_KEY_RSA` contents).
    Rsa(Vec<u8>),
    /// An ECDSA signature.
    Ecc {
        /// `signatureR`.
        r: Vec<u8>,
        /// `signatureS`.
        s: Vec<u8>,
    },
}

/// A parsed `TPMT_SIGNATURE` (or a bare RSASSA signature with its hash given by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmSignature {
    /// `sigAlg`.
    pub scheme: SigScheme,
    /// The scheme's `hash`.
    pub hash: HashAlg,
    /// The signature.
    pub value: SignatureValue,
    /// True when the input had no `TPMT_SIGNATURE` header (see [`TpmSignature::raw_rsassa`]).
    pub raw: bool,
}

impl TpmSignature {
    /// Parses a `TPMT_SIGNATURE`; trailing bytes are an error.
    pub fn parse(input: &[u8]) -> Result<Self> {
        let mut r = Reader::new("TPMT_SIGNATURE", input);
        let sig = Self::read(&mut r)?;
        r.finish()?;
        Ok(sig)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let at = r.offset();
        let id = r.u16("sigAlg")?;
        let scheme = SigScheme::from_id(id).ok_or_else(|| {
            r.invalid_at(
                "sigAlg",
                at,
                "TPM_ALG_RSASSA, TPM_ALG_RSAPSS or TPM_ALG_ECDSA",
                alg::alg_name(id),
            )
        })?;
        let at = r.offset();
        let hash_id = r.u16("signature.hash")?;
        let hash = HashAlg::from_alg_id(hash_id).ok_or_else(|| {
            r.invalid_at(
                "signature.hash",
                at,
                "TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384 or TPM_ALG_SHA512",
                alg::alg_name(hash_id),
            )
        })?;
        let value = match scheme {
            SigScheme::RsaSsa | SigScheme::RsaPss => {
                SignatureValue::Rsa(r.tpm2b("signature.sig", MAX_RSA_KEY_BYTES)?.to_vec())
            }
            SigScheme::EcDsa => SignatureValue::Ecc {
                r: r.tpm2b("signature.signatureR", MAX_ECC_KEY_BYTES)?.to_vec(),
                s: r.tpm2b("signature.signatureS", MAX_ECC_KEY_BYTES)?.to_vec(),
            },
        };
        Ok(Self {
            scheme,
            hash,
            value,
            raw: false,
        })
    }

    /// A bare RSASSA-PKCS1-v1_5 signature (no `TPMT_SIGNATURE` header) whose hash the caller knows.
    pub fn raw_rsassa(signature: &[u8], hash: HashAlg) -> Self {
        Self {
            scheme: SigScheme::RsaSsa,
            hash,
            value: SignatureValue::Rsa(signature.to_vec()),
            raw: true,
        }
    }

    /// A signature without the `TPMT_SIGNATURE` header, as `tpm2_quote -f plain` and other stacks
    /// write it: for an RSA key the bare signature (`scheme` RSASSA or RSAPSS), for an ECC key a
    /// DER `ECDSA-Sig-Value` (SEC 1 §C.5). `hash` is the scheme's hash, which the bytes do not say.
    ///
    /// # Errors
    /// An ECC key with a signature that is not DER, or a key that cannot sign quotes.
    pub fn plain(
        signature: &[u8],
        key: &VerifyingKey,
        scheme: SigScheme,
        hash: HashAlg,
    ) -> Result<Self> {
        match key {
            VerifyingKey::Rsa(_) => Ok(Self {
                scheme: if scheme == SigScheme::RsaPss {
                    SigScheme::RsaPss
                } else {
                    SigScheme::RsaSsa
                },
                hash,
                value: SignatureValue::Rsa(signature.to_vec()),
                raw: true,
            }),
            VerifyingKey::P256(_) | VerifyingKey::P384(_) => {
                #[derive(der::Sequence)]
                struct EcdsaSig<'a> {
                    r: der::asn1::UintRef<'a>,
                    s: der::asn1::UintRef<'a>,
                }
                let v =
                    secllama_protocol::x690::parse::<EcdsaSig<'_>>(signature).map_err(|found| {
                        TpmError::input("plain ECDSA signature", "a DER ECDSA-Sig-Value", found)
                    })?;
                Ok(Self {
                    scheme: SigScheme::EcDsa,
                    hash,
                    value: SignatureValue::Ecc {
                        r: v.r.as_bytes().to_vec(),
                        s: v.s.as_bytes().to_vec(),
                    },
                    raw: true,
                })
            }
            other => Err(TpmError::input(
                "signature key",
                "an RSA, P-256 or P-384 key",
                format!("an {} key", other.describe()),
            )),
        }
    }

    /// The marshalled `TPMT_SIGNATURE`.
    pub fn marshal(&self) -> Result<Vec<u8>> {
        let mut out = self.scheme.id().to_be_bytes().to_vec();
        out.extend_from_slice(&self.hash.alg_id().to_be_bytes());
        match &self.value {
            SignatureValue::Rsa(sig) => put_tpm2b(&mut out, "sig", sig)?,
            SignatureValue::Ecc { r, s } => {
                put_tpm2b(&mut out, "signatureR", r)?;
                put_tpm2b(&mut out, "signatureS", s)?;
            }
        }
        Ok(out)
    }

    /// The scheme and hash, e.g. `RSASSA-SHA256`.
    pub fn describe(&self) -> String {
        format!(
            "{}-{}",
            self.scheme.name(),
            self.hash.name().to_ascii_uppercase()
        )
    }

    /// Verifies the signature over `message` (hashed here with the scheme's hash) under `key`.
    /// RSASSA-PSS accepts a salt as long as the hash (what TPMs use) or the largest salt the key
    /// allows (some older TPMs).
    pub fn verify(&self, key: &VerifyingKey, message: &[u8]) -> Result<()> {
        self.verify_as("TPMS_ATTEST", key, message)
    }

    /// [`Self::verify`], naming the signed structure `what` in the error.
    pub(crate) fn verify_as(&self, what: &str, key: &VerifyingKey, message: &[u8]) -> Result<()> {
        let digest = self.hash.hash(&[message]);
        let bad = || TpmError::BadSignature {
            what: what.into(),
            scheme: self.describe(),
        };
        let ok = match (&self.value, key) {
            (SignatureValue::Rsa(sig), VerifyingKey::Rsa(k)) => {
                if sig.len() != k.size() {
                    return Err(TpmError::input(
                        "RSA signature",
                        format!("{} bytes (the modulus size)", k.size()),
                        format!("{} bytes", sig.len()),
                    ));
                }
                // aws-lc-rs first (openssl's speed); the rsa crate for what it does not take
                // (keys under 2048 bits, a PSS salt other than the hash length).
                if aws_lc_rsa(self.scheme, self.hash, k, message, sig) {
                    true
                } else {
                    match self.scheme {
                        SigScheme::RsaPss => {
                            let em_len = (k.n().bits() - 1).div_ceil(8);
                            let max_salt = em_len.saturating_sub(self.hash.size() + 2);
                            [self.hash.size(), max_salt]
                                .into_iter()
                                .any(|salt| k.verify(pss(self.hash, salt), &digest, sig).is_ok())
                        }
                        _ => {
                            k.n().bits() < 2048
                                && k.verify(pkcs1v15(self.hash), &digest, sig).is_ok()
                        }
                    }
                }
            }
            (SignatureValue::Ecc { r, s }, VerifyingKey::P256(k)) => padded_rs(r, s, 32)
                .and_then(|b| p256::ecdsa::Signature::from_slice(&b).ok())
                .is_some_and(|sig| k.verify_prehash(&digest, &sig).is_ok()),
            (SignatureValue::Ecc { r, s }, VerifyingKey::P384(k)) => padded_rs(r, s, 48)
                .and_then(|b| p384::ecdsa::Signature::from_slice(&b).ok())
                .is_some_and(|sig| k.verify_prehash(&digest, &sig).is_ok()),
            (_, key) => {
                return Err(TpmError::input(
                    "signature key",
                    format!("a key that can verify {}", self.describe()),
                    format!("an {} key", key.describe()),
                ));
            }
        };
        if ok { Ok(()) } else { Err(bad()) }
    }
}

/// RSA verification with aws-lc-rs (keys of 2048 to 8192 bits; PSS with a salt as long as the
/// hash). False when it does not verify or aws-lc-rs does not take the key.
fn aws_lc_rsa(
    scheme: SigScheme,
    hash: HashAlg,
    key: &rsa::RsaPublicKey,
    message: &[u8],
    sig: &[u8],
) -> bool {
    use aws_lc_rs::signature::{self as s, VerificationAlgorithm};
    use rsa::pkcs1::EncodeRsaPublicKey;
    let alg: &'static dyn VerificationAlgorithm = match (scheme, hash) {
        (SigScheme::RsaPss, HashAlg::Sha256) => &s::RSA_PSS_2048_8192_SHA256,
        (SigScheme::RsaPss, HashAlg::Sha384) => &s::RSA_PSS_2048_8192_SHA384,
        (SigScheme::RsaPss, HashAlg::Sha512) => &s::RSA_PSS_2048_8192_SHA512,
        (SigScheme::RsaPss, HashAlg::Sha1) => return false,
        (_, HashAlg::Sha1) => &s::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (_, HashAlg::Sha256) => &s::RSA_PKCS1_2048_8192_SHA256,
        (_, HashAlg::Sha384) => &s::RSA_PKCS1_2048_8192_SHA384,
        (_, HashAlg::Sha512) => &s::RSA_PKCS1_2048_8192_SHA512,
    };
    let Ok(der) = key.to_pkcs1_der() else {
        return false;
    };
    s::UnparsedPublicKey::new(alg, der.as_bytes())
        .verify(message, sig)
        .is_ok()
}

fn pkcs1v15(hash: HashAlg) -> rsa::Pkcs1v15Sign {
    match hash {
        HashAlg::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn pss(hash: HashAlg, salt: usize) -> rsa::Pss {
    match hash {
        HashAlg::Sha1 => rsa::Pss::new_with_salt::<sha1::Sha1>(salt),
        HashAlg::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
        HashAlg::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
        HashAlg::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
    }
}

/// r ‖ s, each left-padded to the field size (a TPM may drop leading zero bytes); `None` if either
/// is longer than the field.
fn padded_rs(r: &[u8], s: &[u8], field: usize) -> Option<Vec<u8>> {
    if r.len() > field || s.len() > field {
        return None;
    }
    let mut bytes = vec![0u8; 2 * field];
    bytes[field - r.len()..field].copy_from_slice(r);
    bytes[2 * field - s.len()..].copy_from_slice(s);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_marshal_round_trip_and_errors() {
        let sig = TpmSignature {
            scheme: SigScheme::EcDsa,
            hash: HashAlg::Sha384,
            value: SignatureValue::Ecc {
                r: vec![1; 48],
                s: vec![2; 47],
            },
            raw: false,
        };
        let bytes = sig.marshal().unwrap();
        assert_eq!(TpmSignature::parse(&bytes).unwrap(), sig);
        for len in 0..bytes.len() {
            assert!(TpmSignature::parse(&bytes[..len]).is_err());
        }
        let mut null = bytes.clone();
        null[1] = 0x10;
        let e = TpmSignature::parse(&null).unwrap_err().to_string();
        assert!(
            e.contains("TPMT_SIGNATURE.sigAlg at byte 0") && e.contains("TPM_ALG_NULL"),
            "{e}"
        );
        let mut sm3 = bytes.clone();
        sm3[3] = 0x12;
        let e = TpmSignature::parse(&sm3).unwrap_err().to_string();
        assert!(e.contains("signature.hash at byte 2"), "{e}");
        assert_eq!(sig.describe(), "ECDSA-SHA384");
    }

    #[test]
    fn ecdsa_p256_with_any_hash_verifies() {
        use p256::ecdsa::SigningKey;
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let key = VerifyingKey::P256(*sk.verifying_key());
        let msg = b"quote";
        for hash in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha1] {
            let (sig, _) = sk.sign_prehash_recoverable(&hash.hash(&[msg])).unwrap();
            let (r, s) = sig.split_bytes();
            // A TPM may strip a leading zero: drop one when present.
            let r = r.iter().skip_while(|b| **b == 0).copied().collect();
            let t = TpmSignature {
                scheme: SigScheme::EcDsa,
                hash,
                value: SignatureValue::Ecc { r, s: s.to_vec() },
                raw: false,
            };
            t.verify(&key, msg).unwrap();
            assert!(matches!(
                t.verify(&key, b"other"),
                Err(TpmError::BadSignature { .. })
            ));
        }
    }
}
