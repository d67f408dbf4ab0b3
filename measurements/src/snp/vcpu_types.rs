//! QEMU's AMD EPYC vCPU models, named as `sev-snp-measure --vcpu-type` names them, and the CPUID
//! `Fn0000_0001_EAX` family/model/stepping signature of each (AMD CPUID Specification #25481),
//! which QEMU loads into RDX of every VMSA. The signatures come from `sev::measurement::vcpu_types`.

use std::fmt;
use std::str::FromStr;

use sev::measurement::vcpu_types::CpuType;

use super::SnpError;

/// A QEMU vCPU model (`-cpu`), as `sev-snp-measure` 0.0.13 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VcpuType {
    /// `EPYC` (family 23, model 1, stepping 2).
    Epyc,
    /// `EPYC-v1`.
    EpycV1,
    /// `EPYC-v2`.
    EpycV2,
    /// `EPYC-IBPB`.
    EpycIbpb,
    /// `EPYC-v3`.
    EpycV3,
    /// `EPYC-v4`.
    EpycV4,
    /// `EPYC-Rome` (family 23, model 49, stepping 0).
    EpycRome,
    /// `EPYC-Rome-v1`.
    EpycRomeV1,
    /// `EPYC-Rome-v2`.
    EpycRomeV2,
    /// `EPYC-Rome-v3`.
    EpycRomeV3,
    /// `EPYC-Milan` (family 25, model 1, stepping 1).
    EpycMilan,
    /// `EPYC-Milan-v1`.
    EpycMilanV1,
    /// `EPYC-Milan-v2`.
    EpycMilanV2,
    /// `EPYC-Genoa` (family 25, model 17, stepping 0).
    EpycGenoa,
    /// `EPYC-Genoa-v1`.
    EpycGenoaV1,
    /// `EPYC-Turin` (family 26, model 0, stepping 0).
    EpycTurin,
}

/// Every type with its name, in sev-snp-measure's order.
const ALL: [(VcpuType, &str); 16] = [
    (VcpuType::Epyc, "EPYC"),
    (VcpuType::EpycV1, "EPYC-v1"),
    (VcpuType::EpycV2, "EPYC-v2"),
    (VcpuType::EpycIbpb, "EPYC-IBPB"),
    (VcpuType::EpycV3, "EPYC-v3"),
    (VcpuType::EpycV4, "EPYC-v4"),
    (VcpuType::EpycRome, "EPYC-Rome"),
    (VcpuType::EpycRomeV1, "EPYC-Rome-v1"),
    (VcpuType::EpycRomeV2, "EPYC-Rome-v2"),
    (VcpuType::EpycRomeV3, "EPYC-Rome-v3"),
    (VcpuType::EpycMilan, "EPYC-Milan"),
    (VcpuType::EpycMilanV1, "EPYC-Milan-v1"),
    (VcpuType::EpycMilanV2, "EPYC-Milan-v2"),
    (VcpuType::EpycGenoa, "EPYC-Genoa"),
    (VcpuType::EpycGenoaV1, "EPYC-Genoa-v1"),
    (VcpuType::EpycTurin, "EPYC-Turin"),
];

impl VcpuType {
    /// The names accepted by [`FromStr`], as `sev-snp-measure --vcpu-type` spells them.
    pub const NAMES: [&'static str; 16] = {
        let mut names = [""; 16];
        let mut i = 0;
        while i < ALL.len() {
            names[i] = ALL[i].1;
            i += 1;
        }
        names
    };

    /// Every vCPU type.
    pub fn all() -> impl Iterator<Item = VcpuType> {
        ALL.iter().map(|(t, _)| *t)
    }

    /// The name `sev-snp-measure` and QEMU's `-cpu` use.
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(t, _)| *t == self).map_or("?", |(_, n)| n)
    }

    /// The `sev` crate's model of this type.
    pub(crate) fn sev_cpu_type(self) -> CpuType {
        match self {
            VcpuType::Epyc => CpuType::Epyc,
            VcpuType::EpycV1 => CpuType::EpycV1,
            VcpuType::EpycV2 => CpuType::EpycV2,
            VcpuType::EpycIbpb => CpuType::EpycIBPB,
            VcpuType::EpycV3 => CpuType::EpycV3,
            VcpuType::EpycV4 => CpuType::EpycV4,
            VcpuType::EpycRome => CpuType::EpycRome,
            VcpuType::EpycRomeV1 => CpuType::EpycRomeV1,
            VcpuType::EpycRomeV2 => CpuType::EpycRomeV2,
            VcpuType::EpycRomeV3 => CpuType::EpycRomeV3,
            VcpuType::EpycMilan => CpuType::EpycMilan,
            VcpuType::EpycMilanV1 => CpuType::EpycMilanV1,
            VcpuType::EpycMilanV2 => CpuType::EpycMilanV2,
            VcpuType::EpycGenoa => CpuType::EpycGenoa,
            VcpuType::EpycGenoaV1 => CpuType::EpycGenoaV1,
            VcpuType::EpycTurin => CpuType::EpycTurin,
        }
    }

    /// The CPUID `Fn0000_0001_EAX` signature (family/model/stepping) QEMU puts in RDX.
    pub fn signature(self) -> u32 {
        // Non-negative: every field fits in its bits (family ≤ 0x1a).
        self.sev_cpu_type().sig() as u32
    }
}

impl FromStr for VcpuType {
    type Err = SnpError;

    /// Parses a name exactly as sev-snp-measure spells it (case-sensitive, like its CLI).
    fn from_str(s: &str) -> Result<Self, SnpError> {
        ALL.iter()
            .find(|(_, n)| *n == s)
            .map(|(t, _)| *t)
            .ok_or_else(|| SnpError::UnknownVcpuType {
                found: s.to_string(),
            })
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signatures sev-snp-measure's `vcpu_types.CPU_SIGS` lists.
    #[test]
    fn signatures_match_sev_snp_measure() {
        for t in VcpuType::all() {
            let want = match t.name() {
                n if n.starts_with("EPYC-Rome") => 0x0083_0f10,
                n if n.starts_with("EPYC-Milan") => 0x00a0_0f11,
                n if n.starts_with("EPYC-Genoa") => 0x00a1_0f10,
                "EPYC-Turin" => 0x00b0_0f00,
                _ => 0x0080_0f12,
            };
            assert_eq!(t.signature(), want, "{t}");
            assert_eq!(t.name().parse::<VcpuType>(), Ok(t));
        }
        assert!(matches!(
            "epyc-v4".parse::<VcpuType>(),
            Err(SnpError::UnknownVcpuType { .. })
        ));
    }
}
