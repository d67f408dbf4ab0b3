//! Every SEV-SNP vector in `../shared/vectors/snp-measure/vectors.json` (expected values from
//! virtee/sev-snp-measure's tests, reproduced by the PyPI sev-snp-measure 0.0.13 CLI) gives its
//! expected launch digest — or its expected error — through the library: `--mode snp` (QEMU, EC2,
//! GCE, with and without kernel, precomputed OVMF hash), `--mode snp:ovmf-hash` and
//! `--mode snp:svsm`.
//!
//! Not covered: the `sev` and `seves` vectors (`sev-cmdline`, `sev-ovmfx64-nokernel`,
//! `seves-1vcpu`). They are SEV and SEV-ES launch digests (a SHA-256 over the firmware, hashes table
//! and VMSAs, not the SNP page chain); secllama only launches SEV-SNP guests, and the issue asks for
//! SNP only. The test checks that exactly these are the ones left out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use secllama_measurements::snp::{
    self, SnpError, SnpLaunch, SvsmLaunch, VcpuType, VmmType, ovmf_hash, svsm_launch_digest,
};
use serde_json::Value;
use std::path::PathBuf;

/// The vectors not covered, and why (see the file's doc comment).
const NOT_COVERED: [(&str, &str); 3] = [
    ("seves-1vcpu", "SEV-ES (not SNP) launch digest"),
    ("sev-cmdline", "SEV (not SNP) launch digest"),
    ("sev-ovmfx64-nokernel", "SEV (not SNP) launch digest"),
];

fn dir() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/snp-measure")
}

fn input(name: &str) -> Vec<u8> {
    let path = dir().join("inputs").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A kernel/initrd field: absent, `"EMPTY"` (a zero-length file) or an input file name.
fn file(v: &Value, key: &str) -> Option<Vec<u8>> {
    match v[key].as_str() {
        None => None,
        Some("EMPTY") => Some(Vec::new()),
        Some(name) => Some(input(name)),
    }
}

fn features(v: &Value) -> u64 {
    let s = v["guest_features"].as_str().unwrap_or("0x1");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn vcpu_type(v: &Value) -> Option<VcpuType> {
    v["vcpu_type"].as_str().map(|t| t.parse().unwrap())
}

fn vectors() -> Vec<Value> {
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir().join("vectors.json")).unwrap()).unwrap();
    json["vectors"].as_array().unwrap().clone()
}

/// The digest (or error) the library gives for an SNP vector; `None` for SEV/SEV-ES vectors.
fn compute(v: &Value) -> Option<Result<[u8; 48], SnpError>> {
    match v["mode"].as_str().unwrap() {
        "snp" => {
            let launch = SnpLaunch {
                ovmf: input(v["ovmf"].as_str().unwrap()),
                ovmf_hash: v["snp_ovmf_hash"]
                    .as_str()
                    .map(|h| hex::decode(h).unwrap().try_into().unwrap()),
                kernel: file(v, "kernel"),
                initrd: file(v, "initrd"),
                append: v["append"].as_str().map(str::to_string),
                vcpus: v["vcpus"].as_u64().unwrap() as u32,
                vcpu_type: vcpu_type(v),
                vmm: v["vmm_type"]
                    .as_str()
                    .map_or(VmmType::Qemu, |t| t.parse().unwrap()),
                guest_features: features(v),
            };
            Some(snp::launch_digest(&launch))
        }
        "snp:ovmf-hash" => Some(ovmf_hash(&input(v["ovmf"].as_str().unwrap()))),
        "snp:svsm" => Some(svsm_launch_digest(&SvsmLaunch {
            ovmf: input(v["ovmf"].as_str().unwrap()),
            svsm: input(v["svsm"].as_str().unwrap()),
            ovmf_vars_size: v["vars_size"].as_u64().unwrap(),
            vcpus: v["vcpus"].as_u64().unwrap() as u32,
            vcpu_type: vcpu_type(v).unwrap(),
        })),
        "sev" | "seves" => None,
        other => panic!("{}: unknown mode {other}", v["id"]),
    }
}

#[test]
fn every_snp_vector_matches() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 15, "expected the shared snp-measure set");
    let mut skipped = Vec::new();
    let mut checked = 0;
    for v in &vectors {
        let id = v["id"].as_str().unwrap();
        let Some(result) = compute(v) else {
            skipped.push(id);
            continue;
        };
        match (v["expected"].as_str(), v["expected_error"].as_str()) {
            (Some(expected), _) => {
                let got = result.unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(hex::encode(got), expected, "{id}");
            }
            (None, Some(message)) => {
                let err = result.expect_err(id);
                assert!(
                    matches!(err, SnpError::NoKernelHashesSection { .. }),
                    "{id}: {err:?}"
                );
                assert!(
                    err.to_string().contains(message),
                    "{id}: {err} lacks {message:?}"
                );
            }
            (None, None) => panic!("{id}: neither expected nor expected_error"),
        }
        checked += 1;
    }
    for (id, why) in NOT_COVERED {
        eprintln!(
            "snp-measure vector {id}: not covered ({why}; secllama measures SEV-SNP guests only)"
        );
    }
    assert_eq!(
        skipped,
        NOT_COVERED.map(|(id, _)| id),
        "only the SEV/SEV-ES vectors may be left out"
    );
    assert_eq!(checked, 12);
}

/// A precomputed OVMF hash gives the same digest as hashing the OVMF.
#[test]
fn precomputed_ovmf_hash_is_equivalent() {
    let ovmf = input("ovmf_AmdSev_suffix.bin");
    let mut launch = SnpLaunch::new(ovmf.clone(), 2, VcpuType::EpycMilan);
    launch.kernel = Some(b"kernel".to_vec());
    let direct = snp::launch_digest(&launch).unwrap();
    launch.ovmf_hash = Some(ovmf_hash(&ovmf).unwrap());
    assert_eq!(snp::launch_digest(&launch).unwrap(), direct);
}
