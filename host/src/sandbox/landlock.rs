//! Landlock: which file accesses the sandboxed program keeps.
//!
//! Landlock rules attach to inodes, not paths, and a bind mount shows the same inode. So the parent
//! builds the ruleset with rules on the host's artifact files, socket directory and device nodes
//! (the objects the child bind-mounts), and the child adds the two objects that only exist inside
//! (the new `/tmp` tmpfs and the new `/proc`) before `landlock_restrict_self`.
//!
//! Rights handled: every file-system right up to [`TARGET_ABI`] (ABI 1 rights are a hard
//! requirement — no Landlock, no sandbox; newer ones are used when the kernel has them) plus the
//! ABI 6 scopes (no signals to, and no abstract unix sockets of, processes outside the sandbox's
//! domain). Network rights are left to the network namespace.

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::fs::{Mode, OFlags};

use super::child::StepFailure;
use super::error::{SandboxError, SetupStep};
use super::mounts::{Exposed, Grant};
use super::process::LandlockReport;

/// The newest Landlock ABI whose rights this module was written and tested against.
pub(super) const TARGET_ABI: ABI = ABI::V6;

fn read_execute(is_dir: bool) -> BitFlags<AccessFs> {
    let file = AccessFs::Execute | AccessFs::ReadFile;
    if is_dir {
        file | AccessFs::ReadDir
    } else {
        file
    }
}

/// Read-write inside a directory, no execute, no device nodes, no device ioctls.
fn read_write_dir() -> BitFlags<AccessFs> {
    AccessFs::from_all(TARGET_ABI)
        & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock | AccessFs::IoctlDev)
}

fn read_only_dir() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn access(grant: Grant, is_dir: bool) -> BitFlags<AccessFs> {
    match grant {
        Grant::Artifact => read_execute(is_dir),
        Grant::SocketDir => read_write_dir(),
        Grant::WritableDevice => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate,
        Grant::ReadableDevice => AccessFs::ReadFile.into(),
    }
}

fn unavailable(err: impl std::fmt::Display) -> SandboxError {
    SandboxError::KernelFeature {
        feature: "Landlock",
        expected: "Landlock ABI 1 or newer (Linux 5.13+) enabled at boot",
        found: err.to_string(),
        how: "build the kernel with CONFIG_SECURITY_LANDLOCK=y and put 'landlock' in the lsm= boot \
              parameter (e.g. lsm=landlock,lockdown,yama,integrity,apparmor,bpf), or in \
              CONFIG_LSM",
    }
}

/// Parent side: the ruleset with rules on the host objects the sandbox exposes.
pub(super) fn host_ruleset(exposed: &[Exposed]) -> Result<RulesetCreated, SandboxError> {
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(unavailable)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(unavailable)?
        .scope(Scope::from_all(TARGET_ABI))
        .map_err(unavailable)?
        .create()
        .map_err(unavailable)?;
    for item in exposed {
        let fd = PathFd::new(&item.path).map_err(|e| SandboxError::Landlock {
            what: format!("opening {}", item.path.display()),
            reason: e.to_string(),
        })?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access(item.grant, item.is_dir)))
            .map_err(|e| SandboxError::Landlock {
                what: format!("rule for {}", item.path.display()),
                reason: e.to_string(),
            })?;
    }
    Ok(ruleset)
}

/// Child side (after the final `pivot_root`): rules for the new `/tmp` and `/proc`, then
/// `landlock_restrict_self`. Refuses to continue when nothing is enforced.
pub(super) fn restrict_self(ruleset: RulesetCreated) -> Result<LandlockReport, StepFailure> {
    let mut ruleset = ruleset;
    for (path, rights) in [(c"/tmp", read_write_dir()), (c"/proc", read_only_dir())] {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepFailure::new(SetupStep::LandlockRules, e))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|e| StepFailure::from_error(SetupStep::LandlockRules, &e))?;
    }
    let status = ruleset
        .restrict_self()
        .map_err(|e| StepFailure::from_error(SetupStep::LandlockRestrict, &e))?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => abi_number(effective_abi),
        _ => 0,
    };
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(LandlockReport {
            abi,
            fully_enforced: true,
        }),
        RulesetStatus::PartiallyEnforced => Ok(LandlockReport {
            abi,
            fully_enforced: false,
        }),
        _ => Err(StepFailure {
            step: SetupStep::LandlockNotEnforced,
            errno: libc::EOPNOTSUPP,
        }),
    }
}

fn abi_number(abi: ABI) -> u32 {
    match abi {
        ABI::V1 => 1,
        ABI::V2 => 2,
        ABI::V3 => 3,
        ABI::V4 => 4,
        ABI::V5 => 5,
        ABI::V6 => 6,
        ABI::V7 => 7,
        ABI::V8 => 8,
        ABI::V9 => 9,
        ABI::V10 => 10,
        _ => 0,
    }
}
