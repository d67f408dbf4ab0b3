//! Property tests: every wire type round-trips through its encoding, and every opener returns
//! exactly what was sealed, however the bytes are split in transit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use common::*;
use proptest::prelude::*;
use rand_core::OsRng;
use secllama_protocol::attestation::{
    AttestationPayload, IsolationMode, PcrValues, SnpEvidence, TpmEvidence, open_document,
    sign_document,
};
use secllama_protocol::receipt::{ReceiptPayload, sign_receipt, verify_receipt};
use secllama_protocol::seal::{
    ContentKey, RecipientKind, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener,
    StreamSealer, open_request, open_single, seal_request, seal_request_session, seal_single,
};
use secllama_protocol::{Nonce, RequestId, Salt, Sha256Digest};

fn d32() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(Sha256Digest)
}

fn pcrs() -> impl Strategy<Value = PcrValues> {
    let bank = |name: &'static str, len: usize| {
        proptest::collection::btree_map(0u32..24, proptest::collection::vec(any::<u8>(), len), 0..4)
            .prop_map(move |m| (name.to_string(), m))
    };
    (bank("sha1", 20), bank("sha256", 32), bank("sha384", 48)).prop_map(|(a, b, c)| {
        [a, b, c]
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .collect()
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn attestation_payload_roundtrips(
        nonce in proptest::collection::vec(any::<u8>(), 16..=64),
        iat in any::<u64>(),
        vm in any::<bool>(),
        version in "[a-z0-9.+-]{0,20}",
        digests in proptest::array::uniform5(d32()),
        tpm in proptest::option::of((bytes(200), bytes(300), bytes(100), pcrs(), bytes(500), proptest::option::of(bytes(50)))),
        snp in proptest::option::of((proptest::collection::vec(any::<u8>(), 1184), proptest::option::of(bytes(80)))),
        log in (any::<u64>(), d32()),
    ) {
        let key = signing_key();
        let mut p = full_payload(&key, enclave_key().public_key_der());
        p.nonce = Nonce::new(nonce).unwrap();
        p.iat = iat;
        p.enclave.mode = if vm { IsolationMode::Vm } else { IsolationMode::Process };
        p.enclave.agent_version = version;
        let [agent, runner, model, policy, config] = digests;
        p.measurements = secllama_protocol::attestation::EnclaveDigests { agent, runner, model, policy, config, trees: Default::default() };
        p.tpm = tpm.map(|(attest, signature, ak_public, pcrs, event_log, ek_cert)| TpmEvidence { attest, signature, ak_public, pcrs, event_log, ek_cert });
        p.snp = snp.map(|(report, vcek)| SnpEvidence { report, vcek });
        p.log = secllama_protocol::attestation::LogState { size: log.0, root: log.1, key: key.public(), head: vec![0xd2, 0x84] };
        let bytes = p.to_bytes().unwrap();
        prop_assert_eq!(&AttestationPayload::from_bytes(&bytes).unwrap(), &p);
        let doc = sign_document(&p, &key).unwrap();
        let verified = open_document(&doc).unwrap();
        prop_assert_eq!(verified.payload, p);
        prop_assert_eq!(verified.kid, key.public().kid().unwrap());
    }

    #[test]
    fn sealed_request_roundtrips(body in bytes(4096), ts in any::<u64>(), path in "/v1/sealed/api/[a-z]{1,8}", session in any::<bool>()) {
        let enclave = enclave_key();
        let ctx = RequestContext { method: "POST", path: &path, attestation_digest: digest("doc") };
        let pt = RequestPlaintext::new(body, ts, &mut OsRng).unwrap();
        prop_assert_eq!(&RequestPlaintext::from_bytes(&pt.to_bytes().unwrap()).unwrap(), &pt);
        let (sealed, key) = seal_request(enclave.public_key_der(), &ctx, &pt, &mut OsRng).unwrap();
        let opened = open_request(&sealed, &ctx, enclave, |_| None).unwrap();
        prop_assert_eq!(&opened.plaintext, &pt);
        let wrapped = matches!(opened.recipient, RecipientKind::Wrapped { .. });
        prop_assert!(wrapped, "first request must carry a wrapped key");
        if session {
            // Reuse the key: no RSA, same plaintext back, and the session id names the key.
            let pt2 = RequestPlaintext::new(b"second".to_vec(), ts, &mut OsRng).unwrap();
            let sealed2 = seal_request_session(&key, &ctx, &pt2, &mut OsRng).unwrap();
            let opened2 = open_request(&sealed2, &ctx, enclave, |id| (*id == key.session_id().unwrap()).then(|| key.clone())).unwrap();
            prop_assert_eq!(opened2.plaintext, pt2);
            prop_assert_eq!(opened2.recipient, RecipientKind::Session { id: key.session_id().unwrap() });
        }
    }

    #[test]
    fn single_response_roundtrips(data in bytes(8192), id in any::<[u8; 16]>()) {
        let key = ContentKey::generate(&mut OsRng).unwrap();
        let keys = ResponseKeys::derive(&key, &RequestId(id)).unwrap();
        prop_assert_eq!(open_single(&keys, &seal_single(&keys, &data).unwrap()).unwrap(), data);
    }

    #[test]
    fn stream_roundtrips_under_any_split(chunks in proptest::collection::vec(bytes(300), 1..8), cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let key = ContentKey::generate(&mut OsRng).unwrap();
        let keys = ResponseKeys::derive(&key, &RequestId([1; 16])).unwrap();
        let mut sealer = StreamSealer::new(keys.clone());
        let mut wire = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            wire.extend(sealer.seal_chunk(c, i + 1 == chunks.len()).unwrap());
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut opener = StreamOpener::new(keys);
        let mut got = Vec::new();
        for w in points.windows(2) {
            got.extend(opener.push(&wire[w[0]..w[1]]).unwrap());
        }
        prop_assert!(opener.is_complete());
        opener.finish().unwrap();
        prop_assert_eq!(got.iter().map(|c| c.data.clone()).collect::<Vec<_>>(), chunks);
        prop_assert!(got.last().unwrap().last);
    }

    #[test]
    fn receipt_roundtrips(req in d32(), resp in d32(), model in "[a-z0-9:._-]{1,40}", policy in d32(), index in any::<u64>(), time in any::<u64>(), salt in any::<[u8; 32]>(), num_predict in proptest::option::of(any::<u64>()), defaults in proptest::collection::vec("[a-z_]{1,12}", 0..3)) {
        let key = signing_key();
        let params = secllama_protocol::receipt::ReceiptParams { num_predict, defaults };
        let p = ReceiptPayload { request_digest: req, response_digest: resp, model, policy_digest: policy, signing_kid: key.public().kid().unwrap(), log_index: index, time, params };
        prop_assert_eq!(&ReceiptPayload::from_bytes(&p.to_bytes().unwrap()).unwrap(), &p);
        prop_assert_eq!(verify_receipt(&sign_receipt(&p, &key).unwrap(), &key.public()).unwrap(), p);
        // Salted digests differ per salt and equal SHA-256(salt ‖ bytes).
        let s = Salt(salt);
        prop_assert_eq!(s.digest(b"x"), secllama_protocol::sha256(&[&salt, b"x"]));
    }
}
