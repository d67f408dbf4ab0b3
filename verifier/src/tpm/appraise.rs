//! Appraisal of a TPM2_Quote (Part 3 §18.4): the `TPMS_ATTEST` a TPM signed, its `TPMT_SIGNATURE`,
//! the attestation key, and what the verifier expects (its nonce, the PCR values it was given).
//!
//! Every check runs that can run, so one report lists every problem: a quote whose bytes do not
//! parse still has its signature, magic and type checked on the exact bytes. The checks:
//! magic is `TPM_GENERATED_VALUE`; type is `TPM_ST_ATTEST_QUOTE`; `extraData` equals the nonce
//! (constant time); the quoted PCR selection is exactly the supplied values' selection; `pcrDigest`
//! equals H_sign(selected values concatenated in selection order), where H_sign is the signing
//! scheme's hash whatever bank is quoted; the signature verifies under the AK over the exact
//! `TPMS_ATTEST` bytes; SHA-1 signatures only when allowed; an AK given as a `TPMT_PUBLIC` is a
//! restricted signing key and the signature uses its scheme; and, when the caller names one, the
//! quote's `qualifiedSigner` is the expected qualified name.
//!
//! Whether the AK itself is trustworthy is a separate question: see [`super::trust`] and
//! [`super::cert`].

use super::alg::HashAlg;
use super::attest::{self, Attest, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
use super::error::{Result, TpmError};
use super::pcr::PcrValues;
use super::public::TpmPublic;
use super::signature::TpmSignature;
use secllama_protocol::cose::VerifyingKey;
use subtle::ConstantTimeEq;

/// The attestation key: a TPM public area (whose attributes are checked) or a bare public key
/// (PEM/DER SubjectPublicKeyInfo or JWK, e.g. Azure's `HCLAkPub`).
#[derive(Debug, Clone)]
pub enum AkPublic {
    /// A `TPMT_PUBLIC`.
    Tpm(Box<TpmPublic>),
    /// A bare key: its TPM attributes are vouched for by whoever supplied it.
    Key(VerifyingKey),
}

impl AkPublic {
    /// Reads an AK from PEM SubjectPublicKeyInfo, DER SubjectPublicKeyInfo, a JWK, a
    /// `TPM2B_PUBLIC` or a `TPMT_PUBLIC`, told apart by their first bytes.
    pub fn detect(input: &[u8]) -> Result<Self> {
        let trimmed = input.trim_ascii_start();
        let key_err = |e: secllama_protocol::ProtocolError| {
            TpmError::input("AK public key", "a usable public key", e.to_string())
        };
        if trimmed.starts_with(b"-----BEGIN") || trimmed.starts_with(b"{") {
            return VerifyingKey::detect(input).map(Self::Key).map_err(key_err);
        }
        if input.first() == Some(&0x30) {
            return VerifyingKey::from_spki_der(input)
                .map(Self::Key)
                .map_err(key_err);
        }
        TpmPublic::parse(input).map(|p| Self::Tpm(Box::new(p)))
    }

    /// The key that verifies quote signatures.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        match self {
            Self::Tpm(p) => p.verifying_key(),
            Self::Key(k) => Ok(k.clone()),
        }
    }

    /// The TPM public area, when the AK was given as one.
    pub fn tpm_public(&self) -> Option<&TpmPublic> {
        match self {
            Self::Tpm(p) => Some(p),
            Self::Key(_) => None,
        }
    }
}

/// What the verifier expects of a quote.
#[derive(Debug, Clone, Copy)]
pub struct QuotePolicy<'a> {
    /// The qualifying data the verifier asked the TPM to sign (`extraData`): its nonce, or the
    /// key binding of DESIGN.md "Keys and evidence".
    pub nonce: &'a [u8],
    /// The PCR values the quote must cover, exactly.
    pub pcrs: &'a PcrValues,
    /// Accept signatures whose hash is SHA-1.
    pub allow_sha1: bool,
    /// The AK's expected qualified name, compared to `qualifiedSigner` when given.
    pub qualified_signer: Option<&'a [u8]>,
}

/// One check of an appraisal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short stable name, e.g. `nonce`.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was found; on failure, what was expected and what was found.
    pub detail: String,
}

/// The result of appraising a quote: every check with its outcome, and what could be parsed.
#[derive(Debug, Clone)]
pub struct Appraisal {
    /// The parsed quote, when it parsed.
    pub quote: Option<Attest>,
    /// The parsed signature, when it parsed.
    pub signature: Option<TpmSignature>,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl Appraisal {
    /// True only when every check passed.
    pub fn valid(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// One line per failed check: `name: expected …, found …`.
    pub fn reasons(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    fn push(&mut self, name: &'static str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            passed,
            detail: detail.into(),
        });
    }
}

/// Appraises a quote given as bytes: `attest` a `TPMS_ATTEST` or `TPM2B_ATTEST`, `signature` a
/// `TPMT_SIGNATURE`, `ak` anything [`AkPublic::detect`] reads (e.g. `TPM2B_PUBLIC` bytes from
/// tss-esapi's `Public::marshall`). Inputs that do not parse become failed checks.
pub fn appraise_quote_bytes(
    attest: &[u8],
    signature: &[u8],
    ak: &[u8],
    policy: &QuotePolicy<'_>,
) -> Appraisal {
    run(
        attest,
        TpmSignature::parse(signature),
        AkPublic::detect(ak),
        policy,
    )
}

/// Appraises a quote whose signature and AK are already parsed.
pub fn appraise_quote(
    attest: &[u8],
    signature: &TpmSignature,
    ak: &AkPublic,
    policy: &QuotePolicy<'_>,
) -> Appraisal {
    run(attest, Ok(signature.clone()), Ok(ak.clone()), policy)
}

fn run(
    attest_input: &[u8],
    signature: Result<TpmSignature>,
    ak: Result<AkPublic>,
    policy: &QuotePolicy<'_>,
) -> Appraisal {
    let mut a = Appraisal {
        quote: None,
        signature: None,
        checks: Vec::new(),
    };
    let signed = attest::signed_bytes(attest_input);
    match Attest::parse(attest_input) {
        Ok(q) => {
            let form = if q.was_tpm2b {
                "TPM2B_ATTEST"
            } else {
                "TPMS_ATTEST"
            };
            a.push(
                "attest",
                true,
                format!("{form} of {} bytes", attest_input.len()),
            );
            a.quote = Some(q);
        }
        Err(e) => a.push("attest", false, e.to_string()),
    }
    check_header(&mut a, signed);
    let sig = match signature {
        Ok(s) => {
            a.signature = Some(s.clone());
            Some(s)
        }
        Err(e) => {
            a.push(
                "signature",
                false,
                format!("TPMT_SIGNATURE did not parse: {e}"),
            );
            None
        }
    };
    let not_parsed = "not checked: the TPMS_ATTEST did not parse";
    // Nonce.
    match &a.quote {
        Some(q) => {
            let ok = bool::from(q.extra_data.as_slice().ct_eq(policy.nonce));
            let detail = if ok {
                format!(
                    "extraData is the expected nonce ({})",
                    hex_or_empty(policy.nonce)
                )
            } else {
                format!(
                    "expected extraData {}, found {}",
                    hex_or_empty(policy.nonce),
                    hex_or_empty(&q.extra_data)
                )
            };
            a.push("nonce", ok, detail);
        }
        None => a.push("nonce", false, not_parsed),
    }
    check_pcrs(&mut a, sig.as_ref(), policy.pcrs, not_parsed);
    check_signature(&mut a, signed, sig.as_ref(), ak, policy.allow_sha1);
    if let Some(expected) = policy.qualified_signer {
        match &a.quote {
            Some(q) => {
                let ok = q.qualified_signer == expected;
                let detail = if ok {
                    format!("qualifiedSigner is the expected {}", hex::encode(expected))
                } else {
                    format!(
                        "expected qualifiedSigner {}, found {}",
                        hex::encode(expected),
                        hex::encode(&q.qualified_signer)
                    )
                };
                a.push("qualified_signer", ok, detail);
            }
            None => a.push("qualified_signer", false, not_parsed),
        }
    }
    a
}

/// Magic and type, read from the signed bytes so they are reported even when the rest is broken.
fn check_header(a: &mut Appraisal, signed: &[u8]) {
    let magic = signed
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    match magic {
        Some(TPM_GENERATED_VALUE) => a.push(
            "magic",
            true,
            format!("TPM_GENERATED_VALUE (0x{TPM_GENERATED_VALUE:08x})"),
        ),
        Some(m) => a.push(
            "magic",
            false,
            format!("expected TPM_GENERATED_VALUE (0x{TPM_GENERATED_VALUE:08x}), found 0x{m:08x}"),
        ),
        None => a.push(
            "magic",
            false,
            format!(
                "expected TPM_GENERATED_VALUE (0x{TPM_GENERATED_VALUE:08x}), found {} bytes",
                signed.len()
            ),
        ),
    }
    let quote = format!("TPM_ST_ATTEST_QUOTE (0x{TPM_ST_ATTEST_QUOTE:04x})");
    match signed.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]])) {
        Some(TPM_ST_ATTEST_QUOTE) => a.push("type", true, quote),
        Some(t) => a.push("type", false, format!("expected {quote}, found 0x{t:04x}")),
        None => a.push(
            "type",
            false,
            format!("expected {quote}, found no type field"),
        ),
    }
}

fn check_pcrs(a: &mut Appraisal, sig: Option<&TpmSignature>, values: &PcrValues, not_parsed: &str) {
    let Some((quoted, pcr_digest)) = a
        .quote
        .as_ref()
        .map(|q| (q.quote.pcr_select.clone(), q.quote.pcr_digest.clone()))
    else {
        a.push("pcr_selection", false, not_parsed);
        a.push("pcr_digest", false, not_parsed);
        return;
    };
    let quoted = &quoted;
    let supplied = values.selection();
    let (ok, detail) = if quoted.same_pcrs(&supplied) {
        (
            true,
            format!("the quote covers exactly the supplied PCRs ({quoted})"),
        )
    } else {
        (
            false,
            format!("expected the quote to select the supplied PCRs {supplied}, found {quoted}"),
        )
    };
    a.push("pcr_selection", ok, detail);
    let found = hex::encode(&pcr_digest);
    let (ok, detail) = match sig.map(|s| s.hash) {
        None => (
            false,
            "not checked: the signature scheme's hash is unknown (TPMT_SIGNATURE did not parse)"
                .to_string(),
        ),
        Some(hash) => match values.digest(quoted, hash) {
            Ok(d) if d == pcr_digest => (
                true,
                format!("pcrDigest {found} = {hash}(quoted PCR values)"),
            ),
            Ok(d) => (
                false,
                format!(
                    "expected pcrDigest {} ({hash} of the supplied values in selection order), found {found}",
                    hex::encode(d)
                ),
            ),
            Err(missing) => (
                false,
                format!("expected a value for every quoted PCR, found none for {missing}"),
            ),
        },
    };
    a.push("pcr_digest", ok, detail);
}

fn check_signature(
    a: &mut Appraisal,
    signed: &[u8],
    sig: Option<&TpmSignature>,
    ak: Result<AkPublic>,
    allow_sha1: bool,
) {
    let ak = match ak {
        Ok(ak) => Some(ak),
        Err(e) => {
            a.push("ak", false, format!("AK public key unusable: {e}"));
            None
        }
    };
    if let Some(sig) = sig {
        let (ok, detail) = match (sig.hash, allow_sha1) {
            (HashAlg::Sha1, false) => (
                false,
                "expected a signature hash of SHA-256 or stronger, found SHA-1 (allow it explicitly with allow_sha1)".to_string(),
            ),
            (HashAlg::Sha1, true) => (true, "SHA-1 accepted because allow_sha1 is set".into()),
            (h, _) => (true, format!("{h}")),
        };
        a.push("signature_hash", ok, detail);
    }
    let Some(ak) = ak else {
        if sig.is_some() {
            a.push("signature", false, "not checked: no usable AK");
        }
        return;
    };
    match &ak {
        AkPublic::Tpm(p) => {
            let problems = p.ak_problems();
            let ok = problems.is_empty();
            let detail = if ok {
                format!("restricted signing key ({})", p.attributes)
            } else {
                problems.join("; ")
            };
            a.push("ak_attributes", ok, detail);
            match (p.scheme, p.signing_scheme(), sig) {
                // TPM_ALG_NULL: the key lets the caller choose; the signature check decides.
                (None, _, _) => {}
                (Some(_), Some((scheme, hash)), Some(sig)) => {
                    let ok = sig.scheme == scheme && sig.hash == hash;
                    let want = format!("{}-{}", scheme.name(), hash.name().to_ascii_uppercase());
                    let detail = if ok {
                        format!("the AK's scheme {want}")
                    } else {
                        format!("expected the AK's scheme {want}, found {}", sig.describe())
                    };
                    a.push("ak_scheme", ok, detail);
                }
                (Some(_), Some(_), None) => {}
                // A scheme that cannot sign (ECDH, OAEP, …) on a key that supposedly signed.
                (Some(s), None, _) => a.push(
                    "ak_scheme",
                    false,
                    format!(
                        "expected a signing scheme (RSASSA, RSAPSS or ECDSA with SHA-1/256/384), found {}",
                        super::alg::alg_name(s.scheme)
                    ),
                ),
            }
        }
        AkPublic::Key(k) => a.push(
            "ak_attributes",
            true,
            format!(
                "not applicable: the AK is a bare {} key, vouched for by whoever supplied it",
                k.describe()
            ),
        ),
    }
    let Some(sig) = sig else { return };
    let result = ak.verifying_key().and_then(|k| sig.verify(&k, signed));
    match result {
        Ok(()) => a.push(
            "signature",
            true,
            format!(
                "{} verifies under the AK over the {}-byte TPMS_ATTEST",
                sig.describe(),
                signed.len()
            ),
        ),
        Err(e) => a.push("signature", false, e.to_string()),
    }
}

fn hex_or_empty(b: &[u8]) -> String {
    if b.is_empty() {
        "(empty)".into()
    } else {
        hex::encode(b)
    }
}
