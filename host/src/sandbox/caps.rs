//! Capabilities and `no_new_privs`, in the child, after the last step that needs a capability
//! (mounts, `lo`, hostname, rlimits) and before Landlock and seccomp.
//!
//! Inside its user namespace the child starts with every capability (over that namespace's
//! objects only). Before `execve` it gives them all up for good: the securebits are locked so
//! that no uid change or `execve` can bring capabilities back, the bounding set is emptied (every
//! capability the running kernel knows, not just the ones this crate names), the ambient set is
//! cleared, and the effective, permitted and inheritable sets are set empty and read back.

use rustix::io::Errno;
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets};

use super::child::StepFailure;
use super::error::SetupStep;

/// Drops every capability (see the module docs).
pub(super) fn drop_all() -> Result<(), StepFailure> {
    rustix::thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT
            | CapabilitiesSecureBits::NO_ROOT_LOCKED
            | CapabilitiesSecureBits::NO_SETUID_FIXUP
            | CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED
            | CapabilitiesSecureBits::KEEP_CAPS_LOCKED
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE_LOCKED,
    )
    .map_err(|e| StepFailure::new(SetupStep::Securebits, e))?;

    // Capabilities are numbered densely from 0 to /proc/sys/kernel/cap_last_cap; the kernel
    // answers EINVAL for the first number past the last one.
    let mut dropped_any = false;
    for bit in 0..64u32 {
        let cap = CapabilitySet::from_bits_retain(1u64 << bit);
        match rustix::thread::remove_capability_from_bounding_set(cap) {
            Ok(()) => dropped_any = true,
            Err(Errno::INVAL) if dropped_any => break,
            Err(e) => return Err(StepFailure::new(SetupStep::CapBounding, e)),
        }
    }

    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| StepFailure::new(SetupStep::CapAmbient, e))?;

    let empty = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, empty)
        .map_err(|e| StepFailure::new(SetupStep::CapSets, e))?;
    let now =
        rustix::thread::capabilities(None).map_err(|e| StepFailure::new(SetupStep::CapSets, e))?;
    if now != empty {
        return Err(StepFailure {
            step: SetupStep::CapSets,
            errno: libc::EPERM,
        });
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`: no set-uid, set-gid or file capability can ever raise privileges again
/// (and Landlock and seccomp can be installed without `CAP_SYS_ADMIN`).
pub(super) fn set_no_new_privs() -> Result<(), StepFailure> {
    rustix::thread::set_no_new_privs(true).map_err(|e| StepFailure::new(SetupStep::NoNewPrivs, e))
}
