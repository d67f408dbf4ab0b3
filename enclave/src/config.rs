//! The agent's configuration (TOML), measured as the `config` enclave digest:
//!
//! ```toml
//! listener = "unix:/run/secllama/enclave.sock"   # vsock:PORT arrives with VM mode
//! runner_url = "http://127.0.0.1:11434"          # the runner's Ollama API, loopback only
//! policy = "policy.json"
//! receipts = "receipts.log"
//! event_log = "launch.log"                        # the launcher's TCG log; the agent appends its key event
//! tcti = "swtpm:host=127.0.0.1,port=2321"         # else SECLLAMA_TCTI, else device:/dev/tpmrm0
//! ak_handle = 0x81010002
//! quote_pcrs = [15, 23]
//! [launch]                                         # the same table `secllama measure launch` reads
//! agent = "…"
//! …
//! ```
//! Relative paths are taken from the config file's folder.

use secllama_measurements::launch::Launch;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// PCR the agent extends with its key set (DESIGN.md "Keys and evidence").
pub const KEYS_PCR: u32 = 23;

fn default_ak() -> u32 {
    secllama_tpm::ak::DEFAULT_AK_HANDLE
}

fn default_quote_pcrs() -> Vec<u32> {
    vec![secllama_measurements::launch::DEFAULT_LAUNCH_PCR, KEYS_PCR]
}

/// The agent's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the enclave API is served: `unix:PATH`.
    pub listener: String,
    /// The runner's base URL; its host must be a loopback address.
    pub runner_url: String,
    /// The runner to start and supervise (program and arguments); absent: the runner is started by
    /// someone else and only waited for.
    #[serde(default)]
    pub runner_command: Option<Vec<String>>,
    /// The policy file.
    pub policy: PathBuf,
    /// The receipt log file.
    pub receipts: PathBuf,
    /// The TCG event log of the launch.
    pub event_log: PathBuf,
    /// TCTI of the TPM.
    #[serde(default)]
    pub tcti: Option<String>,
    /// Persistent handle of the AK.
    #[serde(default = "default_ak")]
    pub ak_handle: u32,
    /// PCRs each quote covers (in every allocated bank).
    #[serde(default = "default_quote_pcrs")]
    pub quote_pcrs: Vec<u32>,
    /// The launch (artifacts whose digests the attestation document carries).
    pub launch: Launch,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("enclave config {path}: expected {expected}, found {found}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is needed.
    pub expected: String,
    /// What is there.
    pub found: String,
}

impl Config {
    /// Reads and checks the config at `path`, resolving relative paths against its folder.
    pub fn load(path: &Path) -> Result<(Self, PathBuf), ConfigError> {
        let err = |expected: &str, found: String| ConfigError {
            path: path.display().to_string(),
            expected: expected.into(),
            found,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err("a readable file", e.to_string()))?;
        let mut c: Config =
            toml::from_str(&text).map_err(|e| err("the enclave config keys", e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in [&mut c.policy, &mut c.receipts, &mut c.event_log] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if !c.listener.starts_with("unix:") {
            return Err(err(
                "listener unix:PATH (vsock:PORT arrives with VM mode)",
                c.listener.clone(),
            ));
        }
        let host = c
            .runner_url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .and_then(|hp| hp.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])))
            .unwrap_or("");
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(err(
                "runner_url http://<loopback address>:<port>",
                c.runner_url.clone(),
            ));
        }
        Ok((c, base))
    }

    /// The unix socket path of the listener.
    pub fn listener_path(&self) -> PathBuf {
        PathBuf::from(self.listener.trim_start_matches("unix:"))
    }
}
