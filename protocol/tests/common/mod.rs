//! Fixtures shared by the protocol tests.
#![allow(dead_code, clippy::unwrap_used)]

use rand_core::OsRng;
use secllama_protocol::attestation::{
    AttestationPayload, EnclaveDigests, EnclaveInfo, EnclaveKeys, IsolationMode, LogState,
    PcrValues, SnpEvidence, TpmEvidence,
};
use secllama_protocol::cose::SigningKey;
use secllama_protocol::seal::AwsLcRsaOaep;
use secllama_protocol::{Nonce, Sha256Digest, sha256};
use std::sync::OnceLock;

/// One RSA-3072 enclave key per test binary (generation takes a while).
pub fn enclave_key() -> &'static AwsLcRsaOaep {
    static KEY: OnceLock<AwsLcRsaOaep> = OnceLock::new();
    KEY.get_or_init(|| AwsLcRsaOaep::generate().unwrap())
}

pub fn signing_key() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

pub fn digest(tag: &str) -> Sha256Digest {
    sha256(&[tag.as_bytes()])
}

/// A payload with every optional part present.
pub fn full_payload(key: &SigningKey, spki: &[u8]) -> AttestationPayload {
    let mut pcrs = PcrValues::new();
    pcrs.insert(
        "sha256".into(),
        [(0u32, vec![1u8; 32]), (23, vec![2u8; 32])]
            .into_iter()
            .collect(),
    );
    pcrs.insert("sha1".into(), [(7u32, vec![3u8; 20])].into_iter().collect());
    AttestationPayload {
        nonce: Nonce::new(vec![7u8; 32]).unwrap(),
        iat: 1_790_000_000,
        keys: EnclaveKeys {
            signing: key.public(),
            encryption_spki: spki.to_vec(),
        },
        enclave: EnclaveInfo {
            mode: IsolationMode::Process,
            agent_version: "0.1.0".into(),
        },
        measurements: EnclaveDigests {
            agent: digest("agent"),
            runner: digest("runner"),
            model: digest("model"),
            policy: digest("policy"),
            config: digest("config"),
            // Keys whose bytewise order differs from their encoded (length-first) order.
            trees: [
                ("/usr/lib/python3.11".to_string(), digest("tree")),
                ("/b".to_string(), digest("b")),
                ("/aa".to_string(), digest("aa")),
            ]
            .into(),
        },
        tpm: Some(TpmEvidence {
            attest: vec![0xff, 0x54, 0x43, 0x47, 1, 2, 3],
            signature: vec![0, 0x14, 0, 0x0b, 0, 2, 9, 9],
            ak_public: vec![0, 4, 1, 2, 3, 4],
            pcrs,
            event_log: vec![5u8; 64],
            ek_cert: Some(vec![0x30, 0x82, 0, 1, 0]),
        }),
        snp: Some(SnpEvidence {
            report: vec![0xa5; 1184],
            vcek: None,
        }),
        log: LogState {
            size: 3,
            root: digest("root"),
            key: key.public(),
            head: vec![0xd2, 0x84, 0x40],
        },
    }
}

/// Flips every byte of `bytes` with several masks and hands each variant to `check`.
pub fn for_each_flip(bytes: &[u8], mut check: impl FnMut(usize, u8, &[u8])) {
    let mut v = bytes.to_vec();
    for i in 0..v.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            v[i] ^= mask;
            check(i, mask, &v);
            v[i] ^= mask;
        }
    }
}
