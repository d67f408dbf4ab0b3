//! `secllama-init`: PID 1 of the VM guest (VM mode, docs/vm.md). The kernel runs it from the
//! measured initramfs (PCR 9 covers the initramfs and the command line); it prepares the guest and
//! starts the enclave exactly as `secllama launch` does in process mode — the runner under its own
//! uid (`secllama-enclave runner-init`), the agent under another, the TPM device for the agent
//! only — then powers the VM off when either ends.
//!
//! Stages, each announced on the console as `secllama-init: stage <name>` (the launcher's
//! progress display and boot-timeout message read them from the serial log):
//! 1. `mounts`: `/proc`, `/sys`, `/dev` (devtmpfs), `/sys/kernel/security`, `/run` and the
//!    runner's [`RUNNER_DIR`] (tmpfs, mode 0711, owned by the runner);
//! 2. `modules`: [`kmod::MODULE_DIR`] in order;
//! 3. `network`: `lo` up; the isolation probe ([`net::probe`]) is printed as
//!    `secllama-init: isolation …` and a guest with any other interface or route stops here;
//! 4. `model disk` (when the command line has `secllama.verity=`): the dm-verity device over
//!    the disk with serial `secllama-model` ([`disk`], [`dm`]), mounted read-only (squashfs) at
//!    [`MODEL_MOUNT`]; the image links each model's configured path there; `log disk` (when the
//!    config's `receipts` is [`disk::LOG_DISK`]): the host's raw disk with serial
//!    `secllama-log`, given to the agent's uid (mode 0600), which keeps the receipt log on it;
//! 5. `tpm`: the firmware's event log is copied to the config's `event_log` (the agent appends its
//!    key event) and `/dev/tpmrm0` is given to the agent's uid, mode 0600;
//! 6. `runner`, `agent`: the two processes; the agent says `listening on vsock:PORT`.
//!
//! The config is named on the kernel command line (`secllama.config=PATH`), so it is measured
//! twice over: in the initramfs and in the command line.

pub mod console;
pub mod disk;
pub mod dm;
pub mod kmod;
pub mod net;
pub mod report;
pub mod seccomp;

use crate::config::Config;
use anyhow::{Context, bail, ensure};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The kernel command line parameter naming the agent's config in the image.
pub const CONFIG_PARAM: &str = "secllama.config";

/// Where the firmware's TCG event log appears in the guest.
pub const FIRMWARE_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// The console line prefix carrying the firmware's event log in hex.
pub const FIRMWARE_LOG_LINE: &str = "secllama-init: firmware log ";

/// The TPM device the agent uses (the kernel's resource manager).
pub const TPM_DEVICE: &str = "/dev/tpmrm0";

/// The runner's own folder (tmpfs, 0711, the runner's): its relay socket, which the agent
/// reaches through a descriptor. Not `/tmp`: the image keeps artifacts at their host paths, which
/// may be under `/tmp`.
pub const RUNNER_DIR: &str = "/run/secllama-runner";

/// Folders the init mounts over: artifacts cannot live there.
pub const MOUNT_POINTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/secllama"];

/// Where the model disk is mounted in the guest.
pub const MODEL_MOUNT: &str = "/secllama/model";

/// The model disk's device in the guest (linked by its serial: [`disk`]).
pub const MODEL_DEVICE: &str = disk::MODEL_DISK;

/// Waits up to 10 s for a device node (virtio and device-mapper probing is asynchronous).
fn wait_for(path: &Path) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    while !path.exists() {
        ensure!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "expected {} within 10 s, found none",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Opens the verity device over the model disk and mounts it read-only at [`MODEL_MOUNT`].
fn model_disk(param: &str) -> anyhow::Result<()> {
    use rustix::mount::MountFlags;
    let p = dm::VerityParams::from_param(param).map_err(|e| anyhow::anyhow!("expected {e}"))?;
    wait_for(Path::new(MODEL_DEVICE))?;
    let node = dm::open_verity("model", MODEL_DEVICE, &p)
        .context("opening the dm-verity device over the model disk")?;
    wait_for(&node)?;
    std::fs::create_dir_all(MODEL_MOUNT)?;
    rustix::mount::mount(
        &node,
        MODEL_MOUNT,
        "squashfs",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .with_context(|| format!("mounting {} (squashfs) on {MODEL_MOUNT}", node.display()))?;
    Ok(())
}

/// Prints one stage line on the console.
#[allow(clippy::print_stdout)]
pub fn stage(name: &str) {
    println!("secllama-init: stage {name}");
}

/// The value of `key=` on a kernel command line.
pub fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn mount(src: &str, target: &str, fs: &str, data: Option<&std::ffi::CStr>) -> anyhow::Result<()> {
    use rustix::mount::MountFlags;
    std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
    rustix::mount::mount(
        src,
        target,
        fs,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data,
    )
    .with_context(|| format!("mounting {fs} on {target}"))
}

fn mounts(runner: (u32, u32)) -> anyhow::Result<()> {
    mount("proc", "/proc", "proc", None)?;
    mount("sysfs", "/sys", "sysfs", None)?;
    std::fs::create_dir_all("/dev")?;
    rustix::mount::mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NOEXEC,
        None,
    )
    .context("mounting devtmpfs on /dev")?;
    mount("securityfs", "/sys/kernel/security", "securityfs", None)?;
    mount("tmpfs", "/run", "tmpfs", Some(c"mode=0755,size=64m"))?;
    let tmp = std::ffi::CString::new(format!(
        "mode=0711,size=64m,uid={},gid={}",
        runner.0, runner.1
    ))?;
    mount("tmpfs", RUNNER_DIR, "tmpfs", Some(&tmp))?;
    Ok(())
}

fn give(path: &Path, uid: u32, gid: u32, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Prepares the guest and starts the enclave; returns when the agent or the runner ended (an
/// error saying which), or at the first stage that failed.
///
/// # Errors
/// The stage that failed and why.
pub fn run() -> anyhow::Result<()> {
    stage("mounts");
    // The ids come from the config, named on the command line, read once /proc is mounted: the
    // runner's folder is mounted root-owned and given to the runner then.
    mounts((0, 0))?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let config_path = PathBuf::from(param(&cmdline, CONFIG_PARAM).with_context(|| {
        format!("the kernel command line: expected {CONFIG_PARAM}=PATH, found {cmdline:?}")
    })?);
    let (config, _base) = Config::load(&config_path)?;
    let s = &config.sandbox;
    let (agent_ids, runner_ids) = (
        (s.host_uid, s.host_gid),
        (s.runner_host_uid, s.runner_host_gid),
    );
    give(Path::new(RUNNER_DIR), runner_ids.0, runner_ids.1, 0o711)?;

    stage("modules");
    let modules = kmod::in_order(Path::new(kmod::MODULE_DIR))
        .with_context(|| format!("reading the modules folder {}", kmod::MODULE_DIR))?;
    for m in modules {
        kmod::load(&m)?;
    }

    stage("network");
    net::loopback_up().context("bringing lo up")?;
    let (line, isolated) = net::probe();
    #[allow(clippy::print_stdout)]
    {
        println!("secllama-init: isolation {line}");
    }
    ensure!(
        isolated,
        "expected a guest with only lo and no route off the machine, found {line}"
    );

    if let Some(v) = param(&cmdline, dm::VERITY_PARAM) {
        stage("model disk");
        disk::link(disk::MODEL_SERIAL)?;
        model_disk(v)?;
    }
    // The receipt log on the host's disk: the config's `receipts` names the disk by serial.
    let log_disk = match disk::serial_of(&config.receipts) {
        Some(serial) => {
            stage("log disk");
            Some(disk::link(serial)?)
        }
        None => None,
    };

    stage("tpm");
    let tpm = Path::new(TPM_DEVICE);
    ensure!(
        tpm.exists(),
        "expected the vTPM at {TPM_DEVICE} (QEMU tpm-crb), found none"
    );
    give(tpm, agent_ids.0, agent_ids.1, 0o600)?;
    if let Some(dev) = &log_disk {
        give(dev, agent_ids.0, agent_ids.1, 0o600)?;
    }
    let log = std::fs::read(FIRMWARE_LOG)
        .with_context(|| format!("reading the firmware's event log {FIRMWARE_LOG}"))?;
    let receipts_dir = config.receipts.parent().filter(|_| log_disk.is_none());
    for dir in [config.event_log.parent(), receipts_dir]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        give(dir, agent_ids.0, agent_ids.1, 0o700)?;
    }
    // For the operator's golden values (`secllama measure vm --golden-log`): the console is the
    // only way out besides the agent, and these bytes are what the attestation documents carry.
    #[allow(clippy::print_stdout)]
    {
        println!("{FIRMWARE_LOG_LINE}{}", hex::encode(&log));
    }
    std::fs::write(&config.event_log, &log)
        .with_context(|| format!("writing {}", config.event_log.display()))?;
    give(&config.event_log, agent_ids.0, agent_ids.1, 0o600)?;

    // The policy (its evaluation dataset) is the agent's alone, as in process mode.
    give(&config.policy, agent_ids.0, agent_ids.1, 0o400)?;

    let agent_bin = std::fs::canonicalize(&config.launch.agent)
        .with_context(|| format!("[launch] agent {}", config.launch.agent.display()))?;
    stage("runner");
    let filter = seccomp::runner_filter().map_err(|e| anyhow::anyhow!(e))?;
    let mut runner = std::process::Command::new(&agent_bin);
    // SAFETY: the hook runs between fork and exec and only makes the prctl/seccomp system calls
    // with a program compiled before the fork.
    #[allow(unsafe_code)]
    unsafe {
        runner.pre_exec(move || seccomp::install(&filter));
    }
    // Never the console: the runner's output is relayed, prefixed and escaped (console.rs), or
    // dropped in SEV-SNP mode where the host must not read it.
    let snp = config.vm.confidential == crate::config::Confidential::SevSnp;
    let out = if snp {
        std::process::Stdio::null()
    } else {
        std::process::Stdio::piped()
    };
    let err = if snp {
        std::process::Stdio::null()
    } else {
        std::process::Stdio::piped()
    };
    let mut runner = runner
        .arg("runner-init")
        .arg("--config")
        .arg(&config_path)
        .env_clear()
        .env(crate::runner_init::SOCKET_DIR_ENV, RUNNER_DIR)
        .uid(runner_ids.0)
        .gid(runner_ids.1)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting secllama-enclave runner-init")?;
    if let Some(o) = runner.stdout.take() {
        std::thread::spawn(move || console::relay(o, std::io::stdout()));
    }
    if let Some(e) = runner.stderr.take() {
        std::thread::spawn(move || console::relay(e, std::io::stdout()));
    }

    stage("agent");
    let tmp = rustix::fs::open(
        RUNNER_DIR,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .context("opening the runner's folder for the agent")?;
    use std::os::fd::AsRawFd;
    let mut agent = std::process::Command::new(&agent_bin)
        .arg("--config")
        .arg(&config_path)
        .env_clear()
        .env(crate::handoff::RUNNER_DIR_FD, tmp.as_raw_fd().to_string())
        .uid(agent_ids.0)
        .gid(agent_ids.1)
        .current_dir("/")
        .spawn()
        .context("starting the agent")?;
    drop(tmp);

    // Reap everything (PID 1 adopts orphans); stop when the agent or the runner ends.
    loop {
        let status = rustix::process::wait(rustix::process::WaitOptions::empty());
        match status {
            Ok(Some((pid, st))) => {
                let pid = pid.as_raw_nonzero().get();
                if pid == agent.id() as i32 {
                    let _ = runner.kill();
                    bail!("the agent exited ({st:?})");
                }
                if pid == runner.id() as i32 {
                    let _ = agent.kill();
                    bail!("runner-init exited ({st:?})");
                }
            }
            Ok(None) => {}
            Err(e) => bail!("wait: {e}"),
        }
    }
}

/// Syncs and powers the VM off (QEMU runs with `-no-reboot`).
pub fn power_off() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    // reboot(2) returned: nothing else to do but wait.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_parameters() {
        let c = "console=ttyS0 secllama.config=/etc/a.toml secllama.configx=1 initrd=initrd";
        assert_eq!(param(c, CONFIG_PARAM), Some("/etc/a.toml"));
        assert_eq!(param(c, "secllama.verity"), None);
        assert_eq!(param(c, "initrd"), Some("initrd"));
    }
}
