//! # secllama-measurements — reference values
//!
//! secllama computes its golden values from the artifacts themselves instead of asking operators to
//! copy them from a running machine:
//!
//! | module | specification | what |
//! |---|---|---|
//! | [`eventlog`] | TCG PC Client Platform Firmware Profile §10 | parse (legacy SHA-1 and crypto-agile) and replay TCG event logs |
//! | [`manifest`] | `docs/manifest.md` | the reference manifest (TOML) the verifier appraises against |
//! | [`launch`] | secllama launch description | the ordered measurement events of a launch and the PCRs they give |
//! | [`tree`] | secllama tree listing v1 | the digest of a measured folder (`[launch] trees`) |
//! | [`vm`] | TCG PC Client PFP §10.4, PE/COFF Authenticode, Linux x86 boot protocol | PCR 4 and 9 of a VM-mode boot (QEMU direct kernel boot under OVMF) |
//! | [`snp`] | AMD SEV-SNP ABI §8.17, OVMF SEV metadata | the SEV-SNP launch digest (as `sev-snp-measure` computes it) |
//!
//! Pure Rust: this crate never links a TPM library. Parsers take `&[u8]`, report byte offsets in
//! their errors and never allocate more than their input.

pub mod eventlog;
pub mod launch;
pub mod manifest;
pub mod snp;
pub mod tree;
pub mod vm;
