//! The evaluation policy (`enclave/src/policy`): policy files, and the decision on a request
//! body for every sealed endpoint (first input byte: the endpoint; `0xff`: the body is a policy
//! file). Properties: an allowed body is I-JSON; the bytes the runner reads (the rewritten body,
//! or the request's own) are allowed again for the same dataset entry, model, stream and
//! `num_predict` and need no further rewriting (the decision is a fixed point); a refusal names
//! one of the documented rules; a policy file that loads has canonical model names and unique ids.
#![no_main]
use libfuzzer_sys::fuzz_target;
use secllama_enclave::policy::{Endpoint, Policy};
use std::sync::OnceLock;

/// The policy every decision is made under (the shapes of enclave/src/policy/tests.rs and the
/// demo's: a generate prompt, a chat conversation, options allowed and not).
const POLICY: &[u8] = br#"{"dataset": [{"id": "q1", "prompt": "What is 2+2?"},
  {"id": "q2", "prompt": "Name a primary colour."},
  {"id": "c1", "messages": [{"role": "user", "content": "Hello"}]},
  {"id": "c2", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]}],
  "models": ["tiny:latest", "smollm2:135m"], "max_prompt_bytes": 256, "max_num_predict": 32,
  "allowed_options": ["temperature", "seed", "stop"]}"#;

const RULES: [&str; 7] = [
    "body",
    "fields",
    "model",
    "prompt_bytes",
    "options",
    "num_predict",
    "dataset",
];

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::from_json(POLICY).expect("the fuzz policy loads"))
}

fuzz_target!(|data: &[u8]| {
    let policy = policy();
    secllama_fuzz_bounds::decided(data, || {
        let Some((&which, body)) = data.split_first() else {
            return;
        };
        if which == 0xff {
            if let Ok(p) = Policy::from_json(body) {
                for m in &p.models {
                    let canonical = secllama_protocol::ollama_name::canonical(m);
                    assert_eq!(canonical.as_deref().ok(), Some(m.as_str()));
                }
                let ids: std::collections::BTreeSet<_> = p.dataset.iter().map(|e| &e.id).collect();
                assert_eq!(ids.len(), p.dataset.len(), "dataset ids are unique");
            }
            return;
        }
        let endpoint = [
            Endpoint::Generate,
            Endpoint::Chat,
            Endpoint::Show,
            Endpoint::Tags,
            Endpoint::Ps,
        ][usize::from(which) % 5];
        match policy.check(endpoint, body) {
            Err(r) => assert!(RULES.contains(&r.rule), "unknown rule {}", r.rule),
            Ok(a) => {
                let runner = a.forward.clone().unwrap_or_else(|| body.to_vec());
                if matches!(endpoint, Endpoint::Tags | Endpoint::Ps) {
                    assert!(runner.is_empty() || runner == b"{}");
                    return;
                }
                secllama_protocol::ijson::from_slice(&runner)
                    .expect("what the runner reads has unique member names");
                let again = policy
                    .check(endpoint, &runner)
                    .expect("what the runner reads is allowed too");
                assert_eq!(
                    (
                        &again.dataset_id,
                        &again.model,
                        again.stream,
                        again.num_predict
                    ),
                    (&a.dataset_id, &a.model, a.stream, a.num_predict),
                    "the runner's bytes decide as the request's did"
                );
                assert!(
                    again.defaults.is_empty(),
                    "the runner's bytes need no default"
                );
                assert!(
                    again.forward.is_none() || again.forward.as_deref() == Some(&runner[..]),
                    "the runner's bytes need no rewriting"
                );
            }
        }
    });
});
