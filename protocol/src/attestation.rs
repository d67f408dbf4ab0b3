//! The attestation document (DESIGN.md "Attestation document"): a COSE_Sign1, ES256, signed by the
//! enclave's signing key, whose payload is a CBOR map with EAT (RFC 9711) keys where one exists —
//! `eat_nonce` 10, `iat` 6, `eat_profile` 265, `measurements` 273 — and text keys otherwise (`keys`,
//! `enclave`, `tpm`, `snp`, `log`).
//!
//! `measurements` (273) carries the enclave's component digests as a map from component name
//! (`agent`, `runner`, `model`, `policy`, `config`) to SHA-256; `enclave` carries the isolation mode
//! and agent version. The payload is deterministic CBOR and is decoded strictly: at most 64 KiB, no
//! unknown keys, no duplicate keys, no trailing bytes, exact types and digest lengths.
//!
//! Both enclave keys are bound to the TEE evidence through [`binding`]:
//! `SHA-256("secllama/attest/v1" ‖ nonce ‖ SHA-256(signing_pub_cose) ‖ SHA-256(encryption_pub_spki_der))`.

use crate::cbor::{self, Key, MapReader, Value};
use crate::cose::{self, CoseP256Key, Sign1Policy, SigningKey};
use crate::{Kid, Nonce, ProtocolError, Result, Sha256Digest, sha256};
use std::collections::BTreeMap;

/// `eat_profile` of every secllama attestation document.
pub const EAT_PROFILE: &str = "tag:secllama,2026:attestation/v1";
/// COSE content type of the attestation document.
pub const CONTENT_TYPE: &str = "application/vnd.secllama.attestation+cbor";
/// Largest accepted attestation document (the whole COSE_Sign1).
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;
/// Domain separator of the key binding.
pub const BINDING_CONTEXT: &[u8] = b"secllama/attest/v1";
/// Size of an AMD SEV-SNP attestation report.
pub const SNP_REPORT_LEN: usize = 1184;

const EAT_NONCE: Key = Key::Int(10);
const IAT: Key = Key::Int(6);
const EAT_PROFILE_KEY: Key = Key::Int(265);
const MEASUREMENTS: Key = Key::Int(273);

/// How the enclave is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationMode {
    /// A TPM-measured Linux process sandbox.
    Process,
    /// A (confidential) virtual machine.
    Vm,
}

impl IsolationMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Vm => "vm",
        }
    }
}

/// SHA-256 digests of every measured enclave component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveDigests {
    /// The agent binary.
    pub agent: Sha256Digest,
    /// The runner binary.
    pub runner: Sha256Digest,
    /// The model files.
    pub model: Sha256Digest,
    /// The policy file.
    pub policy: Sha256Digest,
    /// The agent's config.
    pub config: Sha256Digest,
    /// Measured folders (`[launch] trees`) by their path as the launch names them: SHA-256 of
    /// each folder's listing. Encoded as `"trees"` inside `measurements` only when not empty.
    pub trees: BTreeMap<String, Sha256Digest>,
}

/// Isolation mode and agent version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveInfo {
    /// The isolation mode.
    pub mode: IsolationMode,
    /// The agent's version string.
    pub agent_version: String,
}

/// The enclave's public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveKeys {
    /// The ES256 signing key.
    pub signing: CoseP256Key,
    /// The RSA-3072 encryption key, SubjectPublicKeyInfo DER.
    pub encryption_spki: Vec<u8>,
}

/// PCR values by bank name (`sha1`, `sha256`, `sha384`, `sha512`) and index.
pub type PcrValues = BTreeMap<String, BTreeMap<u32, Vec<u8>>>;

/// TPM evidence: a quote and what is needed to appraise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmEvidence {
    /// The signed TPMS_ATTEST bytes.
    pub attest: Vec<u8>,
    /// The TPMT_SIGNATURE bytes.
    pub signature: Vec<u8>,
    /// The AK's TPM2B_PUBLIC bytes.
    pub ak_public: Vec<u8>,
    /// The quoted PCR values.
    pub pcrs: PcrValues,
    /// The TCG event log.
    pub event_log: Vec<u8>,
    /// The EK certificate (DER), when available.
    pub ek_cert: Option<Vec<u8>>,
}

/// AMD SEV-SNP evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The 1184-byte attestation report.
    pub report: Vec<u8>,
    /// The VCEK certificate (DER), when cached.
    pub vcek: Option<Vec<u8>>,
}

/// The receipt log's current state, and the key that signs its heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 Merkle tree root of those entries.
    pub root: Sha256Digest,
    /// The log identity key (its kid is the log id of every head).
    pub key: crate::cose::CoseP256Key,
    /// The latest signed tree head (COSE_Sign1, [`crate::tree_head`]); its size is at most `size`.
    pub head: Vec<u8>,
}

/// The attestation document payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationPayload {
    /// `eat_nonce`: the verifier's nonce.
    pub nonce: Nonce,
    /// `iat`: issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// `keys`.
    pub keys: EnclaveKeys,
    /// `enclave`.
    pub enclave: EnclaveInfo,
    /// `measurements`.
    pub measurements: EnclaveDigests,
    /// `tpm`, when the enclave has a TPM.
    pub tpm: Option<TpmEvidence>,
    /// `snp`, when the enclave runs in an SEV-SNP guest.
    pub snp: Option<SnpEvidence>,
    /// `log`.
    pub log: LogState,
}

/// The key binding placed in TPM qualifying data and SNP report_data.
pub fn binding(nonce: &Nonce, signing_pub_cose: &[u8], encryption_spki_der: &[u8]) -> Sha256Digest {
    sha256(&[
        BINDING_CONTEXT,
        nonce.as_bytes(),
        &sha256(&[signing_pub_cose]).0,
        &sha256(&[encryption_spki_der]).0,
    ])
}

fn bank_len(bank: &str) -> Option<usize> {
    match bank {
        "sha1" => Some(20),
        "sha256" => Some(32),
        "sha384" => Some(48),
        "sha512" => Some(64),
        _ => None,
    }
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

impl AttestationPayload {
    /// The key binding of this payload's keys for its nonce.
    pub fn binding(&self) -> Result<Sha256Digest> {
        Ok(binding(
            &self.nonce,
            &self.keys.signing.to_bytes()?,
            &self.keys.encryption_spki,
        ))
    }

    /// The payload as a CBOR value.
    pub fn to_value(&self) -> Value {
        let d = &self.measurements;
        let mut entries = vec![
            (EAT_NONCE, bytes(self.nonce.as_bytes())),
            (IAT, Value::Integer(self.iat.into())),
            (EAT_PROFILE_KEY, Value::Text(EAT_PROFILE.into())),
            (MEASUREMENTS, {
                let mut m = vec![
                    (Key::Text("agent"), bytes(&d.agent.0)),
                    (Key::Text("runner"), bytes(&d.runner.0)),
                    (Key::Text("model"), bytes(&d.model.0)),
                    (Key::Text("policy"), bytes(&d.policy.0)),
                    (Key::Text("config"), bytes(&d.config.0)),
                ];
                if !d.trees.is_empty() {
                    let trees = d
                        .trees
                        .iter()
                        .map(|(name, digest)| (Value::Text(name.clone()), bytes(&digest.0)))
                        .collect();
                    m.push((Key::Text("trees"), Value::Map(trees)));
                }
                cbor::map(m)
            }),
            (
                Key::Text("keys"),
                cbor::map(vec![
                    (Key::Text("signing"), self.keys.signing.to_value()),
                    (Key::Text("encryption"), bytes(&self.keys.encryption_spki)),
                ]),
            ),
            (
                Key::Text("enclave"),
                cbor::map(vec![
                    (
                        Key::Text("mode"),
                        Value::Text(self.enclave.mode.as_str().into()),
                    ),
                    (
                        Key::Text("agent_version"),
                        Value::Text(self.enclave.agent_version.clone()),
                    ),
                ]),
            ),
            (
                Key::Text("log"),
                cbor::map(vec![
                    (Key::Text("size"), Value::Integer(self.log.size.into())),
                    (Key::Text("root"), bytes(&self.log.root.0)),
                    (Key::Text("key"), self.log.key.to_value()),
                    (Key::Text("head"), bytes(&self.log.head)),
                ]),
            ),
        ];
        if let Some(t) = &self.tpm {
            let pcrs = t
                .pcrs
                .iter()
                .map(|(bank, values)| {
                    let inner = values
                        .iter()
                        .map(|(i, v)| (Value::Integer((*i).into()), bytes(v)))
                        .collect();
                    (Value::Text(bank.clone()), Value::Map(inner))
                })
                .collect();
            let mut tpm = vec![
                (Key::Text("attest"), bytes(&t.attest)),
                (Key::Text("signature"), bytes(&t.signature)),
                (Key::Text("ak_public"), bytes(&t.ak_public)),
                (Key::Text("pcrs"), Value::Map(pcrs)),
                (Key::Text("event_log"), bytes(&t.event_log)),
            ];
            if let Some(c) = &t.ek_cert {
                tpm.push((Key::Text("ek_cert"), bytes(c)));
            }
            entries.push((Key::Text("tpm"), cbor::map(tpm)));
        }
        if let Some(s) = &self.snp {
            let mut snp = vec![(Key::Text("report"), bytes(&s.report))];
            if let Some(v) = &s.vcek {
                snp.push((Key::Text("vcek"), bytes(v)));
            }
            entries.push((Key::Text("snp"), cbor::map(snp)));
        }
        cbor::map(entries)
    }

    /// Deterministic CBOR encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cbor::to_vec(&self.to_value())
    }

    /// Strictly decodes a payload.
    pub fn from_bytes(payload: &[u8]) -> Result<Self> {
        let value = cbor::decode_deterministic("attestation payload", payload, MAX_DOCUMENT_LEN)?;
        let mut r = MapReader::new("attestation", value)?;
        let nonce = Nonce::new(r.bytes(EAT_NONCE)?)?;
        let iat = r.uint(IAT)?;
        let profile = r.text(EAT_PROFILE_KEY)?;
        if profile != EAT_PROFILE {
            return Err(ProtocolError::mismatch(
                "attestation.eat_profile",
                EAT_PROFILE,
                profile,
            ));
        }
        let mut m = r.map(MEASUREMENTS)?;
        let mut digest = |name: &'static str| r_digest(&mut m, name);
        let measurements = EnclaveDigests {
            agent: digest("agent")?,
            runner: digest("runner")?,
            model: digest("model")?,
            policy: digest("policy")?,
            config: digest("config")?,
            trees: read_trees(m.opt_map(Key::Text("trees"))?)?,
        };
        m.finish()?;

        let mut k = r.map(Key::Text("keys"))?;
        let signing = CoseP256Key::from_value(
            "attestation.keys.signing",
            k.require(Key::Text("signing"), "a COSE_Key")?,
        )?;
        let keys = EnclaveKeys {
            signing,
            encryption_spki: k.bytes(Key::Text("encryption"))?,
        };
        k.finish()?;

        let mut e = r.map(Key::Text("enclave"))?;
        let mode = match e.text(Key::Text("mode"))?.as_str() {
            "process" => IsolationMode::Process,
            "vm" => IsolationMode::Vm,
            other => {
                return Err(ProtocolError::mismatch(
                    "attestation.enclave.mode",
                    "\"process\" or \"vm\"",
                    other,
                ));
            }
        };
        let enclave = EnclaveInfo {
            mode,
            agent_version: e.text(Key::Text("agent_version"))?,
        };
        e.finish()?;

        let mut l = r.map(Key::Text("log"))?;
        let log = LogState {
            size: l.uint(Key::Text("size"))?,
            root: Sha256Digest(l.array(Key::Text("root"))?),
            key: crate::cose::CoseP256Key::from_value(
                "attestation.log.key",
                l.require(Key::Text("key"), "the log key's COSE_Key")?,
            )?,
            head: l.bytes(Key::Text("head"))?,
        };
        l.finish()?;

        let tpm = r.opt_map(Key::Text("tpm"))?.map(read_tpm).transpose()?;
        let snp = match r.opt_map(Key::Text("snp"))? {
            None => None,
            Some(mut s) => {
                let report = s.bytes(Key::Text("report"))?;
                if report.len() != SNP_REPORT_LEN {
                    return Err(ProtocolError::length(
                        "attestation.snp.report",
                        "1184",
                        report.len(),
                    ));
                }
                let vcek = s.opt_bytes(Key::Text("vcek"))?;
                s.finish()?;
                Some(SnpEvidence { report, vcek })
            }
        };
        r.finish()?;
        Ok(Self {
            nonce,
            iat,
            keys,
            enclave,
            measurements,
            tpm,
            snp,
            log,
        })
    }
}

fn r_digest(m: &mut MapReader, name: &'static str) -> Result<Sha256Digest> {
    Ok(Sha256Digest(m.array(Key::Text(name))?))
}

fn read_trees(m: Option<MapReader>) -> Result<BTreeMap<String, Sha256Digest>> {
    let mut out = BTreeMap::new();
    let Some(m) = m else { return Ok(out) };
    let (what, entries) = m.into_entries();
    if entries.is_empty() {
        // Absent when empty: an empty map is a second encoding of the same claim.
        return Err(ProtocolError::mismatch(
            &what,
            "at least one tree (the key is left out when there is none)",
            "an empty map",
        ));
    }
    for (name, digest) in entries {
        let name = match name {
            Value::Text(t) => t,
            other => {
                return Err(ProtocolError::WrongType {
                    field: what,
                    expected: "a tree path (text)".into(),
                    found: cbor::describe_value(&other),
                });
            }
        };
        let field = format!("{what}.{name}");
        let digest = cbor::as_bytes(&field, digest)?;
        let digest: [u8; 32] = digest
            .as_slice()
            .try_into()
            .map_err(|_| ProtocolError::length(&field, "32", digest.len()))?;
        out.insert(name, Sha256Digest(digest));
    }
    Ok(out)
}

fn read_tpm(mut t: MapReader) -> Result<TpmEvidence> {
    let attest = t.bytes(Key::Text("attest"))?;
    let signature = t.bytes(Key::Text("signature"))?;
    let ak_public = t.bytes(Key::Text("ak_public"))?;
    let (what, banks) = t.map(Key::Text("pcrs"))?.into_entries();
    let mut pcrs = PcrValues::new();
    for (bank, values) in banks {
        let bank = match bank {
            Value::Text(b) => b,
            other => {
                return Err(ProtocolError::WrongType {
                    field: what,
                    expected: "a bank name".into(),
                    found: cbor::describe_value(&other),
                });
            }
        };
        let field = format!("{what}.{bank}");
        let len = bank_len(&bank).ok_or_else(|| {
            ProtocolError::mismatch(&field, "sha1, sha256, sha384 or sha512", bank.as_str())
        })?;
        let (_, entries) = MapReader::new(&field, values)?.into_entries();
        let mut out = BTreeMap::new();
        for (index, digest) in entries {
            let index = cbor::as_uint(&field, &index)?;
            if index > 23 {
                return Err(ProtocolError::mismatch(
                    &field,
                    "PCR index 0 to 23",
                    index.to_string(),
                ));
            }
            let digest = cbor::as_bytes(&field, digest)?;
            if digest.len() != len {
                return Err(ProtocolError::length(
                    format!("{field}.{index}"),
                    len.to_string(),
                    digest.len(),
                ));
            }
            out.insert(index as u32, digest);
        }
        pcrs.insert(bank, out);
    }
    let event_log = t.bytes(Key::Text("event_log"))?;
    let ek_cert = t.opt_bytes(Key::Text("ek_cert"))?;
    t.finish()?;
    Ok(TpmEvidence {
        attest,
        signature,
        ak_public,
        pcrs,
        event_log,
        ek_cert,
    })
}

/// An attestation document whose self-signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// The decoded payload.
    pub payload: AttestationPayload,
    /// The signing key id (SHA-256 of its COSE_Key), equal to the protected header's kid.
    pub kid: Kid,
    /// SHA-256 of the whole document: what sealed requests bind to.
    pub digest: Sha256Digest,
}

/// Signs `payload` into an attestation document. The key must be the payload's signing key.
pub fn sign_document(payload: &AttestationPayload, key: &SigningKey) -> Result<Vec<u8>> {
    if key.public() != payload.keys.signing {
        return Err(ProtocolError::Key {
            what: "attestation signing key".into(),
            expected: "the signing key named in the payload".into(),
            found: "another key".into(),
        });
    }
    let doc = cose::sign(key, CONTENT_TYPE, &payload.to_bytes()?, &[])?;
    if doc.len() > MAX_DOCUMENT_LEN {
        return Err(ProtocolError::TooLarge {
            what: "attestation document".into(),
            limit: MAX_DOCUMENT_LEN,
            found: doc.len(),
        });
    }
    Ok(doc)
}

/// The policy our own signed objects are verified under.
pub(crate) fn own_policy(content_type: &'static str, max_len: usize) -> Sign1Policy<'static> {
    Sign1Policy {
        external_aad: &[],
        content_type: Some(content_type),
        empty_unprotected: true,
        deterministic: true,
        max_len,
    }
}

/// Verifies a document's COSE signature under the signing key it carries, checks that the protected
/// kid names that key, and decodes the payload. Appraising the TEE evidence is the verifier's job.
pub fn open_document(doc: &[u8]) -> Result<VerifiedDocument> {
    let policy = own_policy(CONTENT_TYPE, MAX_DOCUMENT_LEN);
    let parsed = cose::sign1::parse(doc, &policy)?;
    let unverified = parsed
        .unverified_payload()
        .ok_or_else(|| ProtocolError::Missing {
            field: "attestation document payload".into(),
            expected: "an attached payload".into(),
        })?;
    let payload = AttestationPayload::from_bytes(unverified)?;
    let kid = payload.keys.signing.kid()?;
    if parsed.protected_kid() != kid.0 {
        return Err(ProtocolError::mismatch(
            "attestation document kid",
            kid.to_hex(),
            parsed
                .protected_kid()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        ));
    }
    parsed.verify(&payload.keys.signing.verifying_key()?, &policy)?;
    Ok(VerifiedDocument {
        payload,
        kid,
        digest: sha256(&[doc]),
    })
}

/// Checks that a document answers the verifier's `nonce`.
pub fn check_nonce(doc: &VerifiedDocument, nonce: &Nonce) -> Result<()> {
    if doc.payload.nonce != *nonce {
        return Err(ProtocolError::mismatch(
            "attestation eat_nonce",
            "the verifier's nonce",
            "another nonce",
        ));
    }
    Ok(())
}
