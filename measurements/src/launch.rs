//! Launch prediction: one function turns a launch description (agent, runner, model files, policy,
//! config) into the ordered measurement events the launcher extends and the PCR values they give.
//! The launcher extends exactly [`Prediction::measurements`] (same bytes, same order), so prediction
//! and reality cannot drift; the PCRs are the replay of the very log those events form.
//!
//! Events, all `EV_EVENT_TAG` in the configured PCR (default 15): `agent:<file>`, `runner:<file>`,
//! `model:<file>` for each model file in order, `policy:<file>`, `config:<file>`, then
//! `tree:<path>` for each measured folder in order (the digest of its listing, [`crate::tree`]),
//! then `library:<absolute path>` for each shared library in order; each digest is of the file's
//! content. The enclave's `model` digest is SHA-256 over the concatenated SHA-256 digests
//! of the model files, in order.

use crate::eventlog::record::{Measurement, log_bytes};
use crate::eventlog::{Bank, EventLog, PcrValues};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

/// PCR the launcher extends unless configured otherwise (not used by firmware, boot loaders or IMA).
pub const DEFAULT_LAUNCH_PCR: u32 = 15;

/// A failed prediction.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// An artifact could not be read.
    #[error("launch artifact {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: std::io::Error,
    },
    /// The description is malformed.
    #[error("launch description: {key}: expected {expected}, found {found}")]
    Invalid {
        /// The key.
        key: String,
        /// What is allowed.
        expected: String,
        /// What was there.
        found: String,
    },
}

fn default_pcr() -> u32 {
    DEFAULT_LAUNCH_PCR
}

fn default_banks() -> Vec<String> {
    vec!["sha256".to_string()]
}

/// How the enclave is isolated (`[launch] isolation`, DESIGN.md "Shape"): part of the measured
/// config and of the attestation document's `enclave` claims; the manifest pins it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A TPM-measured process sandbox on the host (docs/isolation.md).
    #[default]
    Process,
    /// A QEMU guest with no network device, measured boot and a vTPM (docs/vm.md).
    Vm,
}

impl Isolation {
    /// The name used in configs, manifests and attestation documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Vm => "vm",
        }
    }
}

/// The `[launch]` table: what the enclave runs. The launcher's config embeds the same table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// The enclave agent binary.
    pub agent: PathBuf,
    /// The runner binary.
    pub runner: PathBuf,
    /// The model files, in measurement order.
    pub model: Vec<PathBuf>,
    /// The policy file.
    pub policy: PathBuf,
    /// The agent's config file.
    pub config: PathBuf,
    /// Folders measured as a whole ([`crate::tree`]), in order: an interpreter's standard library,
    /// a runner made of several files. Measured as `tree:<path as written>` after the config and
    /// bind-mounted read-only and listable into the enclave at the same (resolved) path.
    #[serde(default)]
    pub trees: Vec<PathBuf>,
    /// Shared libraries (and the dynamic loader) the agent, the runner and the TPM transport load
    /// inside the enclave, absolute paths; measured as `library:<path>` after the config. The
    /// launcher refuses to start a dynamically linked program whose libraries are not all listed
    /// (`secllama measure libraries` prints the list).
    #[serde(default)]
    pub libraries: Vec<PathBuf>,
    /// The PCR to extend.
    #[serde(default = "default_pcr")]
    pub pcr: u32,
    /// The banks to extend (every bank the TPM has allocated, for a real launch).
    #[serde(default = "default_banks")]
    pub banks: Vec<String>,
    /// `process` (default) or `vm`.
    #[serde(default)]
    pub isolation: Isolation,
}

/// A launch description file: `[launch]` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchDescription {
    /// The launch.
    pub launch: Launch,
}

impl Launch {
    /// The `[launch]` table of any TOML file — a launch description or the agent's config, which
    /// embeds the same table.
    pub fn from_embedding_toml(text: &str) -> Result<Self, LaunchError> {
        let invalid = |found: String| LaunchError::Invalid {
            key: "launch".into(),
            expected: "a [launch] table with agent, runner, model, policy, config".into(),
            found,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let launch = table
            .remove("launch")
            .ok_or_else(|| invalid("no [launch] table".into()))?;
        launch
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))
    }
}

impl LaunchDescription {
    /// Parses a description.
    pub fn from_toml(text: &str) -> Result<Self, LaunchError> {
        toml::from_str(text).map_err(|e| LaunchError::Invalid {
            key: "file".into(),
            expected: "a [launch] table with agent, runner, model, policy, config".into(),
            found: e.to_string(),
        })
    }
}

/// SHA-256 digests of the enclave components, as the attestation document carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDigests {
    /// Agent.
    pub agent: [u8; 32],
    /// Runner.
    pub runner: [u8; 32],
    /// Model (SHA-256 of the concatenated per-file SHA-256 digests).
    pub model: [u8; 32],
    /// Policy.
    pub policy: [u8; 32],
    /// Config.
    pub config: [u8; 32],
    /// Each measured tree, by its path as written in `[launch] trees`: SHA-256 of its listing.
    pub trees: Vec<(String, [u8; 32])>,
}

/// What a launch will measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// The banks.
    pub banks: Vec<Bank>,
    /// The events, in the order the launcher extends them.
    pub measurements: Vec<Measurement>,
    /// The PCR values after those events, from zero.
    pub pcrs: PcrValues,
    /// The component digests.
    pub digests: ComponentDigests,
}

enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(b: Bank) -> Self {
        match b {
            Bank::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Bank::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Bank::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Bank::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
    fn update(&mut self, d: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(d),
            Hasher::Sha256(h) => h.update(d),
            Hasher::Sha384(h) => h.update(d),
            Hasher::Sha512(h) => h.update(d),
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// Per-bank digests of a file, and its SHA-256.
type FileDigests = (Vec<(Bank, Vec<u8>)>, [u8; 32]);

/// Hashes a file with every bank's algorithm (and SHA-256), reading it once in 1 MiB blocks.
fn file_digests(path: &Path, banks: &[Bank]) -> Result<FileDigests, LaunchError> {
    let io = |source| LaunchError::Io {
        path: path.display().to_string(),
        reason: source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    if f.metadata().map_err(io)?.is_dir() {
        return Err(LaunchError::Invalid {
            key: path.display().to_string(),
            expected: "a file (measure a folder as a whole with `[launch] trees`)".into(),
            found: "a directory".into(),
        });
    }
    let mut hashers: Vec<(Bank, Hasher)> = banks.iter().map(|b| (*b, Hasher::new(*b))).collect();
    let mut sha256 = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        for (_, h) in &mut hashers {
            h.update(&buf[..n]);
        }
        sha256.update(&buf[..n]);
    }
    Ok((
        hashers.into_iter().map(|(b, h)| (b, h.finish())).collect(),
        sha256.finalize().into(),
    ))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    )
}

/// Predicts the events and PCRs of `launch`; relative paths are taken from `base`.
pub fn predict(launch: &Launch, base: &Path) -> Result<Prediction, LaunchError> {
    if launch.pcr > 23 {
        return Err(LaunchError::Invalid {
            key: "launch.pcr".into(),
            expected: "0 to 23".into(),
            found: launch.pcr.to_string(),
        });
    }
    if launch.model.is_empty() {
        return Err(LaunchError::Invalid {
            key: "launch.model".into(),
            expected: "at least one model file".into(),
            found: "none".into(),
        });
    }
    let mut banks = Vec::new();
    for name in &launch.banks {
        let b = Bank::from_name(name).ok_or_else(|| LaunchError::Invalid {
            key: "launch.banks".into(),
            expected: "sha1, sha256, sha384 or sha512".into(),
            found: name.clone(),
        })?;
        if !banks.contains(&b) {
            banks.push(b);
        }
    }
    if banks.is_empty() {
        return Err(LaunchError::Invalid {
            key: "launch.banks".into(),
            expected: "at least one bank".into(),
            found: "none".into(),
        });
    }
    banks.sort();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut measurements = Vec::new();
    let mut measure = |kind: &str, path: &Path| -> Result<[u8; 32], LaunchError> {
        let (digests, sha256) = file_digests(&resolve(path), &banks)?;
        measurements.push(Measurement::tagged_digests(
            launch.pcr,
            digests,
            &format!("{kind}:{}", file_name(path)),
        ));
        Ok(sha256)
    };
    let agent = measure("agent", &launch.agent)?;
    let runner = measure("runner", &launch.runner)?;
    let mut model_hash = sha2::Sha256::new();
    for m in &launch.model {
        model_hash.update(measure("model", m)?);
    }
    let policy = measure("policy", &launch.policy)?;
    let config = measure("config", &launch.config)?;
    let mut trees = Vec::new();
    for t in &launch.trees {
        let listing = crate::tree::measure_tree(&resolve(t)).map_err(|e| LaunchError::Invalid {
            key: "launch.trees".into(),
            expected: "a measurable folder".into(),
            found: e.to_string(),
        })?;
        let digests = banks
            .iter()
            .map(|b| {
                let mut h = Hasher::new(*b);
                h.update(&listing.bytes);
                (*b, h.finish())
            })
            .collect();
        let name = t.display().to_string();
        measurements.push(Measurement::tagged_digests(
            launch.pcr,
            digests,
            &format!("tree:{name}"),
        ));
        trees.push((name, listing.sha256()));
    }
    for lib in &launch.libraries {
        if !lib.is_absolute() {
            return Err(LaunchError::Invalid {
                key: "launch.libraries".into(),
                expected: "absolute paths".into(),
                found: lib.display().to_string(),
            });
        }
        let (digests, _) = file_digests(lib, &banks)?;
        measurements.push(Measurement::tagged_digests(
            launch.pcr,
            digests,
            &format!("library:{}", lib.display()),
        ));
    }
    let log = log_bytes(&banks, &measurements);
    let pcrs = EventLog::parse(&log)
        .map_err(|e| LaunchError::Invalid {
            key: "prediction".into(),
            expected: "a log that parses".into(),
            found: e.to_string(),
        })?
        .replay();
    Ok(Prediction {
        banks,
        measurements,
        pcrs,
        digests: ComponentDigests {
            agent,
            runner,
            model: model_hash.finalize().into(),
            policy,
            config,
            trees,
        },
    })
}
