//! Appraising one real SEV-SNP report (virtee/sev's Milan report) in process: parsing, the ECDSA
//! P-384 report signature under the VCEK, and the chain VCEK → ASK → ARK (two RSA-4096 PSS
//! verifications and the ARK's self-signature) to the built-in AMD roots. The comparison with
//! `openssl dgst -verify` (same report body and key) and `snpguest verify attestation` is scripted
//! in `scripts/bench-evidence.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark: a failed unwrap is a broken setup
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use secllama_verifier::{Appraiser, Collateral, Context, Status};
use std::path::PathBuf;

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/snp-report/virtee-milan-v2");
    let report = std::fs::read(dir.join("report.bin")).unwrap();
    let collateral = Collateral {
        certificates: vec![std::fs::read(dir.join("vcek_milan.der")).unwrap()],
        ..Default::default()
    };
    let ctx = Context {
        report_data: None,
        manifest: None,
        collateral: &collateral,
        at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600),
    };
    let s = secllama_verifier::snp::Report.appraise(&report, &ctx);
    assert_eq!(s.status, Status::Warning, "{s:#?}");
    c.bench_function("appraise SNP report (signature + chain)", |b| {
        b.iter(|| {
            secllama_verifier::snp::Report
                .appraise(black_box(&report), &ctx)
                .status
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
