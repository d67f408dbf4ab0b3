//! The launcher's handle on a running sandbox: pid, exit status, stdout/stderr pipes, kill.
//!
//! The sandboxed program is pid 1 of its own pid namespace, so `SIGKILL` to it takes every process
//! of the sandbox down with it. Dropping a [`SandboxChild`] that was not waited for kills and reaps
//! it: an enclave never outlives the launcher's handle on it.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::{Pid, Signal, WaitOptions};

use super::error::SandboxError;

/// What Landlock enforces on the sandboxed program, as reported by the child after
/// `landlock_restrict_self`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LandlockReport {
    /// The Landlock ABI in use (the kernel's, capped at the newest the landlock crate knows).
    pub abi: u32,
    /// Whether every right this sandbox asks for (up to ABI 6) is enforced; `false` means an
    /// older kernel enforces a subset (at least the ABI 1 file-system rights).
    pub fully_enforced: bool,
}

/// A program running in the sandbox.
#[derive(Debug)]
pub struct SandboxChild {
    pid: Pid,
    status: Option<ExitStatus>,
    landlock: LandlockReport,
    /// The program's standard output (a pipe), until taken.
    pub stdout: Option<File>,
    /// The program's standard error (a pipe), until taken.
    pub stderr: Option<File>,
}

impl SandboxChild {
    pub(super) fn new(pid: Pid, stdout: File, stderr: File) -> Self {
        SandboxChild {
            pid,
            status: None,
            landlock: LandlockReport {
                abi: 0,
                fully_enforced: false,
            },
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    pub(super) fn set_landlock(&mut self, report: LandlockReport) {
        self.landlock = report;
    }

    /// The program's pid in the launcher's pid namespace (inside it is 1).
    pub fn id(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    /// What Landlock enforces on the program.
    pub fn landlock(&self) -> LandlockReport {
        self.landlock
    }

    /// Sends `SIGKILL` (which ends every process in the sandbox). Does nothing once the child has
    /// been reaped, so it can never hit a recycled pid.
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        if self.status.is_some() {
            return Ok(());
        }
        match rustix::process::kill_process(self.pid, Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(SandboxError::os(format!("kill -KILL {}", self.id()), e)),
        }
    }

    /// Waits for the program to exit and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        self.reap(WaitOptions::empty())?
            .ok_or(SandboxError::Protocol {
                expected: "an exit status from a blocking waitpid",
                found: "none".into(),
            })
    }

    /// Reaps the program if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        self.reap(WaitOptions::NOHANG)
    }

    fn reap(&mut self, options: WaitOptions) -> Result<Option<ExitStatus>, SandboxError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        loop {
            match rustix::process::waitpid(Some(self.pid), options) {
                Ok(Some((_, status))) => {
                    let status = ExitStatus::from_raw(status.as_raw());
                    self.status = Some(status);
                    return Ok(Some(status));
                }
                Ok(None) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SandboxError::os(format!("waitpid {}", self.id()), e)),
            }
        }
    }
}

impl Drop for SandboxChild {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}
