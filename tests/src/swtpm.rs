//! A private swtpm per test, in the manner of tss-esapi's own test harness: its own state directory
//! and its own TCP port pair on 127.0.0.1, started with retries, killed and reaped on drop, so tests
//! run in parallel without sharing TPM state.

use std::io::{Error, ErrorKind, Result};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running swtpm (TPM 2.0) on 127.0.0.1.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

/// Two free consecutive ports (server, control), checked by binding them.
///
/// Ports come from a per-process counter below the kernel's ephemeral range (which starts at
/// 32768), so two swtpms started by parallel tests of one test binary never race for the same
/// pair, and no ephemeral client socket can take one between the check and swtpm's bind.
fn free_port_pair() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread processes apart by pid; step by 2 within a process.
    let base = LOW + (std::process::id() * 7919) % SPAN;
    for _ in 0..200 {
        let offset = NEXT.fetch_add(2, Ordering::SeqCst);
        let port = (LOW + (base - LOW + offset) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(Error::new(
        ErrorKind::AddrInUse,
        "no free pair of consecutive ports on 127.0.0.1",
    ))
}

impl Swtpm {
    /// Starts a fresh TPM with an empty state.
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut s = Self {
            child: None,
            dir,
            port: 0,
        };
        s.launch()?;
        Ok(s)
    }

    /// Starts a TPM provisioned by `swtpm_setup` like a manufactured one: SHA-1 and SHA-256 banks, an
    /// RSA-2048 EK with its certificate in NV (signed by swtpm's local CA), and a platform certificate.
    pub fn start_manufactured() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = Command::new("swtpm_setup")
            .args(["--tpm2", "--tpmstate"])
            .arg(dir.path())
            .args([
                "--create-ek-cert",
                "--create-platform-cert",
                "--overwrite",
                "--pcr-banks",
                "sha1,sha256",
            ])
            .output()?;
        if !out.status.success() {
            return Err(Error::other(format!(
                "swtpm_setup failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut s = Self {
            child: None,
            dir,
            port: 0,
        };
        s.launch()?;
        Ok(s)
    }

    fn launch(&mut self) -> Result<()> {
        let mut last = Error::other("swtpm did not start");
        for _ in 0..5 {
            let port = free_port_pair()?;
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", self.dir.path().display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait()? {
                    last = Error::other(format!("swtpm exited with {status} (port {port} taken?)"));
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Only ours if our swtpm is still running (one that failed to bind exits).
                    std::thread::sleep(Duration::from_millis(30));
                    if child.try_wait()?.is_none() {
                        self.child = Some(child);
                        self.port = port;
                        return Ok(());
                    }
                    continue;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Error::new(ErrorKind::TimedOut, "swtpm did not listen within 10 s");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(last)
    }

    /// Stops swtpm and starts it again on the same state (NV and persistent objects survive; PCRs
    /// reset, as on a reboot).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The TCTI string for secllama and for tpm2-tools (`TPM2TOOLS_TCTI`).
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The server port (the control port is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path for test files next to the TPM state.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A tpm2-tools command (`tpm2_<tool>`) bound to this TPM.
    pub fn tool(&self, tool: &str) -> Command {
        let mut c = Command::new(format!("tpm2_{tool}"));
        c.env("TPM2TOOLS_TCTI", self.tcti());
        c
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}
