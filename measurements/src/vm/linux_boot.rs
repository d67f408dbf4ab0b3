//! What QEMU's direct Linux boot (`-kernel`, `hw/i386/x86.c` `x86_load_linux`, QEMU 7.2, q35, no
//! SEV) writes into the bzImage's setup header before handing it to OVMF through fw_cfg
//! (Linux `Documentation/arch/x86/boot.rst`, boot protocol 2.15): OVMF loads and measures the
//! patched image, so PCR 4's application digest is that of the patched file.
//!
//! For a kernel of protocol ≥ 2.02 loaded "high": `cmd_line_ptr` (0x228) = 0x20000,
//! `type_of_loader` (0x210) = 0xB0, `loadflags` (0x211) |= `CAN_USE_HEAP`, `heap_end_ptr`
//! (0x224) = 0xFE00, and with an initrd `ramdisk_image` (0x218) = the page below the top of low
//! memory minus the ACPI tables where the initrd fits, `ramdisk_size` (0x21c) = its size.

/// QEMU's `acpi_data_size` for the pc/q35 machine types since 2.x (0x20000 + 0x8000).
pub const ACPI_DATA_SIZE: u64 = 0x28000;

/// The guest RAM below 4 GiB for q35 with `ram` bytes (`pc_q35_init`: the low-memory limit is
/// 0x80000000 when RAM reaches 0xb0000000, else 0xb0000000).
pub fn q35_below_4g(ram: u64) -> u64 {
    let lowmem = if ram >= 0xb000_0000 {
        0x8000_0000
    } else {
        0xb000_0000
    };
    ram.min(lowmem)
}

/// A kernel QEMU would not boot the way this module models.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bzImage: {0}")]
pub struct BootError(pub String);

/// The kernel as OVMF receives it from QEMU for `memory_mib` of RAM and an initrd of
/// `initrd_size` bytes.
///
/// # Errors
/// Not a bzImage of boot protocol ≥ 2.02 loaded high, or an initrd that does not fit.
pub fn patch_setup_header(
    kernel: &[u8],
    memory_mib: u64,
    initrd_size: u64,
) -> Result<Vec<u8>, BootError> {
    let mut k = kernel.to_vec();
    if k.len() < 0x268 || k[0x202..0x206] != *b"HdrS" {
        return Err(BootError("no \"HdrS\" setup header at 0x202".into()));
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let protocol = u16_at(&k, 0x206);
    if protocol < 0x202 || k[0x211] & 0x01 == 0 {
        return Err(BootError(format!(
            "expected boot protocol ≥ 2.02 and LOADED_HIGH, found {protocol:#x}, loadflags {:#x}",
            k[0x211]
        )));
    }
    const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
    let mut initrd_max: u64 =
        if protocol >= 0x20c && u16_at(&k, 0x236) & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
            u64::from(u32::MAX)
        } else if protocol >= 0x203 {
            u64::from(u32_at(&k, 0x22c))
        } else {
            0x37ff_ffff
        };
    let below_4g = q35_below_4g(memory_mib.saturating_mul(1 << 20));
    let top = below_4g
        .checked_sub(ACPI_DATA_SIZE + 1)
        .ok_or_else(|| BootError(format!("{memory_mib} MiB of RAM is too little to boot")))?;
    if initrd_max > top {
        initrd_max = top;
    }
    let (real_addr, cmdline_addr) = (0x10000u32, 0x20000u32);
    k[0x228..0x22c].copy_from_slice(&cmdline_addr.to_le_bytes());
    k[0x210] = 0xb0;
    k[0x211] |= 0x80;
    let heap_end = u16::try_from(cmdline_addr - real_addr - 0x200).unwrap_or(0xfe00);
    k[0x224..0x226].copy_from_slice(&heap_end.to_le_bytes());
    if initrd_size >= initrd_max {
        return Err(BootError(format!(
            "the initrd ({initrd_size} bytes) does not fit below {initrd_max:#x} with {memory_mib} MiB"
        )));
    }
    let initrd_addr = (initrd_max - initrd_size) & !4095;
    let addr = u32::try_from(initrd_addr).map_err(|_| BootError("initrd above 4 GiB".into()))?;
    let size = u32::try_from(initrd_size).map_err(|_| BootError("initrd over 4 GiB".into()))?;
    k[0x218..0x21c].copy_from_slice(&addr.to_le_bytes());
    k[0x21c..0x220].copy_from_slice(&size.to_le_bytes());
    Ok(k)
}
