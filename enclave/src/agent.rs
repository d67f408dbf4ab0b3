//! The agent's state and start-up (DESIGN.md "Keys and evidence"): generate the RSA-3072 encryption
//! key (aws-lc-rs) and the ES256 signing key in memory, extend PCR 23 with
//! SHA-256(signing_pub_cose ‖ encryption_spki) and log it, load the measured policy, compute the
//! enclave digests from the launch artifacts, and build attestation documents with fresh quotes.
//! TPM calls block: callers run them off the async executor (`spawn_blocking`).

use crate::config::{Config, KEYS_PCR};
use crate::endpoint::{RUNNER_SOCKET, RunnerAddr};
use crate::handoff::Handoff;
use crate::integrity::Snapshot;
use crate::log::{LogTpm, ReceiptLog};
use crate::policy::Policy;
use crate::replay::{ReplayGuard, SessionCache};
use anyhow::Context;
use rand_core::OsRng;
use secllama_measurements::launch::{Isolation, predict};
use secllama_protocol::attestation::{
    AttestationPayload, EnclaveDigests, EnclaveInfo, EnclaveKeys, IsolationMode, LogState,
    PcrValues, TpmEvidence, sign_document,
};
use secllama_protocol::cose::SigningKey;
use secllama_protocol::seal::AwsLcRsaOaep;
use secllama_protocol::{Nonce, Sha256Digest, sha256};
use secllama_tpm::Tpm;
use secllama_tpm::ek::EkKind;
use secllama_tpm::eventlog::{EventLogWriter, HashAlg, Measurement};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many recently issued attestation documents sealed requests may bind to.
pub const ISSUED_DOCUMENTS: usize = 256;
/// Replay window for client timestamps (either side of the enclave's clock).
pub const REPLAY_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Opens the receipt log: a block device (VM mode's log disk) for reading and writing in place,
/// anything else as a regular file for reading and appending (created if missing).
fn open_receipts(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    let disk = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let mut o = std::fs::OpenOptions::new();
    if disk {
        o.read(true).write(true);
    } else {
        o.create(true).read(true).append(true);
    }
    o.open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything the service needs.
pub struct Agent {
    /// The encryption key (private part inside aws-lc-rs).
    pub unwrap: AwsLcRsaOaep,
    /// The signing key.
    pub signing: SigningKey,
    /// The policy and its digest.
    pub policy: Policy,
    /// SHA-256 of the policy file.
    pub policy_digest: Sha256Digest,
    /// The enclave digests.
    pub digests: EnclaveDigests,
    /// The measured artifacts as they were when hashed; checked before every attestation
    /// document, receipt and runner restart.
    pub integrity: Arc<Snapshot>,
    /// Where the runner answers.
    pub runner: crate::endpoint::RunnerAddr,
    /// Idle connections to the runner.
    pub runner_pool: crate::runner::Pool,
    /// Replay protection.
    pub replay: Mutex<ReplayGuard>,
    /// Session reuse.
    pub sessions: Mutex<SessionCache>,
    /// The receipt log.
    pub receipts: Mutex<ReceiptLog>,
    /// Digests of recently issued attestation documents.
    pub issued: Mutex<VecDeque<Sha256Digest>>,
    /// Request counts (never content), for `GET /status`.
    pub stats: Stats,
    /// When the agent started, ms since the Unix epoch.
    pub started_ms: u64,
    pub(crate) tpm: Mutex<Tpm>,
    ak_handle: u32,
    pub(crate) quote_pcrs: Vec<u32>,
    pub(crate) banks: Vec<HashAlg>,
    event_log: EventLogWriter,
    pub(crate) isolation: Isolation,
    log_pcrs: Vec<u32>,
    log_bank: HashAlg,
}

/// Sealed requests by outcome since the agent started (counts only).
#[derive(Debug, Default)]
pub struct Stats {
    /// Answered with a receipt.
    pub served: std::sync::atomic::AtomicU64,
    /// Refused by the enclave (policy, replay): 4xx.
    pub refused: std::sync::atomic::AtomicU64,
    /// Failed (runner, receipt log): 5xx.
    pub failed: std::sync::atomic::AtomicU64,
}

impl Stats {
    /// Counts one sealed request that ended with HTTP `status` (a receipt: 2xx).
    pub fn count(&self, status: u16) {
        let c = match status {
            200..=299 => &self.served,
            400..=499 => &self.refused,
            _ => &self.failed,
        };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Shortest time between two signed tree heads: each one increments the TPM's NV counter.
pub const HEAD_INTERVAL_MS: u64 = 1000;

/// The TPM NV index of the receipt log's monotonic counter (owner range, TPM 2.0 Part 2 §13.4).
pub const LOG_COUNTER_INDEX: u32 = 0x0100_5ec1;

/// The PCRs the log identity is sealed to: the quoted ones but the key-set PCR (23), which
/// changes at every start.
fn log_pcrs(quote_pcrs: &[u32]) -> anyhow::Result<Vec<u32>> {
    let pcrs: Vec<u32> = quote_pcrs
        .iter()
        .copied()
        .filter(|&p| p != KEYS_PCR)
        .collect();
    if pcrs.is_empty() {
        anyhow::bail!(
            "quote_pcrs: expected at least one measured PCR besides {KEYS_PCR} to seal the receipt log's identity to, found {quote_pcrs:?}"
        );
    }
    Ok(pcrs)
}

/// The PCR bank the log identity is sealed to: the strongest active one of SHA-256, SHA-384 and
/// SHA-512 (each bank's PCRs hold the same measurements; one strong bank binds them all).
fn log_bank(active: &[HashAlg]) -> anyhow::Result<HashAlg> {
    [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
        .into_iter()
        .find(|b| active.contains(b))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "PCR banks: expected SHA-256, SHA-384 or SHA-512 active to seal the receipt log's identity to, found {active:?}"
            )
        })
}

/// The log's TPM operations on the agent's TPM.
struct AgentTpm<'a> {
    tpm: &'a mut Tpm,
    banks: &'a [HashAlg],
    pcrs: &'a [u32],
}

impl LogTpm for AgentTpm<'_> {
    fn seal(&mut self, secret: &[u8]) -> Result<Vec<u8>, String> {
        self.tpm
            .seal(secret, self.banks, self.pcrs)
            .map(|s| s.to_bytes())
            .map_err(|e| e.to_string())
    }

    fn unseal(&mut self, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let sealed =
            secllama_tpm::seal::SealedSecret::from_bytes(sealed).map_err(|e| e.to_string())?;
        self.tpm.unseal(&sealed).map_err(|e| e.to_string())
    }

    fn counter(&mut self) -> Result<u64, String> {
        self.tpm
            .counter_define(LOG_COUNTER_INDEX)
            .map_err(|e| e.to_string())
    }

    fn increment(&mut self) -> Result<u64, String> {
        self.tpm
            .counter_increment(LOG_COUNTER_INDEX)
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent(..)")
    }
}

fn file_digest(path: &Path) -> anyhow::Result<Sha256Digest> {
    Ok(sha256(&[
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    ]))
}

impl Agent {
    /// Starts the agent on its own (development): keys, PCR 23, policy, digests; the AK is
    /// created (without auth) if absent; files are opened by path.
    pub fn start(config: &Config, base: &Path) -> anyhow::Result<Self> {
        Self::start_with(config, base, Handoff::default())
    }

    /// Starts the agent with what the launcher handed over ([`Handoff`]): the AK must exist and
    /// is used with the handed auth value; the event log, receipts and runner directory are the
    /// handed descriptors (each falls back to the config's path when not handed over).
    pub fn start_with(config: &Config, base: &Path, handoff: Handoff) -> anyhow::Result<Self> {
        let unwrap = AwsLcRsaOaep::generate().context("generating the RSA-3072 encryption key")?;
        let signing = SigningKey::generate(&mut OsRng);
        let mut tpm =
            Tpm::from_config_or_env(config.tcti.as_deref()).context("connecting to the TPM")?;
        let banks = tpm.active_banks()?;
        match &handoff.ak_auth {
            Some(auth) => {
                tpm.set_ak_auth(auth)?;
                tpm.ak_info(config.ak_handle)
                    .context("the attestation key the launcher created")?;
            }
            None => {
                tpm.ensure_ak(config.ak_handle, secllama_tpm::ak::AkKind::RsaSsaSha256)
                    .context("the attestation key")?;
            }
        }
        let cose_key = signing.public().to_bytes()?;
        let keys = [cose_key.as_slice(), unwrap.public_key_der()].concat();
        let kid = signing.public().kid()?;
        let vm = config.launch.isolation == Isolation::Vm;
        let mut log = match handoff.event_log {
            Some(f) => Ok(EventLogWriter::from_file(f, &config.event_log, &banks)?),
            // In a VM the log starts as the firmware's (copied by secllama-init).
            None if vm => std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&config.event_log)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: expected the firmware's event log (copied by secllama-init): {e}",
                        config.event_log.display()
                    )
                })
                .and_then(|f| Ok(EventLogWriter::continuing(f, &config.event_log, &banks)?)),
            None => Ok(EventLogWriter::open(&config.event_log, &banks)?),
        }
        .context("the launch event log")?;
        tpm.measure(
            &mut log,
            &Measurement::tagged(KEYS_PCR, &banks, &keys, &format!("keys:{}", kid.to_hex())),
        )
        .context("extending PCR 23 with the key set")?;
        let policy_bytes = std::fs::read(&config.policy)
            .with_context(|| format!("reading {}", config.policy.display()))?;
        let policy = Policy::from_json(&policy_bytes)?;
        // Recorded before hashing and checked after: what was hashed is what stays mounted.
        let integrity = Snapshot::take(&config.launch, base)?;
        let prediction =
            predict(&config.launch, base).context("digests of the launch artifacts")?;
        integrity
            .check()
            .context("a measured artifact changed while the agent hashed it")?;
        let d = prediction.digests;
        let digests = EnclaveDigests {
            agent: Sha256Digest(d.agent),
            runner: Sha256Digest(d.runner),
            model: Sha256Digest(d.model),
            policy: Sha256Digest(d.policy),
            config: Sha256Digest(d.config),
            trees: d
                .trees
                .into_iter()
                .map(|(name, digest)| (name, Sha256Digest(digest)))
                .collect(),
        };
        let policy_digest = file_digest(&config.policy)?;
        if policy_digest != digests.policy {
            anyhow::bail!(
                "policy {} is not the measured policy: expected sha256 {}, found {}",
                config.policy.display(),
                digests.policy.to_hex(),
                policy_digest.to_hex()
            );
        }
        let runner = match handoff.runner_dir {
            Some(dir) => RunnerAddr::Dir {
                dir: Arc::new(dir),
                name: RUNNER_SOCKET.into(),
            },
            None => RunnerAddr::Tcp(config.runner_host_port()),
        };
        let receipts_file = match handoff.receipts {
            Some(f) => f,
            None => open_receipts(&config.receipts)?,
        };
        let log_pcrs = log_pcrs(&config.quote_pcrs)?;
        let log_bank = log_bank(&banks)?;
        let receipts = ReceiptLog::open(
            receipts_file,
            &config.receipts,
            &mut AgentTpm {
                tpm: &mut tpm,
                banks: &[log_bank],
                pcrs: &log_pcrs,
            },
        )?;
        Ok(Self {
            unwrap,
            signing,
            policy,
            policy_digest,
            digests,
            integrity: Arc::new(integrity),
            runner,
            runner_pool: crate::runner::Pool::default(),
            replay: Mutex::new(ReplayGuard::new(REPLAY_WINDOW_MS, 1 << 20)),
            sessions: Mutex::new(SessionCache::new(30 * 60 * 1000, 4096)),
            receipts: Mutex::new(receipts),
            issued: Mutex::new(VecDeque::new()),
            stats: Stats::default(),
            started_ms: now_ms(),
            tpm: Mutex::new(tpm),
            ak_handle: config.ak_handle,
            quote_pcrs: config.quote_pcrs.clone(),
            banks,
            event_log: log,
            isolation: config.launch.isolation,
            log_pcrs,
            log_bank,
        })
    }

    /// Signs a tree head over the receipt log as it is now, unless the latest head already
    /// covers every entry and is younger than [`HEAD_INTERVAL_MS`]; returns the latest head's
    /// COSE_Sign1. Blocks on `fdatasync` and the TPM (run it with `spawn_blocking`).
    pub fn log_head(&self) -> anyhow::Result<Vec<u8>> {
        let mut log = self
            .receipts
            .lock()
            .map_err(|_| anyhow::anyhow!("receipt log lock poisoned"))?;
        if let Some(h) = log.last_head()
            && (h.head.size == log.len()
                || now_ms().saturating_sub(h.head.time_ms) < HEAD_INTERVAL_MS)
        {
            return Ok(h.bytes.clone());
        }
        let mut tpm = self
            .tpm
            .lock()
            .map_err(|_| anyhow::anyhow!("TPM lock poisoned"))?;
        let head = log.sign_head(&mut AgentTpm {
            tpm: &mut tpm,
            banks: &[self.log_bank],
            pcrs: &self.log_pcrs,
        })?;
        Ok(head.bytes)
    }

    /// The AK's TPM2B_PUBLIC (what a manifest pins in `[tpm] ak_publics`).
    ///
    /// # Errors
    /// The TPM cannot be read.
    pub fn ak_public(&self) -> anyhow::Result<Vec<u8>> {
        let mut tpm = self
            .tpm
            .lock()
            .map_err(|_| anyhow::anyhow!("TPM lock poisoned"))?;
        Ok(tpm.ak_info(self.ak_handle)?.public)
    }

    /// Credential activation (TPM 2.0 Part 1 §24): releases the secret a verifier protected with
    /// TPM2_MakeCredential for this TPM's EK and the Name of this agent's AK — proving the AK is
    /// resident beside that EK. `id_object` and `encrypted_secret` are TPM2B_ID_OBJECT and
    /// TPM2B_ENCRYPTED_SECRET with their size prefixes.
    pub fn activate_credential(
        &self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let mut tpm = self
            .tpm
            .lock()
            .map_err(|_| anyhow::anyhow!("the TPM lock is poisoned"))?;
        // The secret is the verifier's challenge, sent back to it: nothing to keep secret after.
        Ok(tpm
            .activate_credential(self.ak_handle, id_object, encrypted_secret)?
            .to_vec())
    }

    /// A signed attestation document for `nonce`, with a fresh quote over the binding.
    /// Refused once a measured artifact changed since the agent hashed it.
    pub fn attestation(&self, nonce: Nonce) -> anyhow::Result<Vec<u8>> {
        self.integrity.check().context(
            "no attestation document: the launch's digests no longer describe what runs",
        )?;
        let keys = EnclaveKeys {
            signing: self.signing.public(),
            encryption_spki: self.unwrap.public_key_der().to_vec(),
        };
        let binding = secllama_protocol::attestation::binding(
            &nonce,
            &keys.signing.to_bytes()?,
            &keys.encryption_spki,
        );
        let (quote, ek_cert) = {
            let mut tpm = self
                .tpm
                .lock()
                .map_err(|_| anyhow::anyhow!("TPM lock poisoned"))?;
            let quote = tpm.quote(self.ak_handle, &binding.0, &self.banks, &self.quote_pcrs)?;
            (quote, tpm.ek_certificate(EkKind::Rsa2048)?)
        };
        let mut pcrs = PcrValues::new();
        for (bank, values) in &quote.pcrs {
            pcrs.insert(bank.name().to_string(), values.clone());
        }
        let event_log = self.event_log.read_all()?;
        let log = {
            let r = self
                .receipts
                .lock()
                .map_err(|_| anyhow::anyhow!("receipt log lock poisoned"))?;
            LogState {
                size: r.len(),
                root: Sha256Digest(r.root()),
                key: r.identity(),
                // There is always one: the log's creation writes the first.
                head: r.last_head().map(|h| h.bytes.clone()).unwrap_or_default(),
            }
        };
        let payload = AttestationPayload {
            nonce,
            iat: now_ms() / 1000,
            keys,
            enclave: EnclaveInfo {
                mode: match self.isolation {
                    Isolation::Process => IsolationMode::Process,
                    Isolation::Vm => IsolationMode::Vm,
                },
                agent_version: env!("CARGO_PKG_VERSION").into(),
            },
            measurements: self.digests.clone(),
            tpm: Some(TpmEvidence {
                attest: quote.attest,
                signature: quote.signature,
                ak_public: quote.ak_public,
                pcrs,
                event_log,
                ek_cert,
            }),
            snp: None,
            log,
        };
        let doc = sign_document(&payload, &self.signing)?;
        let mut issued = self
            .issued
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        issued.push_back(sha256(&[&doc]));
        while issued.len() > ISSUED_DOCUMENTS {
            issued.pop_front();
        }
        Ok(doc)
    }
}
