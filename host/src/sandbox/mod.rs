//! # Process-mode sandbox: the confinement `secllama launch` starts the enclave agent in
//!
//! [`spawn`] starts one program in fresh user, mount, pid, network, IPC, UTS and cgroup namespaces
//! and confines it before `execve`, so the program's first instruction already runs confined:
//!
//! - **network**: its network namespace holds only `lo`, and `lo` is up — loopback works, nothing
//!   else is routable. `socket()` is allowed only for `AF_UNIX`, `AF_INET`, `AF_INET6`; `AF_VSOCK`
//!   (which ignores network namespaces and reaches the hypervisor), `AF_PACKET` and `AF_NETLINK`
//!   are refused by seccomp.
//! - **files**: the root is a read-only tmpfs holding only the artifacts ([`SandboxSpec::read_only`],
//!   bind-mounted read-only at the same path, with the host's symlinks along those paths
//!   reproduced), a private tmpfs at `/tmp` (`noexec`), `/proc` of the new pid namespace
//!   (read-only), `/dev/{null,zero,urandom,random}` (plus `/dev/fd`, `/dev/std*` symlinks), and
//!   the one read-write listener-socket directory. Landlock confines access on top of that:
//!   read/execute on artifacts, read-write (no execute) on `/tmp` and the socket directory, read on
//!   `/proc`, read(/write) on the four device nodes; everything else, including listing `/`, is
//!   refused.
//! - **privileges**: non-root uid/gid inside, mapped from the launcher's own ids; supplementary
//!   groups dropped (when the launcher may); capability bounding, ambient, effective, permitted and
//!   inheritable sets empty and the securebits locked; `no_new_privs`; rlimits (address space,
//!   processes, open files, file size, and no core dumps).
//! - **syscalls**: a seccomp allow-list (`seccomp.rs`) — no `ptrace`, `mount`,
//!   `pivot_root`, `bpf`, `keyctl`, module loading, `kexec`, `perf_event_open`, `userfaultfd`,
//!   `unshare`, `setns`, `process_vm_*`, `io_uring`, `memfd_create`, System V IPC, and `clone` only without
//!   namespace flags.
//!
//! In process mode the host kernel is part of the measured, trusted platform (DESIGN "Trust
//! model"): this sandbox keeps the enclave from reaching anything but its bridge socket; it does
//! not protect the enclave from the host.
//!
//! ## Order of confinement
//!
//! Parent (the launcher), before anything is started — everything that allocates or can fail
//! softly happens here:
//! 1. validate the spec; check that user namespaces and seccomp filters exist, and that the
//!    rlimits are not above the launcher's own hard limits;
//! 2. plan the mount tree (resolving each artifact's path, reproducing its symlinks);
//! 3. create the Landlock ruleset (ABI 1 rights are a hard requirement, rights up to ABI 6 and the
//!    signal / abstract-socket scopes are added when the kernel has them) with rules on the host
//!    inodes of the artifacts, socket directory and device nodes;
//! 4. compile the seccomp filters; build argv/envp as C strings;
//! 5. `clone(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
//!    CLONE_NEWUTS | CLONE_NEWCGROUP)`; the child is pid 1 of its pid namespace;
//! 6. write the child's `setgroups` (`deny`, only when the launcher lacks `CAP_SETGID`), `uid_map`
//!    and `gid_map` (one id each: inside uid/gid → the launcher's euid/egid), then release it.
//!
//! Child, in this order, before `execve` (no allocation; each failure is reported as a
//! [`SetupStep`] and the child exits without running the program):
//! 1. reset signal dispositions and mask; wait for the id maps; check the ids inside;
//!    stdin ← `/dev/null`, stdout/stderr → pipes; `setsid`; drop supplementary groups;
//! 2. mounts: everything `rprivate`; a staging tmpfs and `pivot_root` into it (host root at
//!    `/oldroot`); build the new root tmpfs (`/tmp`, `/proc`, `/dev` nodes, artifacts, socket
//!    dir, symlinks); remount it read-only; detach `/oldroot`; `pivot_root` into the new root and
//!    detach the staging tmpfs;
//! 3. bring `lo` up (rtnetlink — the last `AF_NETLINK` socket this process ever gets); set the
//!    hostname;
//! 4. rlimits;
//! 5. capabilities: lock securebits, empty the bounding set, clear ambient, clear
//!    effective/permitted/inheritable;
//! 6. `no_new_privs`;
//! 7. Landlock: add the rules for the new `/tmp` and `/proc`, `landlock_restrict_self`, and report
//!    the enforced ABI to the parent (refusing to go on if nothing is enforced);
//! 8. mark every descriptor above stderr close-on-exec;
//! 9. seccomp last: first a filter making `clone3` fail with `ENOSYS` (so libc falls back to
//!    `clone`, whose flags a filter can inspect), then the allow-list (which refuses `seccomp()`
//!    itself, so it has to be the last filter);
//! 10. `execve`.
//!
//! If a kernel feature is missing — user namespaces, seccomp filters, Landlock,
//! `close_range` — [`spawn`] returns [`SandboxError::KernelFeature`] or
//! [`SandboxError::Setup`] naming it and how to enable it; it never runs the program with less
//! confinement.
//!
//! ## Why this module allows `unsafe_code`
//!
//! The workspace denies `unsafe_code`; this module (and only this module in the crate) allows it
//! because starting a process in new namespaces needs four things no safe API offers:
//! `clone(2)` with namespace flags (so the child is pid 1 of its own pid namespace — `unshare`
//! cannot do that for the caller itself, and `std::process::Command` has no way to ask for it),
//! `execve(2)` from pre-built argv/envp pointer arrays (the child must not allocate: it is a copy
//! of a multi-threaded process), resetting signal dispositions, and `close_range(2)` (marking
//! inherited descriptors close-on-exec; rustix and nix do not wrap it). Every `unsafe` block carries a
//! `// SAFETY:` comment. Everything else uses rustix, nix, seccompiler and landlock.
//!
//! ## What callers must know
//!
//! - The program gets `SIGKILL` when the thread that called [`spawn`] exits (`PR_SET_PDEATHSIG`):
//!   an enclave never outlives its launcher, even a launcher killed with `SIGKILL`. Call
//!   [`spawn`] from a thread that lives as long as the sandbox should (the launcher's main thread).
//! - The program is pid 1 of its pid namespace: signals other than `SIGKILL`/`SIGSTOP` from the
//!   host are delivered only if it installed a handler, and it must reap its own orphans.
//!   [`SandboxChild::kill`] sends `SIGKILL`, which takes the whole namespace down.
//! - Shared libraries are files like any other: a dynamically linked program needs its loader and
//!   libraries in `read_only` (and, since they run inside the enclave, they belong in the
//!   measurement too).
//! - Inside ids map to the launcher's own ids (one uid, one gid) unless
//!   [`SandboxSpec::outside_ids`] names others (`secllama launch` as root maps to an unprivileged
//!   host user). Without it, when the launcher runs as root, the sandboxed process is kernel uid 0
//!   outside its namespace, without any capability.
//!   Two consequences: it owns root's files by DAC — the mount view, read-only mounts and Landlock
//!   are what keep it from them (this is also why `/proc` is mounted read-only: global sysctls
//!   check the owner uid, not a capability); and the kernel exempts uid 0 from `RLIMIT_NPROC`,
//!   so that limit is set but not enforced. Running the launcher as a dedicated unprivileged user
//!   removes both.

#![allow(unsafe_code)]

mod caps;
mod child;
mod error;
mod landlock;
mod mounts;
mod namespaces;
mod process;
mod rlimits;
mod seccomp;

use std::ffi::OsString;
use std::path::PathBuf;

pub use error::{SandboxError, SetupStep};
pub use process::{LandlockReport, SandboxChild};
pub use rlimits::Limits;

/// What to run and what it may see. All paths are host paths; inside the sandbox they appear at
/// the same place.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// Absolute path of the program; it must be (inside) one of `read_only`.
    pub program: PathBuf,
    /// Arguments after `argv[0]` (which is `program`).
    pub args: Vec<OsString>,
    /// The complete environment of the program (nothing is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Artifact files and directories, bind-mounted read-only and executable at the same path.
    pub read_only: Vec<PathBuf>,
    /// The one host directory bind-mounted read-write (`noexec`), for the unix listener socket.
    pub writable_socket_dir: Option<PathBuf>,
    /// Size in bytes of the private tmpfs at `/tmp`.
    pub tmpfs_size: u64,
    /// Permission bits of `/tmp` (owned by the inside uid): `0o700`, or `0o711` when another
    /// process (the agent, through a descriptor) must reach a socket in it.
    pub tmpfs_mode: u32,
    /// Descriptors the program receives open, as descriptors 3, 4, 5… in this order (every other
    /// inherited descriptor is closed at `execve`). This is how a sandbox gets access to one
    /// host file, socket or directory without any host folder mounted writable.
    pub pass_fds: Vec<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// Refuse `truncate`, `ftruncate` and `fallocate` (seccomp): a file handed over for appending
    /// (the agent's receipt log) cannot be shortened or have holes punched in it. (A program can
    /// still clear `O_APPEND` with `fcntl` and write in place: seccomp cannot tell which
    /// descriptor `F_SETFL` is for.)
    pub no_truncate: bool,
    /// The uid inside (non-zero); mapped to the launcher's effective uid.
    pub uid: u32,
    /// The gid inside (non-zero); mapped to the launcher's effective gid.
    pub gid: u32,
    /// The host (uid, gid) the inside ids map to instead of the launcher's own. Needs
    /// `CAP_SETUID` and `CAP_SETGID` (a root launcher); must be non-root. A root launcher should
    /// always set it: otherwise the sandboxed process is kernel uid 0 outside its namespace.
    pub outside_ids: Option<(u32, u32)>,
    /// Resource limits, set as both soft and hard limit.
    pub limits: Limits,
}

/// Most descriptors [`SandboxSpec::pass_fds`] may hold.
pub const MAX_PASSED_FDS: usize = 16;

/// Stack size for the pre-exec child (it runs only the confinement steps, no allocation).
const CHILD_STACK: usize = 1 << 20;

/// Starts `spec.program` confined as described in the [module documentation](self).
///
/// Returns once the program has been `execve`d inside the sandbox (or with the error that
/// prevented it; in that case nothing of the program ran).
pub fn spawn(spec: &SandboxSpec) -> Result<SandboxChild, SandboxError> {
    validate_ids_and_sizes(spec)?;
    namespaces::check_user_namespaces()?;
    seccomp::check_available()?;
    let rlimits = rlimits::plan(&spec.limits)?;
    let (mounts, exposed) = mounts::MountPlan::build(spec)?;
    let ruleset = landlock::host_ruleset(&exposed)?;
    let filters = seccomp::build(spec.no_truncate)?;
    let exec = child::Exec::new(spec)?;
    let privileged = namespaces::may_map_any_id();
    if let Some((u, g)) = spec.outside_ids {
        let own = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        if u == 0 || g == 0 || u == u32::MAX || g == u32::MAX {
            return Err(SandboxError::spec(
                "outside_ids",
                "non-root host ids other than 4294967295",
                format!("{u}:{g}"),
            ));
        }
        if !privileged && (u, g) != own {
            return Err(SandboxError::spec(
                "outside_ids",
                "the launcher's own ids, unless it has CAP_SETUID and CAP_SETGID",
                format!("{u}:{g} (launcher {}:{})", own.0, own.1),
            ));
        }
    }

    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| SandboxError::os("pipe2", e))
    };
    let (go_rx, go_tx) = pipe()?;
    let (report_rx, report_tx) = pipe()?;
    let (stdout_rx, stdout_tx) = pipe()?;
    let (stderr_rx, stderr_tx) = pipe()?;
    let devnull = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| SandboxError::os("open /dev/null", e))?;

    let mut plan = child::ChildPlan {
        go: go_rx,
        report: report_tx,
        stdin: devnull,
        stdout: stdout_tx,
        stderr: stderr_tx,
        clear_groups: privileged,
        uid: spec.uid,
        gid: spec.gid,
        mounts,
        rlimits,
        landlock: Some(ruleset),
        seccomp: filters,
        pass_fds: spec
            .pass_fds
            .iter()
            .map(|f| std::os::fd::AsRawFd::as_raw_fd(&**f))
            .collect(),
        exec,
    };
    let mut stack = vec![0u8; CHILD_STACK];
    let pid = namespaces::clone_into_namespaces(Box::new(|| child::run(&mut plan)), &mut stack)?;
    // The parent's copies of the child's ends (and of the Landlock ruleset) close here.
    drop(plan);

    // From here on, dropping `sandboxed` kills and reaps the child.
    let mut sandboxed = SandboxChild::new(pid, stdout_rx.into(), stderr_rx.into());
    namespaces::write_id_maps(pid, spec.uid, spec.gid, spec.outside_ids, !privileged)?;
    rustix::io::write(&go_tx, &[1])
        .map_err(|e| SandboxError::os("releasing the sandbox child", e))?;
    drop(go_tx);
    let landlock = child::read_reports(report_rx, &spec.program)?;
    sandboxed.set_landlock(landlock);
    Ok(sandboxed)
}

fn validate_ids_and_sizes(spec: &SandboxSpec) -> Result<(), SandboxError> {
    for (field, id) in [("uid", spec.uid), ("gid", spec.gid)] {
        if id == 0 || id == u32::MAX {
            return Err(SandboxError::spec(
                field,
                "a non-root id other than 4294967295",
                id.to_string(),
            ));
        }
    }
    if spec.tmpfs_mode & !0o777 != 0 || spec.tmpfs_mode & 0o700 != 0o700 {
        return Err(SandboxError::spec(
            "tmpfs_mode",
            "permission bits including 0o700",
            format!("{:#o}", spec.tmpfs_mode),
        ));
    }
    if spec.pass_fds.len() > MAX_PASSED_FDS {
        return Err(SandboxError::spec(
            "pass_fds",
            "at most 16 descriptors",
            spec.pass_fds.len().to_string(),
        ));
    }
    if spec.tmpfs_size == 0 {
        return Err(SandboxError::spec(
            "tmpfs_size",
            "a positive size in bytes",
            "0",
        ));
    }
    if !spec.program.is_absolute() {
        return Err(SandboxError::spec(
            "program",
            "an absolute path",
            spec.program.display().to_string(),
        ));
    }
    Ok(())
}
