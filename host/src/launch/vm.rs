//! VM-mode launch (docs/vm.md): the guest image is built from the config ([`crate::image::build`]),
//! then three host processes run the guest, each killed when the launcher dies
//! (`PR_SET_PDEATHSIG`) or stops:
//!
//! 1. a per-launch **swtpm** as the vTPM (its state folder kept in `[vm] state`, provisioned
//!    once with an EK certificate by `swtpm_setup`), reached by QEMU over a unix control socket;
//! 2. the **vsock backend** `vhost-device-vsock`: QEMU's `vhost-user-vsock-pci` device on one
//!    side, a host unix socket speaking `CONNECT <port>` on the other (the bridge's
//!    `vsock-uds:PATH:PORT`) — the host never opens AF_VSOCK;
//! 3. **QEMU** ([`super::qemu::qemu_args`]): no network device, OVMF measured boot of the
//!    kernel, command line and initramfs, serial console to `serial.log`.
//!
//! The launch follows the guest's boot on its serial console: `secllama-init: stage …` lines
//! (shown as progress), `ak public: …` (written to `ak.pub` for the manifest) and the agent's
//! `listening on vsock:PORT`, which ends the launch. A guest that prints an error, powers off or
//! does not get there within `[vm] boot_timeout_secs` fails the launch with the stage it reached
//! and the end of its console.

#![allow(unsafe_code)]

use super::qemu::{Accel, VmSpec, qemu_args};
use crate::bridge::EnclaveAddr;
use crate::image::build::Built;
use anyhow::{Context, bail, ensure};
use secllama_enclave::config::{Confidential, Config};
use secllama_enclave::listener::ListenerAddr;
use secllama_measurements::launch::Isolation;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The receipt log disk in the state folder (docs/log.md).
pub const LOG_DISK: &str = "receipts.img";

/// The receipt log disk for this launch: `state/receipts.img`, a raw image of `mib` MiB (created
/// sparse, grown when `mib` grew, never shrunk). An image another measured boot (kernel,
/// initramfs, command line) wrote is moved aside first ([`super::receipts`]): only the enclave
/// whose identity is sealed in it could continue it.
fn log_disk(state: &Path, image: &Built, mib: u64, log: &mut dyn Write) -> anyhow::Result<PathBuf> {
    let path = state.join(LOG_DISK);
    let id =
        super::receipts::vm_launch_id(&image.kernel_sha256, &image.initrd_sha256, &image.cmdline);
    super::receipts::retire_foreign(&path, &id, log)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the receipt log disk {}", path.display()))?;
    let want = mib.saturating_mul(1 << 20);
    let have = f.metadata()?.len();
    if have < want {
        f.set_len(want)
            .with_context(|| format!("sizing the receipt log disk {}", path.display()))?;
    }
    Ok(path)
}

/// The serial console log in the state folder.
pub const SERIAL_LOG: &str = "serial.log";
/// The guest's firmware event log, as its init printed it (golden values for
/// `secllama measure vm --golden-log`).
pub const FIRMWARE_LOG: &str = "firmware.log";
/// The vsock backend's host-side socket (`vsock-uds:` for the bridge).
pub const VSOCK_SOCKET: &str = "vsock.sock";

/// A running guest and the host processes behind it. Dropping it stops them.
#[derive(Debug)]
pub struct Vm {
    qemu: Child,
    vsock: Child,
    swtpm: Child,
    /// The state folder.
    pub state: PathBuf,
    /// The vsock backend's host socket.
    pub vsock_socket: PathBuf,
    /// The agent's vsock port in the guest.
    pub port: u32,
    /// The guest's console log.
    pub serial_log: PathBuf,
    /// The image that was booted.
    pub image: Built,
    /// KVM or TCG.
    pub accel: Accel,
    /// The boot stages and when each began, from QEMU's start.
    pub stages: Vec<(String, Duration)>,
    stopped: bool,
}

/// Whether QEMU can run a guest under KVM here. `/dev/kvm` may exist, create a VM and still fail
/// when QEMU sets up a vCPU (nested virtualisation without the MSRs QEMU needs, as on these hosts),
/// so the answer is QEMU's own: a paused KVM guest (`-S`, no devices) that is still alive after
/// 2 s means yes.
pub fn kvm_usable(qemu: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let Ok(mut probe) = spawn(
        Command::new(qemu)
            .args([
                "-machine",
                "q35,accel=kvm",
                "-cpu",
                "host",
                "-nodefaults",
                "-display",
                "none",
                "-S",
                "-monitor",
                "none",
                "-serial",
                "none",
                "-nic",
                "none",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "the KVM probe",
    ) else {
        return false;
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(_)) = probe.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = probe.kill();
    let _ = probe.wait();
    true
}

/// What SEV-SNP needs that this host lacks, if anything: QEMU ≥ 9.1 (`sev-snp-guest`), `/dev/sev`,
/// SNP-enabled firmware (`/sys/module/kvm_amd/parameters/sev_snp` = `Y`) and a usable KVM.
pub fn snp_missing(qemu: &Path, qemu_version: Option<(u32, u32)>) -> Vec<String> {
    let mut missing = Vec::new();
    match qemu_version {
        Some(v) if v >= (9, 1) => {}
        Some((a, b)) => missing.push(format!("QEMU ≥ 9.1 (found {a}.{b})")),
        None => missing.push("QEMU ≥ 9.1 (version unknown)".into()),
    }
    if !Path::new("/dev/sev").exists() {
        missing.push("/dev/sev".into());
    }
    let snp = std::fs::read_to_string("/sys/module/kvm_amd/parameters/sev_snp").unwrap_or_default();
    if snp.trim() != "Y" && snp.trim() != "1" {
        missing.push("SNP firmware (kvm_amd sev_snp=Y)".into());
    }
    if !kvm_usable(qemu) {
        missing.push("a usable /dev/kvm".into());
    }
    missing
}

/// `(major, minor)` of `qemu --version`.
fn qemu_version(qemu: &Path) -> Option<(u32, u32)> {
    let out = Command::new(qemu).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?.split_whitespace().next()?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A child killed and reaped when dropped (a launch that fails half-way leaves nothing running).
#[derive(Debug)]
struct Killed(Option<Child>);

impl Killed {
    fn child(&mut self) -> anyhow::Result<&mut Child> {
        self.0.as_mut().context("child already handed over")
    }
    /// Hands the child over: no longer killed on drop.
    fn keep(mut self) -> anyhow::Result<Child> {
        self.0.take().context("child already handed over")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child that dies with the launcher.
fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<Child> {
    // SAFETY: the closure runs between fork and exec and only makes the prctl system call, which
    // is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
        .with_context(|| format!("starting {what} ({:?})", cmd.get_program()))
}

/// Waits until `path` exists or `child` exited.
fn wait_for_socket(path: &Path, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(st) = child.try_wait()? {
            bail!("{what} exited ({st}) before creating {}", path.display());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: expected {} within 30 s, found none",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn abs(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The swtpm for this launch; provisions its state folder once (EK and certificate, SHA-256).
fn start_swtpm(state: &Path) -> anyhow::Result<(Killed, PathBuf)> {
    let dir = state.join("tpm");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if std::fs::read_dir(&dir)?.next().is_none() {
        let out = Command::new("swtpm_setup")
            .args(["--tpm2", "--tpmstate"])
            .arg(&dir)
            .args(["--create-ek-cert", "--pcr-banks", "sha256", "--overwrite"])
            .output()
            .context("running swtpm_setup")?;
        ensure!(
            out.status.success(),
            "swtpm_setup: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ctrl = state.join("swtpm.sock");
    let _ = std::fs::remove_file(&ctrl);
    let child = spawn(
        Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate", "--tpmstate"])
            .arg(format!("dir={}", dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={},mode=0600", ctrl.display()))
            .arg("--log")
            .arg(format!(
                "file={},level=1",
                state.join("swtpm.log").display()
            ))
            .stdin(Stdio::null()),
        "swtpm",
    )?;
    let mut child = Killed(Some(child));
    wait_for_socket(&ctrl, child.child()?, "swtpm")?;
    Ok((child, ctrl))
}

/// Builds the image (or takes the prebuilt one in `image`: `vmlinuz`, `initrd.img`, `cmdline` and
/// `model.img` when the launch has models, as `secllama image build` writes them) and boots the
/// guest of the VM-mode config at `config`; returns once the agent listens. Progress and the
/// guest's console lines go to `log`. A prebuilt image is not checked against the config here:
/// what it holds is what the guest's PCRs 4 and 9 report.
///
/// # Errors
/// The config is not VM mode, a host tool is missing, or the guest did not reach its agent (the
/// error names the last stage and quotes the console).
pub fn start(
    config: &Path,
    image: Option<&Path>,
    mut log: impl Write + Send + 'static,
) -> anyhow::Result<Vm> {
    let config_path = std::fs::canonicalize(config)
        .with_context(|| format!("the config {}", config.display()))?;
    let (c, base) = Config::load(&config_path)?;
    ensure!(
        c.launch.isolation == Isolation::Vm,
        "[launch] isolation: expected \"vm\", found \"{}\"",
        c.launch.isolation.as_str()
    );
    let ListenerAddr::Vsock(port) = c.listener_addr() else {
        bail!(
            "listener: expected vsock:PORT in VM mode (the agent listens inside the guest), \
             found {}",
            c.listener
        );
    };
    let vm = &c.vm;
    let qemu = abs(&base, &vm.qemu);
    let qemu = if vm.qemu.components().count() == 1 {
        vm.qemu.clone()
    } else {
        qemu
    };
    if vm.confidential == Confidential::SevSnp {
        let missing = snp_missing(&qemu, qemu_version(&qemu));
        bail!(
            "[vm] confidential = \"sev-snp\": this host cannot launch an SEV-SNP guest; missing: {}",
            missing.join(", ")
        );
    }
    let state = abs(&base, &vm.state);
    std::fs::create_dir_all(&state)
        .with_context(|| format!("creating the state folder {}", state.display()))?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
    let accel = if kvm_usable(&qemu) {
        Accel::Kvm
    } else {
        let _ = writeln!(
            log,
            "vm: warning: /dev/kvm is not usable here; the guest runs under TCG emulation (slow)"
        );
        Accel::Tcg
    };

    let image = match image {
        Some(dir) => crate::image::build::Built::read(dir)?,
        None => {
            let mtime = crate::cli::image::build::source_date_epoch()?;
            crate::image::build::build(&config_path, &state.join("image"), mtime)?
        }
    };
    let _ = writeln!(
        log,
        "vm: image kernel sha256:{} initrd sha256:{}",
        hex::encode(image.kernel_sha256),
        hex::encode(image.initrd_sha256)
    );

    let log_disk = log_disk(&state, &image, vm.log_disk_mib, &mut log)?;
    let (swtpm, tpm_socket) = start_swtpm(&state)?;
    let vhost = state.join("vhost-user-vsock.sock");
    let vsock_socket = state.join(VSOCK_SOCKET);
    for s in [&vhost, &vsock_socket] {
        let _ = std::fs::remove_file(s);
    }
    let backend = if vm.vsock_backend.components().count() == 1 {
        vm.vsock_backend.clone()
    } else {
        abs(&base, &vm.vsock_backend)
    };
    let vsock = spawn(
        Command::new(&backend)
            .arg("--vm")
            .arg(format!(
                "guest-cid={},socket={},uds-path={}",
                vm.cid,
                vhost.display(),
                vsock_socket.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        "the vsock backend",
    )?;
    let mut vsock = Killed(Some(vsock));
    wait_for_socket(&vhost, vsock.child()?, "the vsock backend")?;

    let vars = state.join("OVMF_VARS.fd");
    std::fs::copy(abs(&base, &vm.ovmf_vars), &vars)
        .with_context(|| format!("copying [vm] ovmf_vars {}", vm.ovmf_vars.display()))?;
    let serial_log = state.join(SERIAL_LOG);
    let _ = std::fs::remove_file(&serial_log);
    let spec = VmSpec {
        kernel: image.kernel.clone(),
        initrd: image.initrd.clone(),
        cmdline: image.cmdline.clone(),
        memory_mib: vm.memory_mib,
        vcpus: vm.vcpus,
        ovmf_code: abs(&base, &vm.ovmf_code),
        ovmf_vars: vars,
        tpm_socket,
        vsock_socket: vhost,
        model_disk: image.model_disk.as_ref().map(|(d, _)| d.clone()),
        log_disk: Some(log_disk),
        serial_log: serial_log.clone(),
        accel,
        snp: None,
    };
    let qemu_child = spawn(
        Command::new(&qemu)
            .args(qemu_args(&spec))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "QEMU",
    )?;
    let mut running = Vm {
        qemu: qemu_child,
        vsock: vsock.keep()?,
        swtpm: swtpm.keep()?,
        state: state.clone(),
        vsock_socket,
        port,
        serial_log,
        image,
        accel,
        stages: vec![("qemu".into(), Duration::ZERO)],
        stopped: false,
    };
    match running.follow_boot(Duration::from_secs(vm.boot_timeout_secs), &mut log) {
        Ok(()) => Ok(running),
        Err(e) => {
            let _ = super::Running::stop(&mut running);
            Err(e)
        }
    }
}

/// `line` without the terminal escape sequences (`ESC [ … letter`, `ESC =…`) at its start.
fn skip_escapes(mut line: &str) -> &str {
    while let Some(rest) = line.strip_prefix('\x1b') {
        let end = rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| c.is_ascii_alphabetic())
            .map_or(rest.len(), |(i, c)| i + c.len_utf8());
        line = rest.get(end..).unwrap_or("");
    }
    line
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Vm {
    /// Reads the console until the agent listens, the guest fails, or `timeout` passes.
    fn follow_boot(&mut self, timeout: Duration, log: &mut impl Write) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut seen = 0usize;
        let listening = format!("listening on vsock:{}", self.port);
        // On a terminal, a spinner line with the stage and the time (cleared before each line).
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut ak_seen = false;
        let mut frame = 0usize;
        let clear = |log: &mut dyn Write| {
            if tty {
                let _ = write!(log, "\r\x1b[2K");
            }
        };
        loop {
            let text = std::fs::read(&self.serial_log).unwrap_or_default();
            let text = String::from_utf8_lossy(&text).into_owned();
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            for line in text[seen.min(complete)..complete].lines() {
                // The firmware clears the screen before the kernel runs: escape sequences may
                // precede the first line of the init. Only those are skipped; the runner's lines
                // arrive as `runner: …` (escaped by the init) and can match nothing below.
                let line = skip_escapes(line.trim_end_matches('\r'));
                clear(log);
                if let Some(h) = line.strip_prefix(secllama_enclave::guest::FIRMWARE_LOG_LINE) {
                    let bytes = hex::decode(h.trim())
                        .context("the guest's firmware log line is not hex")?;
                    std::fs::write(self.state.join(FIRMWARE_LOG), bytes)?;
                    let _ = writeln!(log, "guest: firmware event log saved to {FIRMWARE_LOG}");
                    continue;
                }
                let _ = writeln!(log, "guest: {line}");
                if let Some(stage) = line.strip_prefix("secllama-init: stage ") {
                    self.stages.push((stage.to_string(), start.elapsed()));
                }
                if let Some(hex_ak) = line.strip_prefix("ak public: ") {
                    ensure!(
                        !ak_seen,
                        "the guest printed a second `ak public:` line; expected one from the agent"
                    );
                    ak_seen = true;
                    let ak = hex::decode(hex_ak.trim())
                        .context("the guest's `ak public:` line is not hex")?;
                    std::fs::write(self.state.join(super::AK_PUBLIC), ak)?;
                }
                if line.contains("secllama-init: error:") || line.contains("Kernel panic") {
                    bail!(
                        "the guest failed at stage {}: {line}\n--- console ({}) ---\n{}",
                        self.stage(),
                        self.serial_log.display(),
                        tail(&text, 20)
                    );
                }
                if line.trim() == listening {
                    self.stages.push(("agent ready".into(), start.elapsed()));
                    let stages: Vec<String> = self
                        .stages
                        .iter()
                        .map(|(s, t)| format!("{s} {:.1} s", t.as_secs_f64()))
                        .collect();
                    let _ = writeln!(log, "vm: boot stages: {}", stages.join(", "));
                    return Ok(());
                }
            }
            seen = complete;
            if tty {
                const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                frame = (frame + 1) % FRAMES.len();
                let _ = write!(
                    log,
                    "\r\x1b[2K{} booting the VM: {} ({:.0} s)",
                    FRAMES[frame],
                    self.stage(),
                    start.elapsed().as_secs_f64()
                );
                let _ = log.flush();
            }
            if let Some(st) = self.qemu.try_wait()? {
                clear(log);
                let mut err = String::new();
                if let Some(mut e) = self.qemu.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                bail!(
                    "QEMU exited ({st}) at stage {}: {}\n--- console ({}) ---\n{}",
                    self.stage(),
                    err.trim(),
                    self.serial_log.display(),
                    tail(&text, 20)
                );
            }
            if start.elapsed() > timeout {
                clear(log);
                bail!(
                    "the guest did not start its agent within {} s ([vm] boot_timeout_secs); it \
                     reached stage {}\n--- console ({}) ---\n{}",
                    timeout.as_secs(),
                    self.stage(),
                    self.serial_log.display(),
                    tail(&text, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last boot stage seen ("qemu" until the firmware and kernel hand over to the init).
    pub fn stage(&self) -> String {
        match self.stages.last() {
            Some((s, _)) if s == "qemu" => {
                "firmware/kernel (no output from secllama-init yet)".into()
            }
            Some((s, _)) => s.clone(),
            None => "qemu".into(),
        }
    }
}

impl super::Running for Vm {
    fn enclave_addr(&self) -> EnclaveAddr {
        EnclaveAddr::VsockUds {
            path: self.vsock_socket.clone(),
            port: self.port,
        }
    }
    fn describe(&self) -> String {
        format!(
            "enclave listening on vsock-uds:{}:{} (VM pid {}, {}, booted in {:.1} s)",
            self.vsock_socket.display(),
            self.port,
            self.qemu.id(),
            match self.accel {
                Accel::Kvm => "KVM",
                Accel::Tcg => "TCG",
            },
            self.stages.last().map_or(0.0, |(_, t)| t.as_secs_f64())
        )
    }
    fn exited(&mut self) -> anyhow::Result<Option<String>> {
        if let Some(s) = self.qemu.try_wait()? {
            return Ok(Some(format!(
                "the VM exited ({s}); console: {}",
                self.serial_log.display()
            )));
        }
        for (child, what) in [
            (&mut self.vsock, "vsock backend"),
            (&mut self.swtpm, "swtpm"),
        ] {
            if let Some(s) = child.try_wait()? {
                return Ok(Some(format!("the {what} exited ({s})")));
            }
        }
        Ok(None)
    }
    fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        // swtpm (--terminate) ends when QEMU's connection does, after writing its state (which
        // holds the AK): give it a moment before killing it.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.swtpm.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in [&mut self.vsock, &mut self.swtpm] {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = super::Running::stop(self);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_leading_escape_sequences_are_skipped() {
        assert_eq!(
            skip_escapes("\x1b[2J\x1b[01;01H\x1b[=3hsecllama-init: stage mounts"),
            "secllama-init: stage mounts"
        );
        assert_eq!(
            skip_escapes("runner: secllama-init: stage x"),
            "runner: secllama-init: stage x"
        );
        assert_eq!(skip_escapes("\x1b"), "");
        assert_eq!(skip_escapes("ak public: 00"), "ak public: 00");
    }
}
