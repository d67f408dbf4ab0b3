//! The `log` part of the attestation document (DESIGN.md "Receipts and log"): the receipt log's
//! size and root now, its identity key, and its latest signed tree head. The head must verify
//! under that key, count no more entries than the document states, and state the same root when
//! it counts as many. The log id, the head's size, time and TPM counter become `secllama.claims`
//! (`log.id`, `log.head_size`, `log.head_time_ms`, `log.head_counter`) so a client can keep them
//! and check the next head's consistency and counter against them.

use secllama_protocol::attestation::LogState;
use secllama_protocol::tree_head::{TreeHead, verify_tree_head};

/// Checks the log part; returns the verified head, or what failed.
pub fn appraise(log: &LogState) -> Result<TreeHead, String> {
    let head = verify_tree_head(&log.head, &log.key).map_err(|e| {
        format!("log head: expected a tree head signed by the document's log key: {e}")
    })?;
    if head.size > log.size {
        return Err(format!(
            "log head: expected at most the document's {} entries, found a head of {}",
            log.size, head.size
        ));
    }
    if head.size == log.size && head.root != log.root {
        return Err(format!(
            "log head: expected the document's root {} for size {}, found {}",
            log.root.to_hex(),
            log.size,
            head.root.to_hex()
        ));
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_core::OsRng;
    use secllama_protocol::Sha256Digest;
    use secllama_protocol::cose::SigningKey;
    use secllama_protocol::tree_head::sign_tree_head;

    fn state(
        key: &SigningKey,
        signer: &SigningKey,
        head_size: u64,
        size: u64,
        same_root: bool,
    ) -> LogState {
        let root = Sha256Digest([1; 32]);
        let head = TreeHead {
            log_id: signer.public().kid().unwrap(),
            size: head_size,
            root: if same_root {
                root
            } else {
                Sha256Digest([2; 32])
            },
            time_ms: 5,
            counter: 9,
        };
        LogState {
            size,
            root,
            key: key.public(),
            head: sign_tree_head(&head, signer).unwrap(),
        }
    }

    #[test]
    fn the_head_must_be_the_log_keys_and_within_the_document() {
        let k = SigningKey::generate(&mut OsRng);
        let other = SigningKey::generate(&mut OsRng);
        assert_eq!(appraise(&state(&k, &k, 3, 3, true)).unwrap().counter, 9);
        // An older head (fewer entries) states another root: fine.
        assert!(appraise(&state(&k, &k, 2, 3, false)).is_ok());
        for (s, why) in [
            (
                state(&k, &other, 3, 3, true),
                "signed by the document's log key",
            ),
            (
                state(&k, &k, 4, 3, true),
                "at most the document's 3 entries",
            ),
            (state(&k, &k, 3, 3, false), "the document's root"),
        ] {
            let e = appraise(&s).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut s = state(&k, &k, 3, 3, true);
        s.head.truncate(10);
        assert!(appraise(&s).is_err());
    }
}
