//! The SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV Secure Nested Paging Firmware ABI
//! Specification 56860, §7.3 Table 23 "ATTESTATION_REPORT Structure"), versions 2, 3 and 5.
//!
//! Our own parser rather than the `sev` crate's `AttestationReport`: sev 8 refuses a version-2
//! report whose chip ID is masked (`MASK_CHIP_ID`, as VLEK-signed reports are), maps any unknown
//! version above 5 to version 5 instead of refusing it, guesses the CPU generation of a version-2
//! report from the chip ID, and does not expose the signed bytes. Here the layout is fixed
//! offsets into the exact 1184 bytes, unknown versions and non-zero reserved signature bytes are
//! refused, and the TCB is decoded once the product is known (from the certificate chain for
//! version 2, from the CPUID fields for 3 and later).

use std::fmt;

/// Length of a report, bytes.
pub const REPORT_LEN: usize = 0x4A0;
/// Length of the signed part (bytes 0x000–0x29F).
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// A report field's byte range, for messages and tamper tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name in the ABI specification.
    pub name: &'static str,
    /// First byte.
    pub offset: usize,
    /// Length, bytes.
    pub len: usize,
}

/// Every field of the signed part (Table 23), in order; reserved ranges are omitted.
pub const FIELDS: &[Field] = &[
    f("VERSION", 0x00, 4),
    f("GUEST_SVN", 0x04, 4),
    f("POLICY", 0x08, 8),
    f("FAMILY_ID", 0x10, 16),
    f("IMAGE_ID", 0x20, 16),
    f("VMPL", 0x30, 4),
    f("SIGNATURE_ALGO", 0x34, 4),
    f("CURRENT_TCB", 0x38, 8),
    f("PLATFORM_INFO", 0x40, 8),
    f("KEY_INFO", 0x48, 4),
    f("REPORT_DATA", 0x50, 64),
    f("MEASUREMENT", 0x90, 48),
    f("HOST_DATA", 0xC0, 32),
    f("ID_KEY_DIGEST", 0xE0, 48),
    f("AUTHOR_KEY_DIGEST", 0x110, 48),
    f("REPORT_ID", 0x140, 32),
    f("REPORT_ID_MA", 0x160, 32),
    f("REPORTED_TCB", 0x180, 8),
    f("CPUID", 0x188, 3),
    f("CHIP_ID", 0x1A0, 64),
    f("COMMITTED_TCB", 0x1E0, 8),
    f("CURRENT_VERSION", 0x1E8, 3),
    f("COMMITTED_VERSION", 0x1EC, 3),
    f("LAUNCH_TCB", 0x1F0, 8),
    f("LAUNCH_MIT_VECTOR", 0x1F8, 8),
    f("CURRENT_MIT_VECTOR", 0x200, 8),
];

const fn f(name: &'static str, offset: usize, len: usize) -> Field {
    Field { name, offset, len }
}

/// The field holding byte `offset`, if it is in one (reserved bytes are in none).
pub fn field_at(offset: usize) -> Option<&'static Field> {
    FIELDS
        .iter()
        .find(|f| (f.offset..f.offset + f.len).contains(&offset))
}

/// A malformed report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SEV-SNP report {field}: expected {expected}, found {found}")]
pub struct ReportError {
    /// The field.
    pub field: &'static str,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
}

fn err(field: &'static str, expected: impl Into<String>, found: impl Into<String>) -> ReportError {
    ReportError {
        field,
        expected: expected.into(),
        found: found.into(),
    }
}

/// A raw TCB_VERSION (ABI Table 3), decoded per product by [`Tcb::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tcb {
    /// FMC SVN (Turin and later; 0 before).
    pub fmc: u8,
    /// PSP boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
}

impl Tcb {
    /// Decodes a little-endian TCB_VERSION: Milan/Genoa bytes 0 boot loader, 1 TEE, 6 SNP, 7
    /// microcode; Turin and later 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 7 microcode.
    pub fn decode(raw: u64, product: Product) -> Self {
        let b = raw.to_le_bytes();
        match product {
            Product::Milan | Product::Genoa => Self {
                fmc: 0,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            Product::Turin => Self {
                fmc: b[0],
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fmc={} bl={} tee={} snp={} ucode={}",
            self.fmc, self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// An AMD EPYC product line with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    /// 3rd generation (Zen 3), family 19h models 00h–0Fh.
    Milan,
    /// 4th generation (Zen 4), family 19h models 10h–1Fh and A0h–AFh.
    Genoa,
    /// 5th generation (Zen 5), family 1Ah models 00h–1Fh.
    Turin,
}

impl Product {
    /// The name AMD's KDS and certificates use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// The product from CPUID family and model (report version 3 and later).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Self::Turin),
            _ => None,
        }
    }

    /// Parses `Milan`, `Genoa` or `Turin` (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Milan, Self::Genoa, Self::Turin]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// Which key signed the report (`KEY_INFO.SIGNING_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// The chip's versioned endorsement key.
    Vcek,
    /// A cloud provider's versioned loaded endorsement key.
    Vlek,
    /// No key: the report is unsigned.
    None,
}

/// A parsed report. Byte arrays are as in the report; integers are decoded little-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The exact 1184 bytes.
    pub bytes: Vec<u8>,
    /// `VERSION`: 2, 3 or 5.
    pub version: u32,
    /// `GUEST_SVN`.
    pub guest_svn: u32,
    /// `POLICY` (ABI Table 9).
    pub policy: u64,
    /// `FAMILY_ID`.
    pub family_id: [u8; 16],
    /// `IMAGE_ID`.
    pub image_id: [u8; 16],
    /// `VMPL` of the request.
    pub vmpl: u32,
    /// `SIGNATURE_ALGO`.
    pub sig_algo: u32,
    /// `CURRENT_TCB`, raw.
    pub current_tcb: u64,
    /// `PLATFORM_INFO`.
    pub platform_info: u64,
    /// `KEY_INFO.AUTHOR_KEY_EN`.
    pub author_key_en: bool,
    /// `KEY_INFO.MASK_CHIP_KEY`.
    pub mask_chip_key: bool,
    /// `KEY_INFO.SIGNING_KEY`.
    pub signing_key: SigningKey,
    /// `REPORT_DATA`.
    pub report_data: [u8; 64],
    /// `MEASUREMENT`: the launch digest.
    pub measurement: [u8; 48],
    /// `HOST_DATA`.
    pub host_data: [u8; 32],
    /// `ID_KEY_DIGEST`.
    pub id_key_digest: [u8; 48],
    /// `AUTHOR_KEY_DIGEST`.
    pub author_key_digest: [u8; 48],
    /// `REPORT_ID`.
    pub report_id: [u8; 32],
    /// `REPORT_ID_MA`.
    pub report_id_ma: [u8; 32],
    /// `REPORTED_TCB`, raw: the TCB the signing VCEK was derived for.
    pub reported_tcb: u64,
    /// `CPUID_FAM_ID`, `CPUID_MOD_ID`, `CPUID_STEP` (version 3 and later).
    pub cpuid: Option<(u8, u8, u8)>,
    /// `CHIP_ID` (zero when masked).
    pub chip_id: [u8; 64],
    /// `COMMITTED_TCB`, raw.
    pub committed_tcb: u64,
    /// Current firmware (major, minor, build).
    pub current_version: (u8, u8, u8),
    /// `LAUNCH_TCB`, raw.
    pub launch_tcb: u64,
    /// `LAUNCH_MIT_VECTOR`, `CURRENT_MIT_VECTOR` (version 5 and later).
    pub mit_vectors: Option<(u64, u64)>,
    /// The signature's r and s, big-endian, 48 bytes each (ECDSA P-384).
    pub signature: ([u8; 48], [u8; 48]),
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(b, at))
}

/// One signature component: 72 little-endian bytes whose top 24 must be zero for P-384.
fn component(b: &[u8], at: usize, name: &'static str) -> Result<[u8; 48], ReportError> {
    let le = &b[at..at + 72];
    if le[48..].iter().any(|x| *x != 0) {
        return Err(err(
            name,
            "a P-384 value (bytes 48–71 zero)",
            "non-zero high bytes",
        ));
    }
    let mut be = [0u8; 48];
    for (i, x) in le[..48].iter().enumerate() {
        be[47 - i] = *x;
    }
    Ok(be)
}

impl Report {
    /// Parses exactly [`REPORT_LEN`] bytes.
    ///
    /// # Errors
    /// A wrong length, an unknown version, signing key or signature algorithm, or a signature
    /// that is not a P-384 value.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReportError> {
        if bytes.len() != REPORT_LEN {
            return Err(err(
                "length",
                format!("{REPORT_LEN} bytes"),
                format!("{} bytes", bytes.len()),
            ));
        }
        let b = bytes;
        let version = u32_at(b, 0);
        if !matches!(version, 2 | 3 | 5) {
            return Err(err("VERSION", "2, 3 or 5", version.to_string()));
        }
        let sig_algo = u32_at(b, 0x34);
        if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(err(
                "SIGNATURE_ALGO",
                "1 (ECDSA P-384 with SHA-384)",
                sig_algo.to_string(),
            ));
        }
        let key_info = u32_at(b, 0x48);
        let signing_key = match (key_info >> 2) & 7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => {
                return Err(err(
                    "KEY_INFO.SIGNING_KEY",
                    "0 (VCEK), 1 (VLEK) or 7 (none)",
                    other.to_string(),
                ));
            }
        };
        let cpuid = (version >= 3).then(|| (b[0x188], b[0x189], b[0x18A]));
        let mit_vectors = (version >= 5).then(|| (u64_at(b, 0x1F8), u64_at(b, 0x200)));
        Ok(Self {
            bytes: b.to_vec(),
            version,
            guest_svn: u32_at(b, 0x04),
            policy: u64_at(b, 0x08),
            family_id: arr(b, 0x10),
            image_id: arr(b, 0x20),
            vmpl: u32_at(b, 0x30),
            sig_algo,
            current_tcb: u64_at(b, 0x38),
            platform_info: u64_at(b, 0x40),
            author_key_en: key_info & 1 != 0,
            mask_chip_key: key_info & 2 != 0,
            signing_key,
            report_data: arr(b, 0x50),
            measurement: arr(b, 0x90),
            host_data: arr(b, 0xC0),
            id_key_digest: arr(b, 0xE0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            report_id_ma: arr(b, 0x160),
            reported_tcb: u64_at(b, 0x180),
            cpuid,
            chip_id: arr(b, 0x1A0),
            committed_tcb: u64_at(b, 0x1E0),
            current_version: (b[0x1EA], b[0x1E9], b[0x1E8]),
            launch_tcb: u64_at(b, 0x1F0),
            mit_vectors,
            signature: (
                component(b, 0x2A0, "SIGNATURE.R")?,
                component(b, 0x2E8, "SIGNATURE.S")?,
            ),
        })
    }

    /// The signed bytes (0x000–0x29F).
    pub fn signed(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }

    /// The product the CPUID fields name (version 3 and later), if known.
    pub fn product(&self) -> Option<Product> {
        self.cpuid.and_then(|(f, m, _)| Product::from_cpuid(f, m))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn blank(version: u32) -> Vec<u8> {
        let mut b = vec![0u8; REPORT_LEN];
        b[..4].copy_from_slice(&version.to_le_bytes());
        b[0x34] = 1;
        b
    }

    #[test]
    fn every_length_but_1184_is_refused() {
        for len in [0, 1, REPORT_LEN - 1, REPORT_LEN + 1] {
            let mut b = blank(2);
            b.resize(len, 0);
            let e = Report::parse(&b).unwrap_err();
            assert_eq!(e.field, "length");
        }
        assert!(Report::parse(&blank(2)).is_ok());
    }

    #[test]
    fn unknown_versions_algorithms_and_keys_are_refused() {
        for v in [0, 1, 4, 6, u32::MAX] {
            assert_eq!(Report::parse(&blank(v)).unwrap_err().field, "VERSION");
        }
        let mut b = blank(3);
        b[0x34] = 2;
        assert_eq!(Report::parse(&b).unwrap_err().field, "SIGNATURE_ALGO");
        let mut b = blank(5);
        b[0x48] = 2 << 2;
        assert_eq!(Report::parse(&b).unwrap_err().field, "KEY_INFO.SIGNING_KEY");
        let mut b = blank(2);
        b[0x2A0 + 50] = 1;
        assert_eq!(Report::parse(&b).unwrap_err().field, "SIGNATURE.R");
    }

    #[test]
    fn tcb_layouts_differ_between_genoa_and_turin() {
        let raw = u64::from_le_bytes([1, 2, 3, 4, 0, 0, 5, 6]);
        let g = Tcb::decode(raw, Product::Genoa);
        assert_eq!((g.bootloader, g.tee, g.snp, g.microcode), (1, 2, 5, 6));
        let t = Tcb::decode(raw, Product::Turin);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (1, 2, 3, 4, 6)
        );
    }
}
