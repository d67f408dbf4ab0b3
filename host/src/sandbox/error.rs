//! The sandbox's one error type, and the names of the steps the pre-exec child reports back.
//!
//! Every variant says what was expected and what was found, and — where the cause is a kernel
//! feature that is missing or switched off — how to get it (boot parameter, sysctl, kernel config).
//! The child cannot allocate, so it reports a failure as a [`SetupStep`] plus an errno over a pipe;
//! [`SandboxError::Setup`] turns that pair back into a sentence.

use std::io;
use std::path::PathBuf;

/// Why [`spawn`](super::spawn) (or a [`SandboxChild`](super::SandboxChild) method) failed.
///
/// `spawn` never falls back to running a program with less confinement than asked for: every
/// missing mechanism is one of these errors.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A field of the [`SandboxSpec`](super::SandboxSpec) is unusable.
    #[error("sandbox spec: {field}: expected {expected}, found {found}")]
    InvalidSpec {
        /// The field (or list element) at fault.
        field: String,
        /// What the sandbox needs there.
        expected: &'static str,
        /// What it was given.
        found: String,
    },
    /// A path named in the spec could not be inspected on the host.
    #[error("sandbox spec: cannot inspect {path}: {reason}")]
    Path {
        /// The host path.
        path: PathBuf,
        /// The I/O error from `lstat`/`readlink`.
        reason: io::Error,
    },
    /// A kernel mechanism the sandbox depends on is not available; `how` says how to enable it.
    #[error("kernel feature missing: {feature}: expected {expected}, found {found}; {how}")]
    KernelFeature {
        /// The mechanism (user namespaces, seccomp, Landlock, ...).
        feature: &'static str,
        /// What the sandbox needs.
        expected: &'static str,
        /// What this kernel reports.
        found: String,
        /// The boot parameter, sysctl or kernel option that provides it.
        how: &'static str,
    },
    /// The seccomp allow-list could not be compiled for this architecture.
    #[error("seccomp filter: expected a BPF program for {arch}, found compiler error: {reason}")]
    Seccomp {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
        /// seccompiler's error.
        reason: String,
    },
    /// Building the Landlock ruleset on the host side failed (after the ABI check passed).
    #[error("landlock ruleset: {what}: {reason}")]
    Landlock {
        /// What was being added.
        what: String,
        /// The landlock crate's error.
        reason: String,
    },
    /// An operating-system call in the launcher (not in the child) failed.
    #[error("{what}: {reason}")]
    Os {
        /// What the launcher was doing.
        what: String,
        /// The error.
        reason: io::Error,
    },
    /// The child failed while confining itself, before `execve`; nothing unconfined ran.
    #[error("sandbox setup failed at step '{step}': {reason}{hint}", hint = step.hint())]
    Setup {
        /// The confinement step that failed.
        step: SetupStep,
        /// The errno the kernel returned.
        reason: io::Error,
    },
    /// `execve` of the program inside the sandbox failed (after every confinement step succeeded).
    #[error(
        "exec of {program} inside the sandbox failed: {reason} (only paths listed in read_only \
         exist and are executable inside)"
    )]
    Exec {
        /// The program path.
        program: PathBuf,
        /// The errno from `execve` (`ENOENT` when the path is not mounted, `EACCES` when Landlock
        /// or a `noexec` mount refuses it).
        reason: io::Error,
    },
    /// The child's report pipe carried something that is not a report (a bug, never expected).
    #[error("sandbox child report: expected {expected}, found {found}")]
    Protocol {
        /// What the launcher expected.
        expected: &'static str,
        /// What it read.
        found: String,
    },
}

impl SandboxError {
    pub(super) fn os(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        SandboxError::Os {
            what: what.into(),
            reason: source.into(),
        }
    }

    pub(super) fn spec(
        field: impl Into<String>,
        expected: &'static str,
        found: impl Into<String>,
    ) -> Self {
        SandboxError::InvalidSpec {
            field: field.into(),
            expected,
            found: found.into(),
        }
    }
}

/// A confinement step of the pre-exec child, in the order the child runs them.
///
/// The numeric values travel over the report pipe; they are private to one launcher binary
/// (parent and child are the same executable), so they carry no compatibility promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SetupStep {
    /// Waiting for the launcher to write the uid/gid maps.
    AwaitIdMaps = 1,
    /// Checking that the ids inside are the requested non-root ones.
    CheckIds,
    /// Resetting signal dispositions and the signal mask.
    Signals,
    /// Wiring stdin (/dev/null), stdout and stderr (pipes).
    Stdio,
    /// `setsid`: no controlling terminal.
    Session,
    /// Dropping supplementary groups.
    Groups,
    /// Making every inherited mount private.
    MountPrivate,
    /// The staging tmpfs and the first `pivot_root` (host root kept at /oldroot while building).
    MountStaging,
    /// The new root tmpfs.
    MountRoot,
    /// The private tmpfs at /tmp.
    MountTmp,
    /// /proc of the new pid namespace.
    MountProc,
    /// Creating a directory, file or symlink inside the new root.
    MountSkeleton,
    /// Bind-mounting an artifact, a device node or the socket directory.
    MountBind,
    /// Remounting a bind mount read-only / nosuid / nodev / noexec.
    MountRemount,
    /// Remounting the new root read-only.
    MountRootReadOnly,
    /// The final `pivot_root` into the new root and detaching the host's root.
    MountPivot,
    /// Bringing `lo` up over rtnetlink.
    LoopbackUp,
    /// Setting the UTS hostname.
    Hostname,
    /// Setting rlimits.
    Rlimits,
    /// Locking the capability securebits.
    Securebits,
    /// Emptying the capability bounding set.
    CapBounding,
    /// Clearing the ambient capability set.
    CapAmbient,
    /// Clearing effective, permitted and inheritable capabilities.
    CapSets,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Adding the in-sandbox Landlock rules (/tmp, /proc).
    LandlockRules,
    /// `landlock_restrict_self`.
    LandlockRestrict,
    /// Landlock reported that nothing was enforced.
    LandlockNotEnforced,
    /// Marking every descriptor above stderr close-on-exec.
    CloseFds,
    /// Moving the passed descriptors to 3, 4, …
    PassFds,
    /// Installing the seccomp filters.
    Seccomp,
    /// `execve` itself.
    Exec,
}

impl SetupStep {
    const ALL: [SetupStep; 31] = [
        SetupStep::AwaitIdMaps,
        SetupStep::CheckIds,
        SetupStep::Signals,
        SetupStep::Stdio,
        SetupStep::Session,
        SetupStep::Groups,
        SetupStep::MountPrivate,
        SetupStep::MountStaging,
        SetupStep::MountRoot,
        SetupStep::MountTmp,
        SetupStep::MountProc,
        SetupStep::MountSkeleton,
        SetupStep::MountBind,
        SetupStep::MountRemount,
        SetupStep::MountRootReadOnly,
        SetupStep::MountPivot,
        SetupStep::LoopbackUp,
        SetupStep::Hostname,
        SetupStep::Rlimits,
        SetupStep::Securebits,
        SetupStep::CapBounding,
        SetupStep::CapAmbient,
        SetupStep::CapSets,
        SetupStep::NoNewPrivs,
        SetupStep::LandlockRules,
        SetupStep::LandlockRestrict,
        SetupStep::LandlockNotEnforced,
        SetupStep::CloseFds,
        SetupStep::PassFds,
        SetupStep::Seccomp,
        SetupStep::Exec,
    ];

    pub(super) fn from_u32(value: u32) -> Option<SetupStep> {
        SetupStep::ALL.iter().copied().find(|s| *s as u32 == value)
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            SetupStep::AwaitIdMaps => "wait for uid/gid maps",
            SetupStep::CheckIds => "check ids",
            SetupStep::Signals => "reset signals",
            SetupStep::Stdio => "stdio",
            SetupStep::Session => "setsid",
            SetupStep::Groups => "drop supplementary groups",
            SetupStep::MountPrivate => "make mounts private",
            SetupStep::MountStaging => "staging tmpfs + pivot_root",
            SetupStep::MountRoot => "root tmpfs",
            SetupStep::MountTmp => "tmpfs at /tmp",
            SetupStep::MountProc => "mount /proc",
            SetupStep::MountSkeleton => "create mount points",
            SetupStep::MountBind => "bind mount",
            SetupStep::MountRemount => "remount bind read-only/nosuid/nodev",
            SetupStep::MountRootReadOnly => "remount root read-only",
            SetupStep::MountPivot => "pivot_root into the new root",
            SetupStep::LoopbackUp => "bring lo up",
            SetupStep::Hostname => "sethostname",
            SetupStep::Rlimits => "setrlimit",
            SetupStep::Securebits => "lock securebits",
            SetupStep::CapBounding => "empty capability bounding set",
            SetupStep::CapAmbient => "clear ambient capabilities",
            SetupStep::CapSets => "clear capability sets",
            SetupStep::NoNewPrivs => "no_new_privs",
            SetupStep::LandlockRules => "landlock rules",
            SetupStep::LandlockRestrict => "landlock_restrict_self",
            SetupStep::LandlockNotEnforced => "landlock enforcement",
            SetupStep::CloseFds => "close-on-exec for inherited descriptors",
            SetupStep::PassFds => "handing over the passed descriptors",
            SetupStep::Seccomp => "seccomp filter",
            SetupStep::Exec => "execve",
        }
    }

    /// What to check when this step fails (empty when the errno says it all).
    fn hint(self) -> &'static str {
        match self {
            SetupStep::MountProc => {
                " (mounting proc in a user namespace needs an unobstructed proc mount on the host \
                 with no over-mounts on /proc)"
            }
            SetupStep::MountBind => {
                " (read_only paths must not contain other mount points; EINVAL here usually means \
                 one does)"
            }
            SetupStep::LandlockRestrict
            | SetupStep::LandlockNotEnforced
            | SetupStep::LandlockRules => {
                " (Landlock needs CONFIG_SECURITY_LANDLOCK=y and 'landlock' in the lsm= boot \
                 parameter, e.g. lsm=landlock,lockdown,yama,integrity,apparmor,bpf)"
            }
            SetupStep::Seccomp => {
                " (seccomp filters need CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y)"
            }
            SetupStep::CloseFds => " (close_range(CLOSE_RANGE_CLOEXEC) needs Linux 5.11 or later)",
            SetupStep::LoopbackUp => " (the new network namespace's lo could not be set up)",
            _ => "",
        }
    }
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
