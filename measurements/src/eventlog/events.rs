//! Event types of the PC Client Platform Firmware Profile (§10.4.1) and the decoding of the common
//! ones: EV_SEPARATOR, EV_EFI_VARIABLE_* (UEFI_VARIABLE_DATA, incl. SecureBoot/PK/KEK/db/dbx),
//! EV_EFI_BOOT_SERVICES_APPLICATION (UEFI_IMAGE_LOAD_EVENT), EV_IPL, EV_EFI_ACTION, EV_NO_ACTION
//! (StartupLocality, Spec ID) and EV_EVENT_TAG (TCG_PCClientTaggedEvent, secllama's own events).
//! Also the check that an event's digests are of its data, for the types where the data is the
//! measured content.

use super::{Event, EventLog, Reader};

/// EV_PREBOOT_CERT
pub const EV_PREBOOT_CERT: u32 = 0x0;
/// EV_POST_CODE
pub const EV_POST_CODE: u32 = 0x1;
/// EV_NO_ACTION: logged, never extended.
pub const EV_NO_ACTION: u32 = 0x3;
/// EV_SEPARATOR
pub const EV_SEPARATOR: u32 = 0x4;
/// EV_ACTION
pub const EV_ACTION: u32 = 0x5;
/// EV_EVENT_TAG
pub const EV_EVENT_TAG: u32 = 0x6;
/// EV_S_CRTM_CONTENTS
pub const EV_S_CRTM_CONTENTS: u32 = 0x7;
/// EV_S_CRTM_VERSION
pub const EV_S_CRTM_VERSION: u32 = 0x8;
/// EV_CPU_MICROCODE
pub const EV_CPU_MICROCODE: u32 = 0x9;
/// EV_PLATFORM_CONFIG_FLAGS
pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0xa;
/// EV_TABLE_OF_DEVICES
pub const EV_TABLE_OF_DEVICES: u32 = 0xb;
/// EV_COMPACT_HASH
pub const EV_COMPACT_HASH: u32 = 0xc;
/// EV_IPL
pub const EV_IPL: u32 = 0xd;
/// EV_IPL_PARTITION_DATA
pub const EV_IPL_PARTITION_DATA: u32 = 0xe;
/// EV_NONHOST_CODE
pub const EV_NONHOST_CODE: u32 = 0xf;
/// EV_NONHOST_CONFIG
pub const EV_NONHOST_CONFIG: u32 = 0x10;
/// EV_NONHOST_INFO
pub const EV_NONHOST_INFO: u32 = 0x11;
/// EV_OMIT_BOOT_DEVICE_EVENTS
pub const EV_OMIT_BOOT_DEVICE_EVENTS: u32 = 0x12;
/// EV_EFI_VARIABLE_DRIVER_CONFIG
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
/// EV_EFI_VARIABLE_BOOT
pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
/// EV_EFI_BOOT_SERVICES_APPLICATION
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
/// EV_EFI_BOOT_SERVICES_DRIVER
pub const EV_EFI_BOOT_SERVICES_DRIVER: u32 = 0x8000_0004;
/// EV_EFI_RUNTIME_SERVICES_DRIVER
pub const EV_EFI_RUNTIME_SERVICES_DRIVER: u32 = 0x8000_0005;
/// EV_EFI_GPT_EVENT
pub const EV_EFI_GPT_EVENT: u32 = 0x8000_0006;
/// EV_EFI_ACTION
pub const EV_EFI_ACTION: u32 = 0x8000_0007;
/// EV_EFI_PLATFORM_FIRMWARE_BLOB
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
/// EV_EFI_HANDOFF_TABLES
pub const EV_EFI_HANDOFF_TABLES: u32 = 0x8000_0009;
/// EV_EFI_PLATFORM_FIRMWARE_BLOB2
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000a;
/// EV_EFI_HANDOFF_TABLES2
pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000b;
/// EV_EFI_VARIABLE_BOOT2
pub const EV_EFI_VARIABLE_BOOT2: u32 = 0x8000_000c;
/// EV_EFI_GPT_EVENT2
pub const EV_EFI_GPT_EVENT2: u32 = 0x8000_000d;
/// EV_EFI_HCRTM_EVENT
pub const EV_EFI_HCRTM_EVENT: u32 = 0x8000_0010;
/// EV_EFI_VARIABLE_AUTHORITY
pub const EV_EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00e0;
/// EV_EFI_SPDM_FIRMWARE_BLOB
pub const EV_EFI_SPDM_FIRMWARE_BLOB: u32 = 0x8000_00e1;
/// EV_EFI_SPDM_FIRMWARE_CONFIG
pub const EV_EFI_SPDM_FIRMWARE_CONFIG: u32 = 0x8000_00e2;

const NAMES: &[(u32, &str)] = &[
    (EV_PREBOOT_CERT, "EV_PREBOOT_CERT"),
    (EV_POST_CODE, "EV_POST_CODE"),
    (0x2, "EV_UNUSED"),
    (EV_NO_ACTION, "EV_NO_ACTION"),
    (EV_SEPARATOR, "EV_SEPARATOR"),
    (EV_ACTION, "EV_ACTION"),
    (EV_EVENT_TAG, "EV_EVENT_TAG"),
    (EV_S_CRTM_CONTENTS, "EV_S_CRTM_CONTENTS"),
    (EV_S_CRTM_VERSION, "EV_S_CRTM_VERSION"),
    (EV_CPU_MICROCODE, "EV_CPU_MICROCODE"),
    (EV_PLATFORM_CONFIG_FLAGS, "EV_PLATFORM_CONFIG_FLAGS"),
    (EV_TABLE_OF_DEVICES, "EV_TABLE_OF_DEVICES"),
    (EV_COMPACT_HASH, "EV_COMPACT_HASH"),
    (EV_IPL, "EV_IPL"),
    (EV_IPL_PARTITION_DATA, "EV_IPL_PARTITION_DATA"),
    (EV_NONHOST_CODE, "EV_NONHOST_CODE"),
    (EV_NONHOST_CONFIG, "EV_NONHOST_CONFIG"),
    (EV_NONHOST_INFO, "EV_NONHOST_INFO"),
    (EV_OMIT_BOOT_DEVICE_EVENTS, "EV_OMIT_BOOT_DEVICE_EVENTS"),
    (
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        "EV_EFI_VARIABLE_DRIVER_CONFIG",
    ),
    (EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT"),
    (
        EV_EFI_BOOT_SERVICES_APPLICATION,
        "EV_EFI_BOOT_SERVICES_APPLICATION",
    ),
    (EV_EFI_BOOT_SERVICES_DRIVER, "EV_EFI_BOOT_SERVICES_DRIVER"),
    (
        EV_EFI_RUNTIME_SERVICES_DRIVER,
        "EV_EFI_RUNTIME_SERVICES_DRIVER",
    ),
    (EV_EFI_GPT_EVENT, "EV_EFI_GPT_EVENT"),
    (EV_EFI_ACTION, "EV_EFI_ACTION"),
    (
        EV_EFI_PLATFORM_FIRMWARE_BLOB,
        "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    ),
    (EV_EFI_HANDOFF_TABLES, "EV_EFI_HANDOFF_TABLES"),
    (
        EV_EFI_PLATFORM_FIRMWARE_BLOB2,
        "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    ),
    (EV_EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2"),
    (EV_EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2"),
    (EV_EFI_GPT_EVENT2, "EV_EFI_GPT_EVENT2"),
    (EV_EFI_HCRTM_EVENT, "EV_EFI_HCRTM_EVENT"),
    (EV_EFI_VARIABLE_AUTHORITY, "EV_EFI_VARIABLE_AUTHORITY"),
    (EV_EFI_SPDM_FIRMWARE_BLOB, "EV_EFI_SPDM_FIRMWARE_BLOB"),
    (EV_EFI_SPDM_FIRMWARE_CONFIG, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
];

/// The spec name of an event type, or its hex value.
pub fn type_name(t: u32) -> String {
    NAMES
        .iter()
        .find(|(v, _)| *v == t)
        .map_or_else(|| format!("{t:#010x}"), |(_, n)| (*n).to_string())
}

const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// The locality of a StartupLocality EV_NO_ACTION event in PCR 0 (PFP §10.4.5.3).
pub fn startup_locality(e: &Event) -> Option<u8> {
    (e.event_type == EV_NO_ACTION
        && e.pcr == 0
        && e.data.len() == 17
        && e.data.starts_with(STARTUP_LOCALITY))
    .then(|| e.data[16])
}

fn ascii(data: &[u8]) -> String {
    let s: String = data
        .iter()
        .take_while(|b| **b != 0)
        .take(200)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect();
    s
}

fn utf16(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units).chars().take(200).collect()
}

/// EV_S_CRTM_VERSION: a NUL-terminated UTF-16 version string, or (as some firmware records it) a
/// 16-byte GUID, printed in its byte order.
fn crtm_version(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text_len = units.iter().position(|u| *u == 0);
    let is_text = data.len() % 2 == 0
        && text_len.is_some_and(|n| {
            n > 0
                && units[n..].iter().all(|u| *u == 0)
                && char::decode_utf16(units[..n].iter().copied())
                    .all(|c| c.is_ok_and(|c| !c.is_control()))
        });
    if is_text {
        return utf16(data);
    }
    if data.len() == 16 {
        let h = hex::encode(data);
        return format!(
            "GUID {}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
    }
    ascii(data)
}

fn guid(b: &[u8]) -> String {
    if b.len() != 16 {
        return "?".into();
    }
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// UEFI_VARIABLE_DATA: { GUID VariableName, u64 UnicodeNameLength, u64 VariableDataLength,
/// CHAR16 UnicodeName[], BYTE VariableData[] }. Returns (guid, name, data).
pub fn uefi_variable(data: &[u8]) -> Option<(String, String, &[u8])> {
    let mut r = Reader::new(data);
    let g = guid(r.bytes("VariableName", 16).ok()?);
    let name_len = usize::try_from(r.u64("UnicodeNameLength").ok()?).ok()?;
    let data_len = usize::try_from(r.u64("VariableDataLength").ok()?).ok()?;
    let name = utf16(r.bytes("UnicodeName", name_len.checked_mul(2)?).ok()?);
    let value = r.bytes("VariableData", data_len).ok()?;
    Some((g, name, value))
}

/// A one-line description of an event's data.
pub fn summary(e: &Event) -> String {
    match e.event_type {
        EV_SEPARATOR => format!(
            "separator {}",
            e.data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        EV_EFI_ACTION | EV_ACTION | EV_S_CRTM_VERSION if e.event_type != EV_S_CRTM_VERSION => {
            ascii(&e.data)
        }
        EV_S_CRTM_VERSION => crtm_version(&e.data),
        EV_IPL => {
            let a = ascii(&e.data);
            if a.len() <= 1 && e.data.len() > 2 {
                utf16(&e.data)
            } else {
                a
            }
        }
        EV_EFI_VARIABLE_DRIVER_CONFIG
        | EV_EFI_VARIABLE_BOOT
        | EV_EFI_VARIABLE_BOOT2
        | EV_EFI_VARIABLE_AUTHORITY => match uefi_variable(&e.data) {
            Some((g, name, value)) if name == "SecureBoot" => {
                format!(
                    "{name} ({g}) = {}",
                    value.first().map_or("empty".into(), |v| format!("{v}"))
                )
            }
            Some((g, name, value)) => format!("{name} ({g}), {} bytes", value.len()),
            None => format!("malformed UEFI_VARIABLE_DATA ({} bytes)", e.data.len()),
        },
        EV_EFI_BOOT_SERVICES_APPLICATION
        | EV_EFI_BOOT_SERVICES_DRIVER
        | EV_EFI_RUNTIME_SERVICES_DRIVER => {
            let mut r = Reader::new(&e.data);
            let fields = (|| {
                let addr = r.u64("ImageLocationInMemory").ok()?;
                let len = r.u64("ImageLengthInMemory").ok()?;
                Some((addr, len))
            })();
            match fields {
                Some((addr, len)) => format!("image at {addr:#x}, {len} bytes"),
                None => format!("malformed UEFI_IMAGE_LOAD_EVENT ({} bytes)", e.data.len()),
            }
        }
        EV_NO_ACTION => {
            if let Some(l) = startup_locality(e) {
                format!("StartupLocality {l}")
            } else if e.data.starts_with(super::agile::SPEC_ID_EVENT03) {
                "Spec ID Event03".into()
            } else {
                ascii(&e.data)
            }
        }
        EV_EVENT_TAG => {
            let mut r = Reader::new(&e.data);
            match (r.u32("taggedEventID"), r.sized("taggedEventData")) {
                (Ok(id), Ok(d)) => format!("tag {id:#010x}: {}", ascii(d)),
                _ => format!("malformed TCG_PCClientTaggedEvent ({} bytes)", e.data.len()),
            }
        }
        _ => format!("{} bytes", e.data.len()),
    }
}

/// Event types whose digests are of their data (PC Client PFP §10.4.1), so a mismatch means the log
/// and the measured content disagree.
fn digest_is_of_data(t: u32) -> bool {
    matches!(
        t,
        EV_SEPARATOR | EV_EFI_ACTION | EV_ACTION | EV_EFI_VARIABLE_DRIVER_CONFIG
    )
}

/// Boot loaders' EV_IPL string events in PCR 8 measure the string they log: systemd-boot the
/// UTF-16 command line, GRUB the text after its "grub_cmd: " / "kernel_cmdline: " /
/// "module_cmdline: " label. Each may or may not include the terminating NUL. (EV_IPL events in
/// other PCRs, such as GRUB's file measurements in PCR 9, log a path and measure the file.)
fn ipl_candidates(data: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![data];
    let trimmed = {
        let mut end = data.len();
        while end > 0 && data[end - 1] == 0 {
            end -= 1;
        }
        &data[..end]
    };
    out.push(trimmed);
    for label in [
        &b"grub_cmd: "[..],
        b"kernel_cmdline: ",
        b"module_cmdline: ",
        b"grub_kernel_cmdline ",
    ] {
        if let Some(rest) = trimmed.strip_prefix(label) {
            out.push(rest);
        }
    }
    out
}

/// Adds a warning for every event whose digest is not the hash of its data where it must be.
pub(crate) fn check_digests(log: &mut EventLog) {
    for e in &log.events {
        let candidates: Vec<&[u8]> = if digest_is_of_data(e.event_type) {
            vec![&e.data]
        } else if e.event_type == EV_IPL && e.pcr == 8 {
            ipl_candidates(&e.data)
        } else {
            continue;
        };
        for (bank, digest) in &e.digests {
            if !candidates.iter().any(|c| bank.hash(&[c]) == *digest) {
                log.warnings.push(format!(
                    "event {} (PCR {}, {}): its {} digest does not match its data",
                    e.index,
                    e.pcr,
                    type_name(e.event_type),
                    bank.name()
                ));
                break;
            }
        }
    }
}
