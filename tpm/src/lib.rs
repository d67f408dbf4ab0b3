//! # secllama-tpm — the only crate that talks to a TPM
//!
//! Everything secllama asks of a TPM goes through [`Tpm`], built on tss-esapi 7.7 over a TCTI taken
//! from config or `SECLLAMA_TCTI` (`device:/dev/tpmrm0` by default; tests use
//! `swtpm:host=127.0.0.1,port=P`):
//!
//! | module | TPM 2.0 part / TCG spec | what |
//! |---|---|---|
//! | [`tcti`] | TSS TCTI spec | strict parsing of TCTI strings (tss-esapi's own parser ignores what it cannot read) |
//! | [`ek`] | EK Credential Profile | EK from the default RSA-2048 (or ECC P-256) template; EK certificate from NV |
//! | [`ak`] | Part 3 §12 | restricted signing AK under the EK, persisted at a chosen handle |
//! | [`pcr`], [`eventlog`] | Part 3 §22, PC Client PFP §10 | PCR extension of every allocated bank, logged as TCG_PCR_EVENT2 |
//! | [`quote`] | Part 3 §18.4 | quotes with the exact signed TPMS_ATTEST bytes |
//! | [`seal`] | Part 3 §23.7 (PolicyPCR) | secrets sealed to PCR values |
//! | [`nv`] | Part 3 §31 | NV monotonic counters |
//! | [`credential`] | Part 3 §12.5 | ActivateCredential for an AK beside its EK |
//! | [`relay`] | — | swtpm channels carried over unix sockets into a sandbox (development TPMs) |
//!
//! Calls block. The TPM has no resource manager behind swtpm and only three transient slots, so every
//! transient object and session this crate loads is flushed before the call returns. Async callers
//! run these calls with `spawn_blocking` (or a dedicated thread) behind the `Mutex` that
//! [`SharedTpm`] provides; nothing here may run on an async executor thread.
//!
//! `unsafe_code` stays denied: tss-esapi wraps the FFI; this crate adds none.

pub mod ak;
pub mod credential;
pub mod ek;
mod error;
pub mod eventlog;
pub mod nv;
pub mod pcr;
pub mod quote;
pub mod relay;
pub mod seal;
pub mod tcti;

pub use error::{Result, TpmError};

use std::sync::{Arc, Mutex};
use tss_esapi::Context;

/// Environment variable naming the TCTI.
pub const TCTI_ENV: &str = "SECLLAMA_TCTI";
/// TCTI used when neither config nor environment names one.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// A connection to one TPM.
pub struct Tpm {
    // Dropped before the relay it may be connected through.
    ctx: Context,
    tcti: String,
    ak_auth: Option<tss_esapi::structures::Auth>,
    _relay: Option<relay::LoopbackToUnix>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tpm({})", self.tcti)
    }
}

/// A TPM shared between threads; lock it inside `spawn_blocking` or a dedicated thread.
pub type SharedTpm = Arc<Mutex<Tpm>>;

impl Tpm {
    /// Connects through the TCTI named by `tcti` (see [`tcti::parse`]).
    pub fn connect(tcti: &str) -> Result<Self> {
        let (conf, relay) = match tcti::unix_swtpm(tcti)? {
            Some(server) => {
                let relay = relay::LoopbackToUnix::start(&server)?;
                let local = format!("swtpm:host=127.0.0.1,port={}", relay.port());
                (tcti::parse(&local)?, Some(relay))
            }
            // libtss2's swtpm TCTI connects for every command without close-on-exec: behind our
            // relay, a child process that inherits such a socket cannot hold the swtpm.
            None => match tcti::swtpm_endpoint(tcti)? {
                Some((host, port)) => {
                    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                        .ok()
                        .and_then(|mut a| a.next())
                        .ok_or_else(|| TpmError::Config {
                            what: "TCTI",
                            expected: "swtpm:host=H,port=P with a resolvable host",
                            found: tcti.to_string(),
                        })?;
                    let relay = relay::LoopbackToUnix::start_tcp(addr)?;
                    let local = format!("swtpm:host=127.0.0.1,port={}", relay.port());
                    (tcti::parse(&local)?, Some(relay))
                }
                None => (tcti::parse(tcti)?, None),
            },
        };
        let ctx = Context::new(conf).map_err(TpmError::tss("connecting through the TCTI"))?;
        Ok(Self {
            ctx,
            tcti: tcti.to_string(),
            ak_auth: None,
            _relay: relay,
        })
    }

    /// Connects through `configured`, else `SECLLAMA_TCTI`, else [`DEFAULT_TCTI`].
    pub fn from_config_or_env(configured: Option<&str>) -> Result<Self> {
        let env = std::env::var(TCTI_ENV).ok();
        Self::connect(configured.or(env.as_deref()).unwrap_or(DEFAULT_TCTI))
    }

    /// The TCTI string this connection uses.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Wraps this connection for sharing between threads.
    pub fn shared(self) -> SharedTpm {
        Arc::new(Mutex::new(self))
    }

    pub(crate) fn ctx(&mut self) -> &mut Context {
        &mut self.ctx
    }
}
