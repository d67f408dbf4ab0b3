//! Sealing benchmarks: a 1 KiB request sealed and opened on the RSA path and on the session path,
//! the RSA-OAEP unwrap alone, response streams of 64 KiB chunks, and the ES256 signature of every
//! receipt (aws-lc-rs beside RustCrypto's p256). `scripts/bench.sh` runs these
//! beside `openssl speed` and prints ours/openssl ratios.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_core::OsRng;
use secllama_protocol::seal::{
    AwsLcRsaOaep, ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener,
    StreamSealer, Unwrap, open_request, seal_request, seal_request_session,
};
use secllama_protocol::{RequestId, sha256};
use std::hint::black_box;

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 16;

fn bench(c: &mut Criterion) {
    let enclave = AwsLcRsaOaep::generate().unwrap();
    let ctx = RequestContext {
        method: "POST",
        path: "/v1/sealed/api/generate",
        attestation_digest: sha256(&[b"d"]),
    };
    let pt = RequestPlaintext::new(vec![b'a'; 1024], 1, &mut OsRng).unwrap();

    let mut g = c.benchmark_group("request_1k");
    g.bench_function("rsa_seal_open", |b| {
        b.iter(|| {
            let (sealed, _) =
                seal_request(enclave.public_key_der(), &ctx, &pt, &mut OsRng).unwrap();
            black_box(open_request(&sealed, &ctx, &enclave, |_| None).unwrap());
        })
    });
    let key = ContentKey::generate(&mut OsRng).unwrap();
    g.bench_function("session_seal_open", |b| {
        b.iter(|| {
            let sealed = seal_request_session(&key, &ctx, &pt, &mut OsRng).unwrap();
            black_box(open_request(&sealed, &ctx, &enclave, |_| Some(key.clone())).unwrap());
        })
    });
    g.finish();

    let (sealed, _) = seal_request(enclave.public_key_der(), &ctx, &pt, &mut OsRng).unwrap();
    let wrapped = match secllama_protocol::seal::SealedRequest::parse(&sealed)
        .unwrap()
        .recipient()
    {
        secllama_protocol::seal::RecipientKind::Wrapped { wrapped_key, .. } => wrapped_key.clone(),
        secllama_protocol::seal::RecipientKind::Session { .. } => unreachable!(),
    };
    c.bench_function("rsa3072_oaep_unwrap", |b| {
        b.iter(|| black_box(enclave.unwrap_key(&wrapped).unwrap()))
    });

    let keys = ResponseKeys::derive(&key, &RequestId([7; 16])).unwrap();
    let data = vec![0x5au8; CHUNK];
    let mut wire = Vec::new();
    let mut sealer = StreamSealer::new(keys.clone());
    for i in 0..CHUNKS {
        wire.extend(sealer.seal_chunk(&data, i + 1 == CHUNKS).unwrap());
    }
    let mut g = c.benchmark_group("stream_64k");
    g.throughput(Throughput::Bytes((CHUNK * CHUNKS) as u64));
    g.bench_function("seal", |b| {
        b.iter(|| {
            let mut s = StreamSealer::new(keys.clone());
            for i in 0..CHUNKS {
                black_box(s.seal_chunk(&data, i + 1 == CHUNKS).unwrap());
            }
        })
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            let mut o = StreamOpener::new(keys.clone());
            black_box(o.push(&wire).unwrap());
            o.finish().unwrap();
        })
    });
    g.bench_function("seal_open", |b| {
        b.iter(|| {
            let mut s = StreamSealer::new(keys.clone());
            let mut o = StreamOpener::new(keys.clone());
            for i in 0..CHUNKS {
                black_box(
                    o.push(&s.seal_chunk(&data, i + 1 == CHUNKS).unwrap())
                        .unwrap(),
                );
            }
            o.finish().unwrap();
        })
    });
    g.finish();

    // The enclave signs a receipt per answer: ES256 through aws-lc-rs (what SigningKey uses)
    // beside RustCrypto's p256 signer (its fallback) on the same key and message.
    let key = secllama_protocol::cose::SigningKey::generate(&mut OsRng);
    let peer = p256::ecdsa::SigningKey::from_slice(&key.to_scalar()).unwrap();
    let msg = vec![7u8; 300];
    let mut g = c.benchmark_group("es256_sign_300b");
    g.bench_function("signing_key_aws_lc", |b| {
        b.iter(|| black_box(key.sign(&msg)))
    });
    g.bench_function("rustcrypto_p256", |b| {
        b.iter(|| {
            use ecdsa::signature::Signer;
            let sig: p256::ecdsa::Signature = peer.sign(&msg);
            black_box(sig)
        })
    });
    g.finish();

    // The client (the proxy, `secllama-verify generate`) verifies each answer's receipt before the
    // answer may complete: RustCrypto's p256 (the verifier is pure Rust).
    let payload = secllama_protocol::receipt::ReceiptPayload {
        request_digest: secllama_protocol::Sha256Digest([1; 32]),
        response_digest: secllama_protocol::Sha256Digest([2; 32]),
        model: "tiny:latest".into(),
        policy_digest: secllama_protocol::Sha256Digest([3; 32]),
        signing_kid: key.public().kid().unwrap(),
        log_index: 7,
        time: 1_790_000_000,
        params: Default::default(),
    };
    let receipt = secllama_protocol::receipt::sign_receipt(&payload, &key).unwrap();
    let public = key.public();
    c.bench_function("receipt_verify", |b| {
        b.iter(|| black_box(secllama_protocol::receipt::verify_receipt(&receipt, &public).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
