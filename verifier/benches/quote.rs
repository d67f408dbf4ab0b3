//! Appraising one real GCE quote (SHA-256 bank, RSASSA-SHA256 under an RSA-2048 AK) in process:
//! parsing the TPMS_ATTEST, TPMT_SIGNATURE and TPMT_PUBLIC, every check, and the RSA verification.
//! The comparison with `tpm2_checkquote` and `openssl speed rsa2048` is scripted in `scripts/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark: a failed unwrap is a broken setup
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use secllama_verifier::tpm::{
    AkPublic, HashAlg, PcrSelection, PcrValues, QuotePolicy, TpmSignature, appraise_quote,
    appraise_quote_bytes,
};
use std::path::PathBuf;

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("vectors/tpm-quote/gce-cos85-nonce9009");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let (ak, attest, sig) = (
        read("ak_pub.tpmt_public.bin"),
        read("quote_sha256.tpms_attest.bin"),
        read("quote_sha256.tpmt_signature.bin"),
    );
    let expected: serde_json::Value = serde_json::from_slice(&read("expected.json")).unwrap();
    let mut pcrs = PcrValues::new();
    for (i, v) in expected["quotes"][1]["pcrs"].as_object().unwrap() {
        pcrs.insert(
            HashAlg::Sha256,
            i.parse().unwrap(),
            hex::decode(v.as_str().unwrap()).unwrap(),
        )
        .unwrap();
    }
    let policy = QuotePolicy {
        nonce: &[0x90, 0x09],
        pcrs: &pcrs,
        allow_sha1: false,
        qualified_signer: None,
    };
    assert!(appraise_quote_bytes(&attest, &sig, &ak, &policy).valid());
    c.bench_function("appraise GCE sha256 quote from bytes", |b| {
        b.iter(|| {
            appraise_quote_bytes(black_box(&attest), black_box(&sig), black_box(&ak), &policy)
                .valid()
        })
    });
    let ak_parsed = AkPublic::detect(&ak).unwrap();
    let sig_parsed = TpmSignature::parse(&sig).unwrap();
    c.bench_function("appraise GCE sha256 quote, AK and signature parsed", |b| {
        b.iter(|| appraise_quote(black_box(&attest), &sig_parsed, &ak_parsed, &policy).valid())
    });

    // scripts/bench.sh points this at the files it gives tpm2_checkquote, so both appraise the same
    // quote: ak.pub (PEM), q.msg, q.sig, q.pcrs (tpm2_pcrread -o), list, nonce (hex).
    if let Some(dir) = std::env::var_os("SECLLAMA_BENCH_QUOTE_DIR").map(PathBuf::from) {
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let (ak, attest, sig) = (read("ak.pub"), read("q.msg"), read("q.sig"));
        let list = String::from_utf8(read("list")).unwrap();
        let nonce = hex::decode(String::from_utf8(read("nonce")).unwrap().trim()).unwrap();
        let selection = PcrSelection::parse_tpm2_tools(list.trim()).unwrap();
        let pcrs = PcrValues::from_concatenated(&selection, &read("q.pcrs")).unwrap();
        let policy = QuotePolicy {
            nonce: &nonce,
            pcrs: &pcrs,
            allow_sha1: false,
            qualified_signer: None,
        };
        assert!(appraise_quote_bytes(&attest, &sig, &ak, &policy).valid());
        c.bench_function("appraise_tpm2_quote_files", |b| {
            b.iter(|| {
                appraise_quote_bytes(black_box(&attest), black_box(&sig), black_box(&ak), &policy)
                    .valid()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
