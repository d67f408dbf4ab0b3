//! Receipt log proofs (RFC 9162 §2.1): inclusion and consistency proofs generated and verified on
//! a log of 2^16 entries of receipt size, beside ct-merkle (an independent Rust implementation of
//! RFC 6962) doing the same. `scripts/bench.sh` prints proofs per second and ours/ct-merkle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use secllama_protocol::rfc9162::{Tree, leaf_hash, verify_consistency, verify_inclusion};
use sha2::Sha256;
use std::hint::black_box;

const SIZE: u64 = 1 << 16;
/// The older head of the consistency proofs (not a power of two: a full-length proof).
const OLD: u64 = 45_123;
/// A receipt is a COSE_Sign1 of about this many bytes.
const RECEIPT: usize = 420;

fn entry(i: u64) -> Vec<u8> {
    let mut e = vec![0u8; RECEIPT];
    e[..8].copy_from_slice(&i.to_be_bytes());
    e
}

fn bench(c: &mut Criterion) {
    let mut ours = Tree::new();
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for i in 0..SIZE {
        ours.push(leaf_hash(&entry(i)));
        theirs.push(entry(i));
    }
    let root = ours.root(SIZE).unwrap();
    let old_root = ours.root(OLD).unwrap();
    let their_root = theirs.root();
    // Indexes spread over the tree (a fixed stride, so both sides prove the same ones).
    let mut next = 0u64;
    let mut index = move || {
        next = (next + 40_503) % SIZE;
        next
    };

    let mut g = c.benchmark_group("inclusion");
    g.bench_function("prove/ours", |b| {
        b.iter(|| black_box(ours.inclusion_proof(index(), SIZE).unwrap()))
    });
    g.bench_function("prove/ct_merkle", |b| {
        b.iter(|| black_box(theirs.prove_inclusion(index() as usize)))
    });
    let i = 12_345u64;
    let path = ours.inclusion_proof(i, SIZE).unwrap();
    let leaf = leaf_hash(&entry(i));
    g.bench_function("verify/ours", |b| {
        b.iter(|| verify_inclusion(&leaf, i, SIZE, black_box(&path), &root).unwrap())
    });
    let their_path = InclusionProof::<Sha256>::from_bytes(path.concat());
    let e = entry(i);
    g.bench_function("verify/ct_merkle", |b| {
        b.iter(|| {
            their_root
                .verify_inclusion(&e, i, black_box(&their_path))
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("consistency");
    g.bench_function("prove/ours", |b| {
        b.iter(|| black_box(ours.consistency_proof(OLD, SIZE).unwrap()))
    });
    g.bench_function("prove/ct_merkle", |b| {
        b.iter(|| black_box(theirs.prove_consistency((SIZE - OLD) as usize)))
    });
    let proof = ours.consistency_proof(OLD, SIZE).unwrap();
    g.bench_function("verify/ours", |b| {
        b.iter(|| verify_consistency(OLD, SIZE, &old_root, &root, black_box(&proof)).unwrap())
    });
    let their_proof = ConsistencyProof::<Sha256>::try_from_bytes(proof.concat()).unwrap();
    let old = RootHash::<Sha256>::new(old_root.into(), OLD);
    g.bench_function("verify/ct_merkle", |b| {
        b.iter(|| {
            their_root
                .verify_consistency(&old, black_box(&their_proof))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
