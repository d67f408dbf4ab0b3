//! `secllama launch`: one module per isolation mode behind one interface ([`Running`]).
//!
//! - [`process`]: the TPM-measured process sandbox (docs/isolation.md): the launcher measures the
//!   launch into the host's TPM and starts the runner's and the agent's sandboxes.
//! - [`vm`]: a QEMU guest with no network device (docs/vm.md): the launcher builds the guest image,
//!   starts a per-launch swtpm, the vsock backend and QEMU ([`qemu`] builds its command line);
//!   OVMF measures the kernel, command line and initramfs into the vTPM.
//!
//! The mode is the config's `[launch] isolation`, which is measured.

pub mod process;
pub mod qemu;
pub mod receipts;
pub mod vm;

pub use process::{AK_AUTH, AK_PUBLIC, Enclave, RECOVERY, TPM_DIR, TPM_SOCKET};

use crate::bridge::EnclaveAddr;
use anyhow::Context;
use secllama_measurements::launch::Isolation;
use std::io::Write;
use std::path::Path;

/// A running enclave of either mode.
pub trait Running: Send {
    /// Where the bridge reaches the agent.
    fn enclave_addr(&self) -> EnclaveAddr;
    /// One line for the operator: where the enclave listens and what runs it.
    fn describe(&self) -> String;
    /// `Some(description)` once the enclave has ended.
    ///
    /// # Errors
    /// Its state cannot be read.
    fn exited(&mut self) -> anyhow::Result<Option<String>>;
    /// Stops every process the launch started and waits for them.
    ///
    /// # Errors
    /// A process could not be stopped.
    fn stop(&mut self) -> anyhow::Result<()>;
}

impl Running for Enclave {
    fn enclave_addr(&self) -> EnclaveAddr {
        EnclaveAddr::Unix(self.socket.clone())
    }
    fn describe(&self) -> String {
        format!(
            "enclave listening on unix:{} (pid {}, runner sandbox pid {}, landlock ABI {})",
            self.socket.display(),
            self.pid(),
            self.runner_pid(),
            self.landlock_abi
        )
    }
    fn exited(&mut self) -> anyhow::Result<Option<String>> {
        Enclave::exited(self)
    }
    fn stop(&mut self) -> anyhow::Result<()> {
        Enclave::stop(self)
    }
}

/// Starts the enclave `config` describes in its isolation mode. `tcti` is the host TPM (process
/// mode only: a VM has its own per-launch vTPM); `image` a prebuilt guest image to boot instead of
/// building one (VM mode only, `secllama image build`); output lines go to `log`.
///
/// # Errors
/// The config is unusable, or the mode's launch failed (its error names the step).
pub fn start(
    config: &Path,
    tcti: Option<&str>,
    image: Option<&Path>,
    log: impl Write + Send + 'static,
) -> anyhow::Result<Box<dyn Running>> {
    let (c, _) = secllama_enclave::config::Config::load(config)?;
    match c.launch.isolation {
        Isolation::Process => {
            if let Some(i) = image {
                anyhow::bail!(
                    "--image {}: a process-mode launch has no guest image",
                    i.display()
                );
            }
            let tcti = tcti.context(
                "--tcti or SECLLAMA_TCTI: expected the TPM to measure the process-mode launch into",
            )?;
            Ok(Box::new(process::start(config, tcti, log)?))
        }
        Isolation::Vm => {
            if let Some(t) = tcti {
                anyhow::bail!(
                    "--tcti {t}: a VM-mode launch has its own vTPM (a per-launch swtpm); remove \
                     --tcti / SECLLAMA_TCTI"
                );
            }
            Ok(Box::new(vm::start(config, image, log)?))
        }
    }
}
