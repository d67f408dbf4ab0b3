//! Each rule the protocol promises to enforce, tested on its own: COSE_Sign1 header and tag rules,
//! request binding to method, path, attestation document and enclave key, and every stream attack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test

mod common;

use common::*;
use coset::{CborSerializable, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana};
use rand_core::OsRng;
use secllama_protocol::ProtocolError;
use secllama_protocol::cose::{self, Sign1Policy, SigningKey, VerifyingKey};
use secllama_protocol::seal::{
    AwsLcRsaOaep, ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener,
    StreamSealer, open_request, open_single, seal_request, seal_single,
};
use secllama_protocol::{RequestId, Salt};

fn policy() -> Sign1Policy<'static> {
    Sign1Policy {
        max_len: 1 << 16,
        ..Sign1Policy::default()
    }
}

fn vk(key: &SigningKey) -> VerifyingKey {
    key.public().verifying_key().unwrap()
}

fn build(
    key: &SigningKey,
    protected: coset::Header,
    unprotected: coset::Header,
) -> coset::CoseSign1 {
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(b"payload".to_vec())
        .create_signature(b"", |tbs| key.sign(tbs))
        .build()
}

#[test]
fn sign1_accepts_tagged_and_untagged_and_reports_fields() {
    let key = signing_key();
    let signed = cose::sign(&key, "application/x", b"hello", b"aad").unwrap();
    assert_eq!(signed[0], 0xd2, "output is tagged 18");
    let p = Sign1Policy {
        external_aad: b"aad",
        content_type: Some("application/x"),
        ..policy()
    };
    let v = cose::verify(&signed, &vk(&key), &p).unwrap();
    assert!(v.tagged);
    assert_eq!(v.payload, b"hello");
    assert_eq!(v.alg.name(), "ES256");
    assert_eq!(v.kid.unwrap(), key.public().kid().unwrap().0.to_vec());
    let untagged = &signed[1..];
    assert!(!cose::verify(untagged, &vk(&key), &p).unwrap().tagged);
    // Wrong external AAD, wrong key.
    let bad_aad = Sign1Policy {
        external_aad: b"other",
        ..p
    };
    assert!(matches!(
        cose::verify(&signed, &vk(&key), &bad_aad),
        Err(ProtocolError::BadSignature { .. })
    ));
    assert!(matches!(
        cose::verify(&signed, &vk(&signing_key()), &p),
        Err(ProtocolError::BadSignature { .. })
    ));
}

#[test]
fn sign1_rejects_non_18_tag() {
    let key = signing_key();
    let s = build(
        &key,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
        Default::default(),
    );
    let mut bytes = s.to_tagged_vec().unwrap();
    assert_eq!(bytes[0], 0xd2);
    bytes[0] = 0xd1; // tag 17 (COSE_Mac0)
    let e = cose::verify(&bytes, &vk(&key), &policy()).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::WrongTag {
            what: "COSE_Sign1".into(),
            expected: 18,
            found: 17
        }
    );
}

#[test]
fn sign1_rejects_alg_only_in_unprotected_header() {
    let key = signing_key();
    let s = build(
        &key,
        HeaderBuilder::new().build(),
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
    );
    let e = cose::verify(&s.to_vec().unwrap(), &vk(&key), &policy()).unwrap_err();
    assert!(
        e.to_string().contains("alg in the unprotected header"),
        "{e}"
    );
    let both = build(
        &key,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
    );
    assert!(cose::verify(&both.to_vec().unwrap(), &vk(&key), &policy()).is_err());
}

#[test]
fn sign1_rejects_alg_other_than_the_keys() {
    let key = signing_key();
    // Signed with a P-256 key but labelled ES384: the label does not fit the key.
    let s = build(
        &key,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES384)
            .build(),
        Default::default(),
    );
    let e = cose::verify(&s.to_vec().unwrap(), &vk(&key), &policy()).unwrap_err();
    assert!(
        e.to_string().contains("algorithm of the EC P-256 key"),
        "{e}"
    );
    // An unsupported algorithm.
    let s = build(
        &key,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .build(),
        Default::default(),
    );
    assert!(cose::verify(&s.to_vec().unwrap(), &vk(&key), &policy()).is_err());
}

#[test]
fn sign1_enforces_content_type_and_empty_unprotected_when_required() {
    let key = signing_key();
    let signed = cose::sign(&key, "application/a", b"x", b"").unwrap();
    let p = Sign1Policy {
        content_type: Some("application/b"),
        ..policy()
    };
    let e = cose::verify(&signed, &vk(&key), &p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "COSE_Sign1 content type: expected application/b, found application/a"
    );
    let s = build(
        &key,
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .build(),
        HeaderBuilder::new().key_id(b"k".to_vec()).build(),
    );
    let strict = Sign1Policy {
        empty_unprotected: true,
        ..policy()
    };
    let bytes = s.to_vec().unwrap();
    assert!(cose::verify(&bytes, &vk(&key), &policy()).is_ok());
    assert!(cose::verify(&bytes, &vk(&key), &strict).is_err());
}

fn ctx(path: &str) -> RequestContext<'_> {
    RequestContext {
        method: "POST",
        path,
        attestation_digest: digest("doc"),
    }
}

#[test]
fn requests_are_bound_to_method_path_document_and_enclave() {
    let enclave = enclave_key();
    let pt = RequestPlaintext::new(b"{}".to_vec(), 1, &mut OsRng).unwrap();
    let path = "/v1/sealed/api/generate";
    let (sealed, _) = seal_request(enclave.public_key_der(), &ctx(path), &pt, &mut OsRng).unwrap();
    assert!(open_request(&sealed, &ctx(path), enclave, |_| None).is_ok());
    let other_path =
        open_request(&sealed, &ctx("/v1/sealed/api/chat"), enclave, |_| None).unwrap_err();
    assert_eq!(
        other_path,
        ProtocolError::Decrypt {
            what: "sealed request".into()
        }
    );
    let other_method = RequestContext {
        method: "PUT",
        ..ctx(path)
    };
    assert!(open_request(&sealed, &other_method, enclave, |_| None).is_err());
    let other_doc = RequestContext {
        attestation_digest: digest("another document"),
        ..ctx(path)
    };
    assert!(open_request(&sealed, &other_doc, enclave, |_| None).is_err());
    // Another enclave (another key) refuses by kid before any RSA operation.
    let other = AwsLcRsaOaep::generate().unwrap();
    let e = open_request(&sealed, &ctx(path), &other, |_| None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sealed request recipient kid: expected"),
        "{e}"
    );
    // An unknown session is refused.
    let key = ContentKey::generate(&mut OsRng).unwrap();
    let s =
        secllama_protocol::seal::seal_request_session(&key, &ctx(path), &pt, &mut OsRng).unwrap();
    assert!(matches!(
        open_request(&s, &ctx(path), enclave, |_| None),
        Err(ProtocolError::Missing { .. })
    ));
    // A session request opened with the wrong key is refused by its id.
    let wrong = ContentKey::generate(&mut OsRng).unwrap();
    assert!(open_request(&s, &ctx(path), enclave, |_| Some(wrong.clone())).is_err());
}

#[test]
fn small_rsa_keys_are_refused_for_sealing() {
    // A 2048-bit SPKI (from the RSA-PSS go-cose vector is not DER; build one from aws-lc-rs instead).
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    let small =
        aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let spki = AsDer::<PublicKeyX509Der>::as_der(&small.public_key()).unwrap();
    let pt = RequestPlaintext::new(b"{}".to_vec(), 1, &mut OsRng).unwrap();
    let e = seal_request(spki.as_ref(), &ctx("/p"), &pt, &mut OsRng).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected RSA of at least 3072 bits, found RSA-2048"),
        "{e}"
    );
}

fn stream(keys: &ResponseKeys, parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut s = StreamSealer::new(keys.clone());
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| s.seal_chunk(p, i + 1 == parts.len()).unwrap())
        .collect()
}

fn open(keys: &ResponseKeys, frames: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut o = StreamOpener::new(keys.clone());
    let mut out = Vec::new();
    for f in frames {
        out.extend(o.push(f)?.into_iter().map(|c| c.data));
    }
    o.finish()?;
    Ok(out)
}

#[test]
fn stream_attacks_are_detected() {
    let key = ContentKey::generate(&mut OsRng).unwrap();
    let keys = ResponseKeys::derive(&key, &RequestId([1; 16])).unwrap();
    let frames = stream(&keys, &[b"a", b"b", b"c"]);
    assert_eq!(
        open(&keys, &frames).unwrap(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );

    // Truncation: the final chunk is missing.
    let e = open(&keys, &frames[..2]).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a final chunk, found end of input after 2 chunks"),
        "{e}"
    );
    // Truncation inside a frame.
    let mut cut = frames.concat();
    cut.truncate(cut.len() - 3);
    assert!(open(&keys, &[cut]).is_err());
    // Reordering.
    let e = open(
        &keys,
        &[frames[1].clone(), frames[0].clone(), frames[2].clone()],
    )
    .unwrap_err();
    assert!(e.to_string().contains("expected chunk 0"), "{e}");
    // Duplication.
    assert!(
        open(
            &keys,
            &[
                frames[0].clone(),
                frames[0].clone(),
                frames[1].clone(),
                frames[2].clone()
            ]
        )
        .is_err()
    );
    // Dropping a middle chunk.
    assert!(open(&keys, &[frames[0].clone(), frames[2].clone()]).is_err());
    // Splicing a chunk from another stream of the same session key (another request id).
    let other = ResponseKeys::derive(&key, &RequestId([2; 16])).unwrap();
    let foreign = stream(&other, &[b"x", b"y", b"z"]);
    let e = open(
        &keys,
        &[frames[0].clone(), foreign[1].clone(), frames[2].clone()],
    )
    .unwrap_err();
    assert_eq!(
        e,
        ProtocolError::Decrypt {
            what: "response chunk".into()
        }
    );
    // Trailing data after the final chunk.
    let mut extra = frames.clone();
    extra.push(vec![0, 0, 0, 1, 0]);
    let e = open(&keys, &extra).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected end of stream after the final chunk"),
        "{e}"
    );
    // A stream chunk is not a single answer and a single answer is not a stream.
    let single = seal_single(&keys, b"a").unwrap();
    assert!(
        open(
            &keys,
            &[[(single.len() as u32).to_be_bytes().to_vec(), single.clone()].concat()]
        )
        .is_err()
    );
    assert!(open_single(&keys, &frames[0][4..]).is_err());
    // A huge declared frame length is refused before buffering.
    let mut o = StreamOpener::new(keys.clone());
    assert!(matches!(
        o.push(&[0xff, 0xff, 0xff, 0xff]),
        Err(ProtocolError::TooLarge { .. })
    ));
    // Nothing may be sealed after the final chunk.
    let mut s = StreamSealer::new(keys.clone());
    s.seal_chunk(b"end", true).unwrap();
    assert!(s.seal_chunk(b"more", false).is_err());
}

#[test]
fn receipt_digests_are_salted() {
    let a = Salt([1; 32]);
    let b = Salt([2; 32]);
    assert_ne!(a.digest(b"same prompt"), b.digest(b"same prompt"));
}

mod attestation_decoding {
    use super::*;
    use secllama_protocol::attestation::{
        AttestationPayload, CONTENT_TYPE, MAX_DOCUMENT_LEN, open_document, sign_document,
    };
    use secllama_protocol::cbor::{self, Value};

    fn payload_value(key: &SigningKey) -> (AttestationPayload, Vec<(Value, Value)>) {
        let p = full_payload(key, enclave_key().public_key_der());
        let Value::Map(entries) = p.to_value() else {
            panic!("payload is a map")
        };
        (p, entries)
    }

    fn decode(entries: Vec<(Value, Value)>) -> Result<AttestationPayload, ProtocolError> {
        AttestationPayload::from_bytes(&cbor::to_vec(&Value::Map(entries)).unwrap())
    }

    #[test]
    fn duplicate_keys_wrong_types_unknown_keys_and_trailing_bytes_are_errors() {
        let key = signing_key();
        let (p, entries) = payload_value(&key);
        assert_eq!(decode(entries.clone()).unwrap(), p);

        let mut dup = entries.clone();
        dup.push((Value::Integer(6.into()), Value::Integer(1.into())));
        assert!(matches!(
            decode(dup),
            Err(ProtocolError::DuplicateKey { .. })
        ));

        let mut wrong = entries.clone();
        for (k, v) in wrong.iter_mut() {
            if *k == Value::Integer(6.into()) {
                *v = Value::Text("yesterday".into());
            }
        }
        let e = decode(wrong).unwrap_err();
        assert_eq!(
            e.to_string(),
            "attestation.6: expected an unsigned integer, found text \"yesterday\""
        );

        let mut unknown = entries.clone();
        unknown.push((Value::Text("extra".into()), Value::Null));
        assert!(matches!(
            decode(unknown),
            Err(ProtocolError::UnexpectedKey { .. })
        ));

        let mut missing = entries.clone();
        missing.retain(|(k, _)| *k != Value::Integer(10.into()));
        assert!(matches!(
            decode(missing),
            Err(ProtocolError::Missing { .. })
        ));

        let mut profile = entries.clone();
        for (k, v) in profile.iter_mut() {
            if *k == Value::Integer(265.into()) {
                *v = Value::Text("tag:someone-else".into());
            }
        }
        assert!(matches!(
            decode(profile),
            Err(ProtocolError::Mismatch { .. })
        ));

        let mut trailing = p.to_bytes().unwrap();
        trailing.push(0);
        assert!(matches!(
            AttestationPayload::from_bytes(&trailing),
            Err(ProtocolError::TrailingBytes { found: 1, .. })
        ));
    }

    #[test]
    fn nonce_must_be_16_to_64_bytes() {
        let key = signing_key();
        for (len, ok) in [(15, false), (16, true), (64, true), (65, false)] {
            let (_, mut entries) = payload_value(&key);
            for (k, v) in entries.iter_mut() {
                if *k == Value::Integer(10.into()) {
                    *v = Value::Bytes(vec![1; len]);
                }
            }
            assert_eq!(decode(entries).is_ok(), ok, "nonce of {len} bytes");
        }
        assert!(secllama_protocol::Nonce::new(vec![0; 15]).is_err());
    }

    #[test]
    fn trees_are_left_out_when_empty_and_an_empty_map_is_refused() {
        use secllama_protocol::attestation::AttestationPayload;
        use secllama_protocol::cbor::{self, Value};
        let key = signing_key();
        let mut p = full_payload(&key, enclave_key().public_key_der());
        let with = p.to_bytes().unwrap();
        assert_eq!(AttestationPayload::from_bytes(&with).unwrap(), p);
        p.measurements.trees.clear();
        let bytes = p.to_bytes().unwrap();
        assert_eq!(AttestationPayload::from_bytes(&bytes).unwrap(), p);
        // The same payload with an explicit empty `trees` map: a second encoding, refused.
        let Value::Map(mut top) = cbor::decode("t", &bytes, 1 << 16).unwrap() else {
            panic!("a map")
        };
        for (k, v) in &mut top {
            if *k == Value::Integer(273.into()) {
                let Value::Map(m) = v else {
                    panic!("measurements")
                };
                m.push((Value::Text("trees".into()), Value::Map(vec![])));
            }
        }
        let e = AttestationPayload::from_bytes(&cbor::to_vec(&Value::Map(top)).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("trees") && e.contains("empty"), "{e}");
    }

    #[test]
    fn documents_over_64_kib_are_refused_both_ways() {
        let key = signing_key();
        let mut p = full_payload(&key, enclave_key().public_key_der());
        p.tpm.as_mut().unwrap().event_log = vec![0; MAX_DOCUMENT_LEN];
        assert!(matches!(
            sign_document(&p, &key),
            Err(ProtocolError::TooLarge { .. })
        ));
        let big = vec![0u8; MAX_DOCUMENT_LEN + 1];
        assert!(
            matches!(open_document(&big), Err(ProtocolError::TooLarge { found, .. }) if found == MAX_DOCUMENT_LEN + 1)
        );
    }

    #[test]
    fn the_document_must_be_signed_by_the_key_it_names() {
        let named = signing_key();
        let other = signing_key();
        let p = full_payload(&named, enclave_key().public_key_der());
        // sign_document refuses to sign with a key the payload does not name.
        assert!(sign_document(&p, &other).is_err());
        // Signed by another key under its own kid: the kid does not name the payload's key.
        let forged = cose::sign(&other, CONTENT_TYPE, &p.to_bytes().unwrap(), b"").unwrap();
        let e = open_document(&forged).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("attestation document kid: expected"),
            "{e}"
        );
        // Signed by another key under the named key's kid: the signature does not verify.
        let forged = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .content_type(CONTENT_TYPE.to_string())
                    .key_id(named.public().kid().unwrap().0.to_vec())
                    .build(),
            )
            .payload(p.to_bytes().unwrap())
            .create_signature(b"", |tbs| other.sign(tbs))
            .build()
            .to_tagged_vec()
            .unwrap();
        assert!(matches!(
            open_document(&forged),
            Err(ProtocolError::BadSignature { .. })
        ));
        // The binding changes with each input.
        let b = p.binding().unwrap();
        let mut q = p.clone();
        q.nonce = secllama_protocol::Nonce::new(vec![8; 32]).unwrap();
        assert_ne!(b, q.binding().unwrap());
    }
}
