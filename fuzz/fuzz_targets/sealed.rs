//! Sealed requests (COSE_Encrypt with an RSA-OAEP-wrapped key, or COSE_Encrypt0 under a session
//! key), sealed single answers and the sealed stream framing, opened with keys the input cannot
//! know. Property: nothing opens (authentication holds), nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::seal::{
    AwsLcRsaOaep, ContentKey, RequestContext, ResponseKeys, StreamOpener, open_request, open_single,
};
use secllama_protocol::{RequestId, sha256};
use std::sync::OnceLock;

struct Keys {
    rsa: AwsLcRsaOaep,
    session: ContentKey,
    response: ResponseKeys,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let session = ContentKey::generate(&mut rand_core::OsRng).expect("a key");
        let response = ResponseKeys::derive(&session, &RequestId([7; 16])).expect("keys");
        Keys {
            rsa: AwsLcRsaOaep::generate().expect("an RSA key"),
            session,
            response,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    secllama_fuzz_bounds::decided(data, || {
        let ctx = RequestContext {
            method: "POST",
            path: "/v1/sealed/api/generate",
            attestation_digest: sha256(&[b"fuzz"]),
        };
        assert!(open_request(data, &ctx, &k.rsa, |_| Some(k.session.clone())).is_err());
        assert!(open_single(&k.response, data).is_err());
        let mut o = StreamOpener::new(k.response.clone());
        match o.push(data) {
            Ok(chunks) => assert!(chunks.is_empty(), "a forged chunk opened"),
            Err(_) => return,
        }
        assert!(
            o.finish().is_err(),
            "a stream without its authenticated end finished"
        );
    });
});
