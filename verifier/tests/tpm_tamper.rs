//! Tampering and malformed input: every byte of one valid GCE quote's attest, signature and AK
//! flipped (masks 0x01 and 0xff) is rejected or fails to parse, never accepted and never a panic;
//! every truncation of each structure is a parse error; random bytes of every length 0..2048, alone
//! or after a valid prefix, are errors or rejections, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

use secllama_verifier::tpm::{
    AkPublic, Attest, HashAlg, PcrValues, QuotePolicy, TPM_RH_ENDORSEMENT, TpmPublic, TpmSignature,
    appraise_quote_bytes, from_tpm2_tools_file,
};
use serde_json::Value;
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

struct Quote {
    ak: Vec<u8>,
    attest: Vec<u8>,
    sig: Vec<u8>,
    pcrs: PcrValues,
}

fn gce_sha256() -> Quote {
    let dir = shared().join("vectors/tpm-quote/gce-cos85-nonce9009");
    let exp: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let mut pcrs = PcrValues::new();
    for (i, v) in exp["quotes"][1]["pcrs"].as_object().unwrap() {
        pcrs.insert(
            HashAlg::Sha256,
            i.parse().unwrap(),
            hex::decode(v.as_str().unwrap()).unwrap(),
        )
        .unwrap();
    }
    Quote {
        ak: std::fs::read(dir.join("ak_pub.tpmt_public.bin")).unwrap(),
        attest: std::fs::read(dir.join("quote_sha256.tpms_attest.bin")).unwrap(),
        sig: std::fs::read(dir.join("quote_sha256.tpmt_signature.bin")).unwrap(),
        pcrs,
    }
}

/// A deterministic xorshift generator: the same bytes on every run.
struct Rng(u64);

impl Rng {
    fn byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// The verifier pins the AK through its qualified name under the endorsement hierarchy, as a
/// verifier of GCE quotes does (the AK is an endorsement primary): the quote's `qualifiedSigner`
/// binds every byte of the AK's public area.
fn qn_of(ak: &[u8]) -> Option<Vec<u8>> {
    TpmPublic::parse(ak)
        .ok()
        .map(|p| p.qualified_name(&TPM_RH_ENDORSEMENT.to_be_bytes()))
}

#[test]
fn the_untampered_quote_is_valid() {
    let q = gce_sha256();
    let qn = qn_of(&q.ak).unwrap();
    let policy = QuotePolicy {
        nonce: &[0x90, 0x09],
        pcrs: &q.pcrs,
        allow_sha1: false,
        qualified_signer: Some(&qn),
    };
    let a = appraise_quote_bytes(&q.attest, &q.sig, &q.ak, &policy);
    assert!(a.valid(), "{:?}", a.reasons());
}

#[test]
fn every_flipped_byte_is_rejected() {
    let q = gce_sha256();
    let qn = qn_of(&q.ak).unwrap();
    let mut cases = 0;
    for (part, len) in [
        ("attest", q.attest.len()),
        ("signature", q.sig.len()),
        ("ak", q.ak.len()),
    ] {
        for i in 0..len {
            for mask in [0x01u8, 0xff] {
                let (mut attest, mut sig, mut ak) = (q.attest.clone(), q.sig.clone(), q.ak.clone());
                match part {
                    "attest" => attest[i] ^= mask,
                    "signature" => sig[i] ^= mask,
                    _ => ak[i] ^= mask,
                }
                // The verifier's expected qualified name comes from the AK it was given.
                let expected_qn = if part == "ak" {
                    qn_of(&ak)
                } else {
                    Some(qn.clone())
                };
                let policy = QuotePolicy {
                    nonce: &[0x90, 0x09],
                    pcrs: &q.pcrs,
                    allow_sha1: false,
                    qualified_signer: Some(expected_qn.as_deref().unwrap_or(&[])),
                };
                let a = appraise_quote_bytes(&attest, &sig, &ak, &policy);
                assert!(!a.valid(), "{part} byte {i} ^ {mask:#04x} accepted");
                assert!(!a.reasons().is_empty());
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 2 * (115 + 262 + 280));
}

#[test]
fn flipped_ak_bytes_without_a_qualified_name_change_the_key_or_fail() {
    // Without the qualified-name expectation, an AK byte outside the key material (e.g.
    // userWithAuth) changes the AK's Name but not its key: the signature still verifies, and only
    // AK trust (pinning, certificate, qualified name) can notice. Everything else must fail.
    let q = gce_sha256();
    let original = AkPublic::detect(&q.ak).unwrap().verifying_key().unwrap();
    let policy = QuotePolicy {
        nonce: &[0x90, 0x09],
        pcrs: &q.pcrs,
        allow_sha1: false,
        qualified_signer: None,
    };
    for i in 0..q.ak.len() {
        for mask in [0x01u8, 0xff] {
            let mut ak = q.ak.clone();
            ak[i] ^= mask;
            let a = appraise_quote_bytes(&q.attest, &q.sig, &ak, &policy);
            if a.valid() {
                let key = AkPublic::detect(&ak).unwrap().verifying_key().unwrap();
                assert!(
                    secllama_verifier::tpm::trust::same_key(&key, &original),
                    "AK byte {i} ^ {mask:#04x}: accepted under another key"
                );
                assert!(
                    (4..8).contains(&i),
                    "AK byte {i} ^ {mask:#04x} accepted outside objectAttributes"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_a_parse_error() {
    let q = gce_sha256();
    let policy = QuotePolicy {
        nonce: &[0x90, 0x09],
        pcrs: &q.pcrs,
        allow_sha1: false,
        qualified_signer: None,
    };
    for len in 0..q.attest.len() {
        let e = Attest::parse(&q.attest[..len]).unwrap_err().to_string();
        assert!(e.contains("TPMS_ATTEST") && e.contains("at byte"), "{e}");
        assert!(!appraise_quote_bytes(&q.attest[..len], &q.sig, &q.ak, &policy).valid());
    }
    for len in 0..q.sig.len() {
        assert!(
            TpmSignature::parse(&q.sig[..len]).is_err(),
            "signature length {len}"
        );
        assert!(!appraise_quote_bytes(&q.attest, &q.sig[..len], &q.ak, &policy).valid());
    }
    for len in 0..q.ak.len() {
        assert!(TpmPublic::parse(&q.ak[..len]).is_err(), "AK length {len}");
        assert!(!appraise_quote_bytes(&q.attest, &q.sig, &q.ak[..len], &policy).valid());
    }
}

#[test]
fn random_bytes_of_every_length_are_errors_not_panics() {
    let q = gce_sha256();
    let policy = QuotePolicy {
        nonce: &[0x90, 0x09],
        pcrs: &q.pcrs,
        allow_sha1: false,
        qualified_signer: None,
    };
    let mut rng = Rng(0x5ec1_1a3a_7e57_0001);
    for len in 0..2048 {
        let noise = rng.bytes(len);
        assert!(Attest::parse(&noise).is_err() || len >= 40);
        let _ = TpmSignature::parse(&noise);
        let _ = TpmPublic::parse(&noise);
        let _ = AkPublic::detect(&noise);
        let _ = from_tpm2_tools_file(&noise);
        let _ = secllama_verifier::tpm::cert::load_certificates(&noise);
        let _ = PcrValues::from_concatenated(
            &secllama_verifier::tpm::PcrSelection::parse_tpm2_tools("sha256:0").unwrap(),
            &noise,
        );
        // A valid prefix of each structure followed by noise, and noise in each role.
        for (name, good) in [("attest", &q.attest), ("sig", &q.sig), ("ak", &q.ak)] {
            let cut = len % (good.len() + 1);
            let mut mixed = good[..cut].to_vec();
            mixed.extend_from_slice(&noise[..len.min(64)]);
            let (a, s, k) = match name {
                "attest" => (&mixed, &q.sig, &q.ak),
                "sig" => (&q.attest, &mixed, &q.ak),
                _ => (&q.attest, &q.sig, &mixed),
            };
            let _ = Attest::parse(&mixed);
            let _ = TpmSignature::parse(&mixed);
            let _ = TpmPublic::parse(&mixed);
            assert!(
                !appraise_quote_bytes(a, s, k, &policy).valid() || mixed == **good,
                "{name}: prefix {cut} + noise accepted"
            );
        }
        assert!(!appraise_quote_bytes(&noise, &q.sig, &q.ak, &policy).valid());
        assert!(!appraise_quote_bytes(&q.attest, &noise, &q.ak, &policy).valid());
        assert!(!appraise_quote_bytes(&q.attest, &q.sig, &noise, &policy).valid());
    }
}
