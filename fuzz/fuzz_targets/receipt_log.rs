//! The receipt log file (records, torn tails) and its verification (identity, heads, Merkle
//! roots, counters); a receipt and a signed tree head against a fixed key. Properties: the valid
//! prefix is a prefix; a verified log's heads count up.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_protocol::cose::{CoseP256Key, SigningKey};
use std::sync::OnceLock;

fn key() -> &'static CoseP256Key {
    static K: OnceLock<CoseP256Key> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate(&mut rand_core::OsRng).public())
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    secllama_fuzz_bounds::decided(data, || {
        if let Ok(p) = secllama_protocol::receipt_log::parse(data) {
            assert!(p.valid_len as usize <= data.len());
            if let Ok(v) = secllama_protocol::receipt_log::verify(&p.records) {
                assert!(
                    v.heads
                        .windows(2)
                        .all(|h| h[0].head.counter < h[1].head.counter)
                );
            }
        }
        let _ = secllama_protocol::receipt::verify_receipt(data, key);
        let _ = secllama_protocol::tree_head::verify_tree_head(data, key);
    });
});
