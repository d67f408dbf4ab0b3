//! The receipt log file (records, torn tails) and its verification (identity, heads, Merkle
//! roots, counters); a receipt and a signed tree head against a fixed key. Properties: the valid
//! prefix is a prefix and is exactly its records re-encoded; a verified log's heads count up;
//! the receipt, tree head and identity decoders (deterministic CBOR) accept only their own
//! encoding, as the input or as its COSE_Sign1 payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::cose::{CoseP256Key, Sign1Policy, SigningKey, sign1};
use secllama_protocol::receipt::ReceiptPayload;
use secllama_protocol::receipt_log;
use secllama_protocol::tree_head::{LogIdentity, TreeHead};
use std::sync::OnceLock;

fn key() -> &'static CoseP256Key {
    static K: OnceLock<CoseP256Key> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate(&mut rand_core::OsRng).public())
}

fn round_trips(b: &[u8]) {
    if let Ok(r) = ReceiptPayload::from_bytes(b) {
        assert_eq!(r.to_bytes().expect("re-encodes"), b, "a receipt payload");
    }
    if let Ok(h) = TreeHead::from_bytes(b) {
        assert_eq!(h.to_bytes().expect("re-encodes"), b, "a tree head");
    }
    if let Ok(i) = LogIdentity::from_bytes(b) {
        assert_eq!(i.to_bytes().expect("re-encodes"), b, "a log identity");
    }
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    secllama_fuzz_bounds::decided(data, || {
        if let Ok(p) = receipt_log::parse(data) {
            let valid = usize::try_from(p.valid_len).expect("a length");
            assert!(valid <= data.len());
            let mut again = Vec::new();
            for r in &p.records {
                again
                    .extend(receipt_log::encode(r.kind, &r.body).expect("a parsed record encodes"));
            }
            assert_eq!(again, &data[..valid], "the valid prefix is its records");
            if let Ok(v) = receipt_log::verify(&p.records) {
                assert!(
                    v.heads
                        .windows(2)
                        .all(|h| h[0].head.counter < h[1].head.counter)
                );
            }
        }
        let _ = secllama_protocol::receipt::verify_receipt(data, key);
        let _ = secllama_protocol::tree_head::verify_tree_head(data, key);
        round_trips(data);
        if let Ok(s) = sign1::parse(data, &Sign1Policy::default()) {
            if let Some(p) = s.unverified_payload() {
                round_trips(p);
            }
        }
    });
});
