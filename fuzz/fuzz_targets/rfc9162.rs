//! RFC 9162 §2.1 Merkle proofs of the receipt log, as the client checks what a hostile host may
//! answer to `/log/proof` and `/log/consistency`. The input is a tree (its leaves), positions in
//! it, and an arbitrary proof. Properties: honest inclusion and consistency proofs verify; a
//! proof with one byte changed, or checked for another leaf, does not; an arbitrary index, size
//! and proof is decided without a panic and within the bounds (sizes up to 2^64 - 1).
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::rfc9162::{Hash, Tree, leaf_hash, verify_consistency, verify_inclusion};

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *x;
    }
    u64::from_le_bytes(b)
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        if data.len() < 7 {
            return;
        }
        // Honest proofs over a tree of up to 300 leaves.
        let n = u64::from(u16::from_le_bytes([data[0], data[1]]) % 300) + 1;
        let mut tree = Tree::new();
        for j in 0..n {
            tree.push(leaf_hash(
                &[&data[..data.len().min(32)], &j.to_le_bytes()[..]].concat(),
            ));
        }
        let size = u64::from(data[2]) % n + 1;
        let index = u64::from(data[3]) % size;
        let first = u64::from(data[4]) % size + 1;
        let root = tree.root(size).expect("a size within the tree");
        let leaf = tree.leaf(index).expect("an index within the tree");
        let proof = tree
            .inclusion_proof(index, size)
            .expect("an inclusion proof");
        verify_inclusion(&leaf, index, size, &proof, &root).expect("an honest inclusion proof");
        let other = tree.leaf((index + 1) % size).expect("a leaf");
        if size > 1 {
            assert!(
                verify_inclusion(&other, index, size, &proof, &root).is_err(),
                "a proof for one leaf proved another"
            );
        }
        let flip = usize::from(data[5]);
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = flip % bad.len();
            bad[at][flip % 32] ^= 1 << (data[6] % 8);
            assert!(
                verify_inclusion(&leaf, index, size, &bad, &root).is_err(),
                "a changed inclusion proof verified"
            );
        }
        let first_root = tree.root(first).expect("a size within the tree");
        let consistency = tree
            .consistency_proof(first, size)
            .expect("a consistency proof");
        verify_consistency(first, size, &first_root, &root, &consistency)
            .expect("an honest consistency proof");
        if !consistency.is_empty() {
            let mut bad = consistency.clone();
            let at = flip % bad.len();
            bad[at][flip % 32] ^= 1 << (data[6] % 8);
            assert!(
                verify_consistency(first, size, &first_root, &root, &bad).is_err(),
                "a changed consistency proof verified"
            );
        }
        // Arbitrary answers: index and sizes from the input, the proof from its tail.
        let rest = data.get(7..).unwrap_or_default();
        let any = hashes(rest.get(24..).unwrap_or_default());
        let (a, b, c) = (u64_at(rest, 0), u64_at(rest, 8), u64_at(rest, 16));
        let _ = verify_inclusion(&leaf, a, b, &any, &root);
        let _ = verify_consistency(a, b, &first_root, &root, &any);
        let _ = verify_consistency(c, b, &root, &root, &any);
    });
});
