//! The reference manifest (`docs/manifest.md`): one TOML file with everything a verifier compares
//! evidence against — expected PCR values per bank, expected enclave digests, trusted AK publics,
//! AK certificate roots and EK CAs, the SEV-SNP launch digest, minimum TCB and guest policy, and
//! which evidence kinds are required. `secllama measure launch --manifest` writes it from the
//! artifacts; `secllama-verify` reads it. Unknown keys, malformed hex and wrong digest lengths are
//! errors that name the key.

use crate::eventlog::{Bank, PcrValues};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Manifest format version this crate reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// An invalid manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML of the manifest's shape (includes unknown keys).
    #[error("reference manifest: {0}")]
    Syntax(String),
    /// A value has the wrong form.
    #[error("reference manifest: {key}: expected {expected}, found {found}")]
    Invalid {
        /// The key.
        key: String,
        /// What is allowed.
        expected: String,
        /// What was there.
        found: String,
    },
}

/// Which evidence kinds must be present and affirming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Required {
    /// TPM quote + event log (default true).
    #[serde(default = "yes")]
    pub tpm: bool,
    /// AMD SEV-SNP report (default false).
    #[serde(default)]
    pub snp: bool,
}

fn yes() -> bool {
    true
}

impl Default for Required {
    fn default() -> Self {
        Self {
            tpm: true,
            snp: false,
        }
    }
}

/// Expected SHA-256 digests of the enclave's components (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveDigests {
    /// The agent binary.
    pub agent: String,
    /// The runner binary.
    pub runner: String,
    /// The model files.
    pub model: String,
    /// The policy.
    pub policy: String,
    /// The agent config.
    pub config: String,
    /// Measured folders (`[launch] trees`) by path as the launch names them: SHA-256 of each
    /// folder's listing (`measurements::tree`). Every tree the enclave reports must be here, and
    /// every tree here must be reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trees: BTreeMap<String, String>,
}

/// How AKs are trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmTrust {
    /// Pinned AK publics: TPM2B_PUBLIC or TPMT_PUBLIC in hex, or PEM SubjectPublicKeyInfo.
    #[serde(default)]
    pub ak_publics: Vec<String>,
    /// PEM certificates (roots and intermediates) an AK certificate may chain to.
    #[serde(default)]
    pub ak_roots: Vec<String>,
    /// PEM certificates of EK CAs, for EK certificate + credential activation.
    #[serde(default)]
    pub ek_cas: Vec<String>,
    /// Accept SHA-1 quote signatures.
    #[serde(default)]
    pub allow_sha1: bool,
}

/// Minimum SEV-SNP TCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinTcb {
    /// FMC SVN (Turin and later).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fmc: u8,
    /// Boot loader SVN.
    pub bootloader: u8,
    /// TEE (PSP OS) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode SVN.
    pub microcode: u8,
}

/// SEV-SNP reference values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpReference {
    /// The launch digest (48 bytes, hex).
    pub launch_digest: String,
    /// Minimum reported TCB.
    #[serde(default)]
    pub min_tcb: MinTcb,
    /// The guest policy (AMD SEV-SNP ABI Table 9), hex (e.g. "0x30000"): the report's policy may
    /// grant nothing this one does not (SMT, migration agent, debug, CXL), must impose every
    /// restriction this one does (single socket, AES-256-XTS, RAPL disabled, ciphertext hiding,
    /// page swap disabled), and its minimum ABI version must be at least this one's.
    pub guest_policy: String,
    /// The VMPL the report must have been requested at.
    #[serde(default)]
    pub vmpl: u32,
    /// The product line the chain must end in (`Milan`, `Genoa`, `Turin`), or with its stepping
    /// the VEK's productName must be (`Milan-B0`), when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// HOST_DATA (32 bytes, hex), when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<String>,
    /// ID_KEY_DIGEST (48 bytes, hex), when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key_digest: Option<String>,
    /// AUTHOR_KEY_DIGEST (48 bytes, hex), when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_key_digest: Option<String>,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// The reference manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// The isolation mode the enclave must report (`process` when absent): the document's
    /// `enclave.mode` claim is compared with it.
    #[serde(default)]
    pub isolation: crate::launch::Isolation,
    /// Which evidence kinds are required.
    #[serde(default)]
    pub required: Required,
    /// Expected PCR values: bank name → PCR index (as a string key) → hex.
    #[serde(default)]
    pub pcrs: BTreeMap<String, BTreeMap<String, String>>,
    /// Expected enclave digests (may be left out by a manifest for evidence without a secllama
    /// enclave document; a secllama enclave appraised against it then fails every digest).
    #[serde(default)]
    pub enclave: EnclaveDigests,
    /// AK trust.
    #[serde(default)]
    pub tpm: TpmTrust,
    /// SEV-SNP reference values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpReference>,
    /// AWS Nitro Enclaves reference values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nitro: Option<NitroReference>,
}

/// AWS Nitro Enclaves reference values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NitroReference {
    /// Expected PCR values: index (0–31, as a string key) → 48-byte SHA-384 hex. PCR0 is the
    /// enclave image, PCR1 the kernel and boot ramdisk, PCR2 the application, PCR3 the parent's
    /// IAM role, PCR4 the parent instance, PCR8 the image's signing certificate.
    #[serde(default)]
    pub pcrs: BTreeMap<String, String>,
    /// Accept a debug-mode enclave (PCR0–2 all zero). Off by default: a debug enclave's memory is
    /// readable by its parent.
    #[serde(default)]
    pub allow_debug: bool,
}

fn check_hex(key: &str, value: &str, len: usize) -> Result<Vec<u8>, ManifestError> {
    let bad = || ManifestError::Invalid {
        key: key.to_string(),
        expected: format!("{len} bytes of lower- or upper-case hex"),
        found: format!("{value:?}"),
    };
    let bytes = hex::decode(value).map_err(|_| bad())?;
    if bytes.len() != len {
        return Err(bad());
    }
    Ok(bytes)
}

impl Manifest {
    /// The reference manifest for a launch prediction: TPM evidence required, the predicted PCRs
    /// and enclave digests, no AK trust yet (the caller adds it).
    pub fn for_launch(p: &crate::launch::Prediction) -> Self {
        let d = &p.digests;
        let mut m = Manifest {
            version: MANIFEST_VERSION,
            isolation: crate::launch::Isolation::Process,
            required: Required {
                tpm: true,
                snp: false,
            },
            pcrs: Default::default(),
            enclave: EnclaveDigests {
                agent: hex::encode(d.agent),
                runner: hex::encode(d.runner),
                model: hex::encode(d.model),
                policy: hex::encode(d.policy),
                config: hex::encode(d.config),
                trees: d
                    .trees
                    .iter()
                    .map(|(name, digest)| (name.clone(), hex::encode(digest)))
                    .collect(),
            },
            tpm: TpmTrust::default(),
            snp: None,
            nitro: None,
        };
        m.set_pcrs(&p.pcrs);
        m
    }

    /// Parses and validates a manifest.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Serializes (validating first).
    pub fn to_toml(&self) -> Result<String, ManifestError> {
        self.validate()?;
        toml::to_string_pretty(self).map_err(|e| ManifestError::Syntax(e.to_string()))
    }

    /// Checks every value's form.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Invalid {
                key: "version".into(),
                expected: MANIFEST_VERSION.to_string(),
                found: self.version.to_string(),
            });
        }
        self.expected_pcrs()?;
        let e = &self.enclave;
        // Left out entirely: a manifest for evidence without a secllama enclave document (a Nitro
        // enclave, a bare SNP report, an Azure CVM). A secllama document appraised against it
        // fails every digest.
        let foreign = e == &EnclaveDigests::default();
        for (k, v) in [
            ("agent", &e.agent),
            ("runner", &e.runner),
            ("model", &e.model),
            ("policy", &e.policy),
            ("config", &e.config),
        ] {
            if !foreign {
                check_hex(&format!("enclave.{k}"), v, 32)?;
            }
        }
        if let Some(n) = &self.nitro {
            for (i, v) in &n.pcrs {
                if !i.parse::<u8>().is_ok_and(|i| i < 32) {
                    return Err(ManifestError::Invalid {
                        key: format!("nitro.pcrs.{i:?}"),
                        expected: "a PCR index 0-31".into(),
                        found: i.clone(),
                    });
                }
                check_hex(&format!("nitro.pcrs.{i}"), v, 48)?;
            }
        }
        for (name, v) in &e.trees {
            check_hex(&format!("enclave.trees.{name:?}"), v, 32)?;
        }
        for (i, ak) in self.tpm.ak_publics.iter().enumerate() {
            let key = format!("tpm.ak_publics[{i}]");
            if !ak.trim_start().starts_with("-----BEGIN PUBLIC KEY-----")
                && hex::decode(ak).map_or(true, |b| b.len() < 10)
            {
                return Err(ManifestError::Invalid {
                    key,
                    expected: "TPM2B/TPMT_PUBLIC hex or a PEM public key".into(),
                    found: format!("{} characters", ak.len()),
                });
            }
        }
        for (list, name) in [
            (&self.tpm.ak_roots, "tpm.ak_roots"),
            (&self.tpm.ek_cas, "tpm.ek_cas"),
        ] {
            for (i, pem) in list.iter().enumerate() {
                if !pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----") {
                    return Err(ManifestError::Invalid {
                        key: format!("{name}[{i}]"),
                        expected: "a PEM certificate".into(),
                        found: format!("{} characters", pem.len()),
                    });
                }
            }
        }
        if let Some(s) = &self.snp {
            check_hex("snp.launch_digest", &s.launch_digest, 48)?;
            for (key, value, len) in [
                ("snp.host_data", &s.host_data, 32),
                ("snp.id_key_digest", &s.id_key_digest, 48),
                ("snp.author_key_digest", &s.author_key_digest, 48),
            ] {
                if let Some(v) = value {
                    check_hex(key, v, len)?;
                }
            }
            if let Some(p) = &s.product {
                let line = p.split('-').next().unwrap_or_default().to_ascii_lowercase();
                if !["milan", "genoa", "turin"].contains(&line.as_str()) {
                    return Err(ManifestError::Invalid {
                        key: "snp.product".into(),
                        expected: "Milan, Genoa or Turin, optionally with a stepping (Milan-B0)"
                            .into(),
                        found: p.clone(),
                    });
                }
            }
            let p = s.guest_policy.trim_start_matches("0x");
            if u64::from_str_radix(p, 16).is_err() {
                return Err(ManifestError::Invalid {
                    key: "snp.guest_policy".into(),
                    expected: "a hex number such as 0x30000".into(),
                    found: s.guest_policy.clone(),
                });
            }
        }
        if self.required.snp && self.snp.is_none() {
            return Err(ManifestError::Invalid {
                key: "snp".into(),
                expected: "an [snp] section because required.snp = true".into(),
                found: "none".into(),
            });
        }
        if self.required.tpm && self.pcrs.is_empty() {
            return Err(ManifestError::Invalid {
                key: "pcrs".into(),
                expected: "PCR values because required.tpm = true".into(),
                found: "none".into(),
            });
        }
        Ok(())
    }

    /// The expected PCR values, decoded.
    pub fn expected_pcrs(&self) -> Result<PcrValues, ManifestError> {
        let mut out = PcrValues::new();
        for (bank_name, values) in &self.pcrs {
            let bank = Bank::from_name(bank_name).ok_or_else(|| ManifestError::Invalid {
                key: format!("pcrs.{bank_name}"),
                expected: "a bank: sha1, sha256, sha384 or sha512".into(),
                found: bank_name.clone(),
            })?;
            for (index, value) in values {
                let key = format!("pcrs.{bank_name}.{index}");
                let i: u32 = index.parse().ok().filter(|i| *i <= 23).ok_or_else(|| {
                    ManifestError::Invalid {
                        key: key.clone(),
                        expected: "a PCR index 0 to 23".into(),
                        found: index.clone(),
                    }
                })?;
                out.entry(bank)
                    .or_default()
                    .insert(i, check_hex(&key, value, bank.size())?);
            }
        }
        Ok(out)
    }

    /// Sets the expected PCRs from decoded values.
    pub fn set_pcrs(&mut self, pcrs: &PcrValues) {
        self.pcrs = pcrs
            .iter()
            .map(|(b, m)| {
                (
                    b.name().to_string(),
                    m.iter()
                        .map(|(i, v)| (i.to_string(), hex::encode(v)))
                        .collect(),
                )
            })
            .collect();
    }
}
