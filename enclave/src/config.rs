//! The agent's configuration (TOML), measured as the `config` enclave digest:
//!
//! ```toml
//! listener = "unix:/run/secllama/enclave.sock"   # or vsock:PORT inside a VM (docs/vm.md)
//! runner_url = "http://127.0.0.1:11434"          # the runner's Ollama API, loopback only
//! runner_command = ["/opt/bin/ollama", "serve"]  # optional: started and supervised by the agent
//! runner_env = { OLLAMA_HOST = "127.0.0.1:11434" }  # the runner's whole environment
//! runner_ready_secs = 60                          # the runner must answer /api/version within
//! policy = "policy.json"
//! receipts = "receipts.log"
//! event_log = "launch.log"                        # the launcher's TCG log; the agent appends its key event
//! tcti = "swtpm:host=127.0.0.1,port=2321"         # else SECLLAMA_TCTI, else device:/dev/tpmrm0
//! ak_handle = 0x81010002
//! quote_pcrs = [15, 23]
//! [launch]                                         # the same table `secllama measure launch` reads
//! agent = "…"
//! …
//! [sandbox]                                        # read by `secllama launch` only (defaults shown)
//! uid = 1000                                       # ids inside the sandbox
//! gid = 1000
//! host_uid = 65532                                 # the agent's host ids (dedicated: no host process)
//! host_gid = 65532
//! runner_host_uid = 65533                          # host ids of the runner's own sandbox
//! runner_host_gid = 65533
//! memory_mib = 16384                               # address space
//! processes = 256
//! open_files = 1024
//! file_size_mib = 1024
//! tmpfs_mib = 64                                   # private /tmp
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

/// Seconds the runner has to answer `GET /api/version` after it is started, unless configured.
pub const DEFAULT_RUNNER_READY_SECS: u64 = 60;

fn default_runner_ready_secs() -> u64 {
    DEFAULT_RUNNER_READY_SECS
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
    /// The runner's complete environment (it inherits nothing from the agent), e.g.
    /// `OLLAMA_HOST`, `OLLAMA_MODELS`, `HOME`.
    #[serde(default)]
    pub runner_env: std::collections::BTreeMap<String, String>,
    /// Seconds the runner has, after each start, to answer `GET /api/version` on `runner_url`
    /// (a large model loads slowly). Part of the measured config; the launcher waits this long
    /// plus [`AGENT_START_SECS`] for the agent to say it is listening.
    #[serde(default = "default_runner_ready_secs")]
    pub runner_ready_secs: u64,
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
    /// How `secllama launch` confines the agent (process mode). The agent does not read it; it is
    /// here so that the limits are part of the measured config.
    #[serde(default)]
    pub sandbox: SandboxSettings,
    /// How `secllama launch` builds and boots the guest when `[launch] isolation = "vm"`
    /// (docs/vm.md); measured with the config like `[sandbox]`.
    #[serde(default)]
    pub vm: VmSettings,
}

impl Config {
    /// The runner's `host:port`, from `runner_url` (validated as a loopback URL when loaded).
    pub fn runner_host_port(&self) -> String {
        self.runner_url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// Seconds the agent itself may take to start (keys, PCR 23, hashing the artifacts), on top of
/// `runner_ready_secs`.
pub const AGENT_START_SECS: u64 = 60;

/// The `[sandbox]` table: ids and resource limits of the process-mode sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// The uid inside the sandbox (non-root).
    pub uid: u32,
    /// The gid inside the sandbox (non-root).
    pub gid: u32,
    /// The host uid the agent's sandbox runs as (default 65532). Dedicated: `secllama launch`
    /// refuses it while a host process runs as it (such a process could signal the agent).
    pub host_uid: u32,
    /// The host gid the agent's sandbox runs as (default 65532).
    pub host_gid: u32,
    /// The host uid the runner's own sandbox runs as (launcher as root); must differ from
    /// `host_uid` (docs/isolation.md). No account is needed: any unused uid.
    pub runner_host_uid: u32,
    /// The host gid of the runner's sandbox; must differ from `host_gid`.
    pub runner_host_gid: u32,
    /// Address space limit in MiB (the runner maps the whole model).
    pub memory_mib: u64,
    /// Processes and threads.
    pub processes: u64,
    /// Open files.
    pub open_files: u64,
    /// Largest file written, in MiB (the receipt log grows).
    pub file_size_mib: u64,
    /// Size of the private `/tmp`, in MiB.
    pub tmpfs_mib: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            uid: 1000,
            gid: 1000,
            host_uid: 65532,
            host_gid: 65532,
            runner_host_uid: 65533,
            runner_host_gid: 65533,
            memory_mib: 16 * 1024,
            processes: 256,
            open_files: 1024,
            file_size_mib: 1024,
            tmpfs_mib: 64,
        }
    }
}

/// Whether the VM is a confidential one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidential {
    /// A plain VM: the host's swtpm is the root of trust (TPM-VM mode).
    #[default]
    None,
    /// AMD SEV-SNP with `kernel-hashes=on`: the SNP report is the root of trust.
    SevSnp,
}

/// The `[vm]` table (VM mode, docs/vm.md). Relative paths are taken from the config's folder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmSettings {
    /// The unpacked Debian kernel package (`dpkg-deb -x linux-image-VERSION_…deb DIR`): holds
    /// `boot/vmlinuz-VERSION` and `lib/modules/VERSION/`.
    pub kernel: PathBuf,
    /// The kernel release, e.g. `6.1.0-57-amd64` (pinned: `scripts/setup.sh` fetches it).
    pub kernel_version: String,
    /// The guest's init, `secllama-init` (PID 1 in the initramfs).
    pub init: PathBuf,
    /// Kernel modules the guest loads (their dependencies are added from `.modinfo`).
    pub modules: Vec<String>,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// The guest's vsock context id.
    pub cid: u32,
    /// Seconds from QEMU's start until the agent listens, before the launch gives up.
    pub boot_timeout_secs: u64,
    /// OVMF code (read-only pflash).
    pub ovmf_code: PathBuf,
    /// OVMF variables template (copied per launch).
    pub ovmf_vars: PathBuf,
    /// `none` or `sev-snp`.
    pub confidential: Confidential,
    /// The host folder of the launch's state: the image, the vTPM's state (kept between
    /// launches, so the AK stays the same), sockets, the serial log, `ak.pub`. Never in the guest.
    pub state: PathBuf,
    /// The QEMU program.
    pub qemu: PathBuf,
    /// SEV-SNP: the OVMF build with SEV metadata (`OVMF.amdsev.fd`, not in Debian) QEMU boots
    /// with `-bios`, and whose pages the launch digest covers.
    pub snp_ovmf: PathBuf,
    /// SEV-SNP: the vCPU model (`-cpu`, and the VMSA's CPUID signature in the launch digest).
    pub snp_vcpu_type: String,
    /// The vhost-user vsock backend program (`vhost-device-vsock`; setup puts it in
    /// `.cache/tools/bin`).
    pub vsock_backend: PathBuf,
    /// Size of the receipt log disk, MiB (a raw image in `state`, `receipts.img`, attached as a
    /// virtio disk with serial `secllama-log`; the guest's `receipts` is then
    /// [`crate::guest::disk::LOG_DISK`]). Grown, never shrunk; about 2000 receipts per MiB.
    pub log_disk_mib: u64,
}

/// The modules a guest needs: virtio-pci, virtio-blk, vsock over virtio, dm-verity, squashfs.
pub const DEFAULT_VM_MODULES: [&str; 6] = [
    "virtio_pci",
    "virtio_blk",
    "vmw_vsock_virtio_transport",
    "dm_verity",
    "squashfs",
    "virtio_console",
];

impl Default for VmSettings {
    fn default() -> Self {
        Self {
            kernel: PathBuf::new(),
            kernel_version: String::new(),
            init: PathBuf::new(),
            modules: DEFAULT_VM_MODULES.iter().map(|m| m.to_string()).collect(),
            memory_mib: 1024,
            vcpus: 1,
            cid: 3,
            boot_timeout_secs: 600,
            ovmf_code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            ovmf_vars: "/usr/share/OVMF/OVMF_VARS_4M.fd".into(),
            confidential: Confidential::None,
            state: "/var/lib/secllama/vm".into(),
            qemu: "qemu-system-x86_64".into(),
            vsock_backend: "vhost-device-vsock".into(),
            snp_ovmf: PathBuf::new(),
            snp_vcpu_type: "EPYC-v4".into(),
            log_disk_mib: 64,
        }
    }
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
        if c.runner_ready_secs == 0 || c.runner_ready_secs > 3600 {
            return Err(err(
                "runner_ready_secs between 1 and 3600",
                c.runner_ready_secs.to_string(),
            ));
        }
        let sb = &c.sandbox;
        if sb.runner_host_uid == 0
            || sb.runner_host_gid == 0
            || sb.runner_host_uid == sb.host_uid
            || sb.runner_host_gid == sb.host_gid
        {
            return Err(err(
                "[sandbox] runner_host_uid/runner_host_gid: non-root ids other than the agent's \
                 host_uid/host_gid (the runner must not be able to become the agent)",
                format!(
                    "runner {}:{}, agent {}:{}",
                    sb.runner_host_uid, sb.runner_host_gid, sb.host_uid, sb.host_gid
                ),
            ));
        }
        let vm = c.launch.isolation == secllama_measurements::launch::Isolation::Vm;
        if vm && !(0..=9).chain([KEYS_PCR]).all(|p| c.quote_pcrs.contains(&p)) {
            return Err(err(
                "quote_pcrs with 0-9 and 23 in VM mode (firmware, kernel, command line and \
                 initramfs, the key binding: docs/vm.md)",
                format!("{:?}", c.quote_pcrs),
            ));
        }
        let vsock = c.listener.starts_with("vsock:");
        if vsock != vm {
            return Err(err(
                "listener vsock:PORT exactly when [launch] isolation = \"vm\" (AF_VSOCK is \
                 opened only inside a guest; process mode listens on unix:PATH)",
                format!(
                    "{} with isolation {}",
                    c.listener,
                    c.launch.isolation.as_str()
                ),
            ));
        }
        let v = &c.vm;
        if !(256..=1 << 20).contains(&v.memory_mib)
            || !(1..=64).contains(&v.vcpus)
            || v.cid < 3
            || v.cid == u32::MAX
            || v.boot_timeout_secs == 0
            || !(1..=1 << 20).contains(&v.log_disk_mib)
        {
            return Err(err(
                "[vm] memory_mib 256..=1048576, vcpus 1..=64, cid 3..=4294967294, \
                 boot_timeout_secs > 0 and log_disk_mib 1..=1048576",
                format!(
                    "memory_mib {}, vcpus {}, cid {}, boot_timeout_secs {}, log_disk_mib {}",
                    v.memory_mib, v.vcpus, v.cid, v.boot_timeout_secs, v.log_disk_mib
                ),
            ));
        }
        if let Err(expected) = crate::listener::ListenerAddr::parse(&c.listener) {
            return Err(err(&format!("listener {expected}"), c.listener.clone()));
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

    /// The listener's address (validated when loaded).
    pub fn listener_addr(&self) -> crate::listener::ListenerAddr {
        crate::listener::ListenerAddr::parse(&self.listener)
            .unwrap_or_else(|_| crate::listener::ListenerAddr::Unix(self.listener_path()))
    }

    /// The unix socket path of the listener (process mode; meaningless for `vsock:PORT`).
    pub fn listener_path(&self) -> PathBuf {
        PathBuf::from(self.listener.trim_start_matches("unix:"))
    }
}
