//! Resource limits: what the spec asks for, checked by the parent against its own hard limits
//! (a process without `CAP_SYS_RESOURCE` in the initial namespace can only lower them), and set
//! by the child as both soft and hard limit. Core dumps are always disabled: a core file of the
//! enclave would hold its keys.

use rustix::process::{Resource, Rlimit};

use super::child::StepFailure;
use super::error::{SandboxError, SetupStep};

/// Resource limits for the sandboxed program (soft = hard). [`Limits::UNLIMITED`] leaves a
/// resource unlimited, if the launcher's own hard limit allows that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS`: bytes of virtual address space (a model runner maps the whole model).
    pub address_space: u64,
    /// `RLIMIT_NPROC`: processes and threads of the sandbox's user (see the module docs of
    /// [`sandbox`](super) for the root-launcher caveat).
    pub processes: u64,
    /// `RLIMIT_NOFILE`: open file descriptors.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`: bytes in any one file written.
    pub file_size: u64,
}

impl Limits {
    /// No limit (`RLIM_INFINITY`).
    pub const UNLIMITED: u64 = u64::MAX;
}

fn rlimit(value: u64) -> Rlimit {
    let v = if value == Limits::UNLIMITED {
        None
    } else {
        Some(value)
    };
    Rlimit {
        current: v,
        maximum: v,
    }
}

/// Parent side: the (resource, limit) list for the child, refusing values above the launcher's
/// hard limits (the child could not set them and would fail later, less clearly).
pub(super) fn plan(limits: &Limits) -> Result<Vec<(Resource, Rlimit)>, SandboxError> {
    let mut out = Vec::new();
    for (name, resource, value) in [
        (
            "limits.address_space (RLIMIT_AS)",
            Resource::As,
            limits.address_space,
        ),
        (
            "limits.processes (RLIMIT_NPROC)",
            Resource::Nproc,
            limits.processes,
        ),
        (
            "limits.open_files (RLIMIT_NOFILE)",
            Resource::Nofile,
            limits.open_files,
        ),
        (
            "limits.file_size (RLIMIT_FSIZE)",
            Resource::Fsize,
            limits.file_size,
        ),
    ] {
        if value == 0 {
            return Err(SandboxError::spec(
                name,
                "a positive limit or Limits::UNLIMITED",
                "0",
            ));
        }
        let hard = rustix::process::getrlimit(resource).maximum;
        if let Some(hard) = hard {
            if value > hard {
                return Err(SandboxError::spec(
                    name,
                    "at most the launcher's own hard limit",
                    format!("{value} (hard limit here: {hard})"),
                ));
            }
        }
        out.push((resource, rlimit(value)));
    }
    out.push((Resource::Core, rlimit(0)));
    Ok(out)
}

/// Child side.
pub(super) fn apply(limits: &[(Resource, Rlimit)]) -> Result<(), StepFailure> {
    for (resource, limit) in limits {
        rustix::process::setrlimit(*resource, *limit)
            .map_err(|e| StepFailure::new(SetupStep::Rlimits, e))?;
    }
    Ok(())
}
