//! Reference PCRs of a VM-mode boot (docs/vm.md): QEMU direct kernel boot under OVMF with a TPM.
//!
//! OVMF measures (TCG PC Client PFP §10.4; the order of a real boot's log):
//! - **PCR 4**: `EV_EFI_BOOT_SERVICES_APPLICATION` — the Authenticode digest ([`authenticode`]) of
//!   the kernel as QEMU handed it over, its setup header patched ([`linux_boot`]); then
//!   `EV_EFI_ACTION` "Calling EFI Application from Boot Option"; then `EV_SEPARATOR` (0x00000000);
//! - **PCR 9**: `EV_EVENT_TAG` `LOADED_IMAGE::LoadOptions` — the command line as UTF-16LE with
//!   OVMF's ` initrd=initrd` appended and its NUL; then `EV_EVENT_TAG` "Linux initrd" — the
//!   initramfs file.
//!
//! So PCR 4 pins the kernel and PCR 9 the command line (and so the model disk's verity root hash)
//! and the initramfs (agent, runner, policy, config, libraries, modules, init). The firmware's own
//! PCRs (0–3, 5–7) depend on QEMU, OVMF and the machine, not on secllama's artifacts: they are
//! pinned from a golden event log of the same QEMU/OVMF/memory ([`firmware_pcrs`]).

pub mod authenticode;
pub mod linux_boot;

use crate::eventlog::{Bank, EventLog, PcrValues};

/// The `EV_EFI_ACTION` OVMF logs in PCR 4 before starting the kernel.
pub const CALLING_EFI_APPLICATION: &str = "Calling EFI Application from Boot Option";

/// What OVMF appends to the command line it measures (the initrd's file name in its loader).
pub const INITRD_SUFFIX: &str = " initrd=initrd";

/// The boot whose PCRs to predict.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    /// The bzImage file.
    pub kernel: &'a [u8],
    /// The initramfs file.
    pub initrd: &'a [u8],
    /// The `-append` command line.
    pub cmdline: &'a str,
    /// Guest RAM (`-m`), MiB.
    pub memory_mib: u64,
}

/// A boot whose PCRs cannot be predicted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// The kernel is not a PE image.
    #[error(transparent)]
    Pe(#[from] authenticode::PeError),
    /// The kernel's setup header cannot be patched as QEMU does.
    #[error(transparent)]
    Boot(#[from] linux_boot::BootError),
}

/// The event digests OVMF extends into PCR 4 and PCR 9, in order, in `bank`.
///
/// # Errors
/// The kernel is not a bzImage with a PE header.
pub fn events(boot: &Boot<'_>, bank: Bank) -> Result<Vec<(u32, Vec<u8>)>, VmError> {
    let patched =
        linux_boot::patch_setup_header(boot.kernel, boot.memory_mib, boot.initrd.len() as u64)?;
    let load_options: Vec<u8> = format!("{}{INITRD_SUFFIX}\0", boot.cmdline)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    Ok(vec![
        (4, authenticode::digest(&patched, bank)?),
        (4, bank.hash(&[CALLING_EFI_APPLICATION.as_bytes()])),
        (4, bank.hash(&[&[0u8; 4]])),
        (9, bank.hash(&[&load_options])),
        (9, bank.hash(&[boot.initrd])),
    ])
}

/// PCR 4 and PCR 9 after the boot, in every bank of `banks`.
///
/// # Errors
/// As [`events`].
pub fn predict(boot: &Boot<'_>, banks: &[Bank]) -> Result<PcrValues, VmError> {
    let mut out = PcrValues::new();
    for bank in banks {
        let values = out.entry(*bank).or_default();
        for (pcr, digest) in events(boot, *bank)? {
            let v = values.entry(pcr).or_insert_with(|| vec![0u8; bank.size()]);
            *v = bank.hash(&[v, &digest]);
        }
    }
    Ok(out)
}

/// The firmware's PCRs (0–3 and 5–7) replayed from a golden event log of the same QEMU, OVMF and
/// memory size, and PCR 8 (which nothing in this boot extends: its reset value unless the golden
/// log says otherwise), in the banks of `banks` the log records.
pub fn firmware_pcrs(golden: &EventLog, banks: &[Bank]) -> PcrValues {
    let replayed = golden.replay();
    let mut out = PcrValues::new();
    for bank in banks.iter().filter(|b| golden.banks.contains(b)) {
        let values = out.entry(*bank).or_default();
        for i in (0..=8).filter(|i| *i != 4) {
            let v = replayed
                .get(bank)
                .and_then(|m| m.get(&i))
                .cloned()
                .unwrap_or_else(|| vec![0u8; bank.size()]);
            values.insert(i, v);
        }
    }
    out
}
