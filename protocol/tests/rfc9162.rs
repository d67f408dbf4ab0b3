//! RFC 9162 §2.1 Merkle trees: the transparency-dev/merkle vectors (roots, inclusion paths,
//! consistency proofs, and every corruption of them the Go tests probe), and a second
//! implementation (`ct-merkle`) agreeing on every root, path and proof of every tree up to 260
//! entries, each verifying the other's proofs; random larger trees by property test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use secllama_protocol::rfc9162::{
    Hash, Tree, empty_root, leaf_hash, verify_consistency, verify_inclusion,
};
use serde_json::Value;
use sha2::Sha256;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| h(x.as_str().unwrap()))
        .collect()
}

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/rfc6962/transparency-dev-merkle.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vector_tree(v: &Value) -> Tree {
    let mut tree = Tree::new();
    for leaf in v["leaves"].as_array().unwrap() {
        tree.push(leaf_hash(&hex::decode(leaf.as_str().unwrap()).unwrap()));
    }
    tree
}

/// Every corruption the Go tests probe (proof/verify_test.go `corruptInclusionProof`).
fn corrupt_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let mut probes: Vec<(String, Hash, u64, u64, Vec<Hash>, Hash)> = vec![
        (
            "index - 1".into(),
            *leaf,
            index.wrapping_sub(1),
            size,
            proof.to_vec(),
            *root,
        ),
        (
            "index + 1".into(),
            *leaf,
            index + 1,
            size,
            proof.to_vec(),
            *root,
        ),
        (
            "index ^ 2".into(),
            *leaf,
            index ^ 2,
            size,
            proof.to_vec(),
            *root,
        ),
        (
            "size * 2".into(),
            *leaf,
            index,
            size * 2,
            proof.to_vec(),
            *root,
        ),
        (
            "size / 2".into(),
            *leaf,
            index,
            size / 2,
            proof.to_vec(),
            *root,
        ),
        (
            "wrong leaf".into(),
            leaf_hash(b"WrongLeaf"),
            index,
            size,
            proof.to_vec(),
            *root,
        ),
        (
            "empty root".into(),
            *leaf,
            index,
            size,
            proof.to_vec(),
            empty_root(),
        ),
        (
            "random root".into(),
            *leaf,
            index,
            size,
            proof.to_vec(),
            some,
        ),
        (
            "trailing root".into(),
            *leaf,
            index,
            size,
            [proof, &[*root]].concat(),
            *root,
        ),
        (
            "preceding root".into(),
            *leaf,
            index,
            size,
            [&[*root], proof].concat(),
            *root,
        ),
    ];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 8;
        probes.push((format!("proof[{i}] bit 3"), *leaf, index, size, p, *root));
    }
    if !proof.is_empty() {
        let p = proof[..proof.len() - 1].to_vec();
        probes.push(("removed component".into(), *leaf, index, size, p, *root));
    }
    if proof.len() > 1 {
        let p = [&[proof[0], some], &proof[1..]].concat();
        probes.push(("inserted component".into(), *leaf, index, size, p, *root));
    }
    for (what, l, i, s, p, r) in probes {
        assert!(
            verify_inclusion(&l, i, s, &p, &r).is_err(),
            "inclusion of {index} in {size}: corruption {what:?} verified"
        );
    }
}

/// Every corruption the Go tests probe (proof/verify_test.go `corruptConsistencyProof`).
fn corrupt_consistency(size1: u64, size2: u64, root1: &Hash, root2: &Hash, proof: &[Hash]) {
    let wrong = leaf_hash(b"WrongRoot");
    let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
        (
            "size1 - 1".into(),
            size1 - 1,
            size2,
            *root1,
            *root2,
            proof.to_vec(),
        ),
        (
            "size1 + 1".into(),
            size1 + 1,
            size2,
            *root1,
            *root2,
            proof.to_vec(),
        ),
        (
            "size1 ^ 2".into(),
            size1 ^ 2,
            size2,
            *root1,
            *root2,
            proof.to_vec(),
        ),
        (
            "size2 * 2".into(),
            size1,
            size2 * 2,
            *root1,
            *root2,
            proof.to_vec(),
        ),
        (
            "size2 / 2".into(),
            size1,
            size2 / 2,
            *root1,
            *root2,
            proof.to_vec(),
        ),
        (
            "wrong root1".into(),
            size1,
            size2,
            wrong,
            *root2,
            proof.to_vec(),
        ),
        (
            "wrong root2".into(),
            size1,
            size2,
            *root1,
            wrong,
            proof.to_vec(),
        ),
        (
            "swapped roots".into(),
            size1,
            size2,
            *root2,
            *root1,
            proof.to_vec(),
        ),
        ("empty proof".into(), size1, size2, *root1, *root2, vec![]),
        (
            "trailing root1".into(),
            size1,
            size2,
            *root1,
            *root2,
            [proof, &[*root1]].concat(),
        ),
        (
            "trailing root2".into(),
            size1,
            size2,
            *root1,
            *root2,
            [proof, &[*root2]].concat(),
        ),
        (
            "preceding root1".into(),
            size1,
            size2,
            *root1,
            *root2,
            [&[*root1], proof].concat(),
        ),
        (
            "preceding root2".into(),
            size1,
            size2,
            *root1,
            *root2,
            [&[*root2], proof].concat(),
        ),
        (
            "preceding proof[0]".into(),
            size1,
            size2,
            *root1,
            *root2,
            [&[proof[0]], proof].concat(),
        ),
        (
            "truncated".into(),
            size1,
            size2,
            *root1,
            *root2,
            proof[..proof.len() - 1].to_vec(),
        ),
    ];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 16;
        probes.push((format!("proof[{i}] bit 4"), size1, size2, *root1, *root2, p));
    }
    for (what, s1, s2, r1, r2, p) in probes {
        assert!(
            verify_consistency(s1, s2, &r1, &r2, &p).is_err(),
            "consistency {size1} -> {size2}: corruption {what:?} verified"
        );
    }
}

#[test]
fn transparency_dev_vectors() {
    let v = vectors();
    let tree = vector_tree(&v);
    assert_eq!(tree.root(0).unwrap(), h(v["empty_root"].as_str().unwrap()));
    for (i, leaf) in hashes(&v["leaf_hashes"]).iter().enumerate() {
        assert_eq!(tree.leaf(i as u64).unwrap(), *leaf, "leaf hash {i}");
    }
    let roots = hashes(&v["roots_by_size"]);
    for (i, root) in roots.iter().enumerate() {
        assert_eq!(
            tree.root(i as u64 + 1).unwrap(),
            *root,
            "root of size {}",
            i + 1
        );
    }
    for case in v["inclusion"].as_array().unwrap() {
        let index = case["leaf_number"].as_u64().unwrap() - 1;
        let size = case["size"].as_u64().unwrap();
        let proof = hashes(&case["proof"]);
        assert_eq!(
            tree.inclusion_proof(index, size).unwrap(),
            proof,
            "path {index} in {size}"
        );
        let (leaf, root) = (tree.leaf(index).unwrap(), roots[size as usize - 1]);
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        corrupt_inclusion(&leaf, index, size, &proof, &root);
    }
    for case in v["consistency"].as_array().unwrap() {
        let (m, n) = (
            case["size1"].as_u64().unwrap(),
            case["size2"].as_u64().unwrap(),
        );
        let proof = hashes(&case["proof"]);
        assert_eq!(
            tree.consistency_proof(m, n).unwrap(),
            proof,
            "proof {m} -> {n}"
        );
        let (r1, r2) = (roots[m as usize - 1], roots[n as usize - 1]);
        verify_consistency(m, n, &r1, &r2, &proof).unwrap();
        if !proof.is_empty() {
            corrupt_consistency(m, n, &r1, &r2, &proof);
        }
    }
}

/// The edge cases of the Go `TestVerifyConsistency` and `TestVerifyInclusion`.
#[test]
fn trivial_sizes_and_out_of_range_requests() {
    let (r1, r2) = (leaf_hash(b"don't care 1"), leaf_hash(b"don't care 2"));
    let e = empty_root();
    assert!(verify_consistency(0, 0, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 1, &r1, &r2, &[]).is_err());
    verify_consistency(0, 0, &r1, &r1, &[]).unwrap();
    verify_consistency(0, 1, &r1, &r2, &[]).unwrap();
    verify_consistency(1, 1, &r2, &r2, &[]).unwrap();
    assert!(verify_consistency(1, 0, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(2, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 2, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(0, 0, &e, &e, &[e]).is_err());
    assert!(verify_consistency(0, 1, &e, &e, &[e]).is_err());
    assert!(verify_consistency(1, 1, &e, &e, &[e]).is_err());
    for (index, size) in [(0, 0), (1, 0), (2, 1)] {
        assert!(verify_inclusion(&r1, index, size, &[], &e).is_err());
    }
    // A one-entry tree: the leaf is the root, the path is empty.
    let leaf = leaf_hash(b"data");
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert!(verify_inclusion(&leaf, 0, 1, &[], &e).is_err());
    // Proofs longer than any tree can need are refused before hashing.
    assert!(verify_inclusion(&leaf, 0, u64::MAX, &[e; 64], &leaf).is_err());
    assert!(verify_consistency(1, u64::MAX, &e, &e, &[e; 64]).is_err());
    // Requests outside the tree are errors, never panics.
    let tree = vector_tree(&vectors());
    assert!(tree.root(9).is_err());
    assert!(tree.inclusion_proof(8, 8).is_err());
    assert!(tree.inclusion_proof(0, 9).is_err());
    assert!(tree.consistency_proof(5, 4).is_err());
    assert!(tree.consistency_proof(1, 9).is_err());
    assert_eq!(tree.consistency_proof(0, 8).unwrap(), Vec::<Hash>::new());
    assert_eq!(tree.consistency_proof(8, 8).unwrap(), Vec::<Hash>::new());
}

fn entry(i: u64) -> Vec<u8> {
    // Entries of varied lengths, like receipts.
    let mut e = format!("receipt {i}").into_bytes();
    e.resize(e.len() + (i as usize * 7) % 13, b'.');
    e
}

fn ct_bytes(proof: &[Hash]) -> Vec<u8> {
    proof.concat()
}

/// ct-merkle (an independent Rust implementation of RFC 6962) and this module agree on every
/// root, inclusion path and consistency proof of every tree of 1 to 260 entries, and each
/// verifies the other's proofs.
#[test]
fn agrees_with_ct_merkle_on_every_tree_up_to_260_entries() {
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut ours = Tree::new();
    let mut roots = vec![empty_root()];
    for n in 1..=260u64 {
        theirs.push(entry(n - 1));
        assert_eq!(ours.push(leaf_hash(&entry(n - 1))), n - 1);
        let root = ours.root(n).unwrap();
        let their_root = theirs.root();
        assert_eq!(their_root.as_bytes()[..], root[..], "root of {n}");
        roots.push(root);
        for i in 0..n {
            let path = ours.inclusion_proof(i, n).unwrap();
            let their_path = theirs.prove_inclusion(i as usize);
            assert_eq!(their_path.as_bytes(), ct_bytes(&path), "path {i} in {n}");
            verify_inclusion(&ours.leaf(i).unwrap(), i, n, &path, &root).unwrap();
            their_root
                .verify_inclusion(
                    &entry(i),
                    i,
                    &InclusionProof::<Sha256>::from_bytes(ct_bytes(&path)),
                )
                .unwrap();
        }
        for m in 1..n {
            let proof = ours.consistency_proof(m, n).unwrap();
            let their_proof = theirs.prove_consistency((n - m) as usize);
            assert_eq!(their_proof.as_bytes(), ct_bytes(&proof), "proof {m} -> {n}");
            verify_consistency(m, n, &roots[m as usize], &root, &proof).unwrap();
            let old = RootHash::<Sha256>::new(roots[m as usize].into(), m);
            their_root
                .verify_consistency(
                    &old,
                    &ConsistencyProof::<Sha256>::try_from_bytes(ct_bytes(&proof)).unwrap(),
                )
                .unwrap();
            // The previous roots are still answered exactly.
            assert_eq!(ours.root(m).unwrap(), roots[m as usize]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Larger trees: a random index and an earlier size, against ct-merkle; a flipped bit in any
    /// hash of either proof fails.
    #[test]
    fn random_trees_agree_with_ct_merkle(n in 261u64..5000, i_seed in any::<u64>(), m_seed in any::<u64>(), flip in any::<u16>()) {
        let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        let mut ours = Tree::new();
        for k in 0..n {
            theirs.push(entry(k));
            ours.push(leaf_hash(&entry(k)));
        }
        let root = ours.root(n).unwrap();
        let their_root = theirs.root();
        prop_assert_eq!(&their_root.as_bytes()[..], &root[..]);
        let i = i_seed % n;
        let path = ours.inclusion_proof(i, n).unwrap();
        let their_path = theirs.prove_inclusion(i as usize);
        prop_assert_eq!(their_path.as_bytes(), ct_bytes(&path));
        prop_assert!(verify_inclusion(&ours.leaf(i).unwrap(), i, n, &path, &root).is_ok());
        let m = 1 + m_seed % (n - 1);
        let proof = ours.consistency_proof(m, n).unwrap();
        let their_proof = theirs.prove_consistency((n - m) as usize);
        prop_assert_eq!(their_proof.as_bytes(), ct_bytes(&proof));
        let old = ours.root(m).unwrap();
        prop_assert!(verify_consistency(m, n, &old, &root, &proof).is_ok());
        let mut bad = path.clone();
        let k = flip as usize % bad.len();
        bad[k][(flip >> 8) as usize % 32] ^= 1 << (flip % 8);
        prop_assert!(verify_inclusion(&ours.leaf(i).unwrap(), i, n, &bad, &root).is_err());
        let mut bad = proof.clone();
        let k = flip as usize % bad.len();
        bad[k][(flip >> 8) as usize % 32] ^= 1 << (flip % 8);
        prop_assert!(verify_consistency(m, n, &old, &root, &bad).is_err());
    }
}
