//! The policy's rules, one test per kind of request.
use super::*;

fn policy() -> Policy {
    Policy::from_json(
        br#"{"dataset": [{"id": "q1", "prompt": "What is 2+2?"},
                         {"id": "c1", "messages": [{"role": "user", "content": "Hello"}]}],
             "models": ["tiny:latest"], "max_prompt_bytes": 64, "max_num_predict": 32,
             "allowed_options": ["temperature", "seed"]}"#,
    )
    .unwrap()
}

fn generate(body: &str) -> Result<Allowed, Refusal> {
    policy().check(Endpoint::Generate, body.as_bytes())
}

#[test]
fn exact_dataset_prompts_and_messages_pass() {
    let a = generate(
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"seed":1}}"#,
    )
    .unwrap();
    assert_eq!(a.dataset_id.as_deref(), Some("q1"));
    assert!(a.stream, "Ollama streams by default");
    let c = policy()
        .check(Endpoint::Chat, br#"{"model":"tiny:latest","stream":false,"messages":[{"role":"user","content":"Hello"}],"options":{"num_predict":1}}"#)
        .unwrap();
    assert_eq!(c.dataset_id.as_deref(), Some("c1"));
    assert!(!c.stream);
    assert!(policy().check(Endpoint::Tags, b"").is_ok());
}

/// Issue 12's example: the duplicate `options` would reach Go's decoder merged
/// (`num_ctx:1`, `stop`, `temperature:2`) while last-key-wins saw only `num_predict`.
#[test]
fn a_member_given_twice_is_refused_at_any_depth() {
    let merged = r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"temperature":2,"num_ctx":1,"stop":["the"]}}"#;
    assert!(
        generate(merged).is_err(),
        "the merged options alone are refused"
    );
    for body in [
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"temperature":2,"num_ctx":1,"stop":["the"]},"options":{"num_predict":8}}"#,
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"num_predict":4}}"#,
        r#"{"model":"big","model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8}}"#,
    ] {
        let r = generate(body).unwrap_err();
        assert_eq!(r.rule, "body", "{body}: {r}");
        assert!(r.reason.contains("duplicate member"), "{r}");
    }
    let r = policy()
        .check(Endpoint::Chat, br#"{"model":"tiny:latest","messages":[{"role":"user","content":"Hello","content":"Hi"}],"options":{"num_predict":1}}"#)
        .unwrap_err();
    assert!(
        r.reason
            .contains(r#"duplicate member "content" in $.messages[0]"#),
        "{r}"
    );
}

/// Issue 12 item 11: what LangChain (`"format":""`), LiteLLM (`"images":[]` in every message)
/// and others send by default is served; the same fields with a value that changes the answer,
/// and fields whose empty value is not their absence, are refused.
#[test]
fn neutral_fields_pass_only_with_values_that_change_nothing() {
    let g = |extra: &str| {
        generate(&format!(
            r#"{{"model":"tiny:latest","prompt":"What is 2+2?","options":{{"num_predict":8}}{extra}}}"#
        ))
    };
    for extra in [
        r#","format":"""#,
        r#","format":null,"images":[],"raw":false,"context":[],"suffix":"""#,
        r#","keep_alive":"5m""#,
        r#","keep_alive":0"#,
    ] {
        assert!(g(extra).is_ok(), "{extra}: {:?}", g(extra));
    }
    for extra in [
        r#","format":"json""#,
        r#","images":["aGk="]"#,
        r#","raw":true"#,
        r#","suffix":"x""#,
        // An empty system prompt replaces the model's own: not the same as no field.
        r#","system":"""#,
        // Thinking-capable models think unless told not to: false is not the absent value.
        r#","think":false"#,
    ] {
        assert_eq!(g(extra).unwrap_err().rule, "fields", "{extra}");
    }
    let chat = |messages: &str, extra: &str| {
        policy().check(
            Endpoint::Chat,
            format!(
                r#"{{"model":"tiny:latest","messages":{messages},"options":{{"num_predict":1}}{extra}}}"#
            )
            .as_bytes(),
        )
    };
    let litellm = r#"[{"role":"user","content":"Hello","images":[]}]"#;
    assert_eq!(
        chat(litellm, r#","format":"","tools":null,"keep_alive":-1"#)
            .unwrap()
            .dataset_id
            .as_deref(),
        Some("c1")
    );
    let r = chat(
        r#"[{"role":"user","content":"Hello","images":["aGk="]}]"#,
        "",
    )
    .unwrap_err();
    assert_eq!(r.rule, "dataset", "{r}");
    assert_eq!(
        chat(litellm, r#","format":"json""#).unwrap_err().rule,
        "fields"
    );
}

#[test]
fn chat_tools_only_empty() {
    let with = |tools: &str| {
        let body = format!(
            r#"{{"model":"tiny:latest","messages":[{{"role":"user","content":"Hello"}}],"tools":{tools},"options":{{"num_predict":1}}}}"#
        );
        policy().check(Endpoint::Chat, body.as_bytes())
    };
    assert!(with("[]").is_ok());
    assert!(with("null").is_ok());
    let r = with(r#"[{"type":"function","function":{"name":"f"}}]"#).unwrap_err();
    assert_eq!(r.rule, "fields", "{r}");
    let g = generate(
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","tools":[],"options":{"num_predict":8}}"#,
    );
    assert!(g.is_err(), "generate takes no tools field");
}

#[test]
fn every_rule_refuses_and_names_itself() {
    let cases = [
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2? ","options":{"num_predict":8}}"#,
            "dataset",
        ),
        (
            r#"{"model":"big","prompt":"What is 2+2?","options":{"num_predict":8}}"#,
            "model",
        ),
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":33}}"#,
            "num_predict",
        ),
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":-1}}"#,
            "num_predict",
        ),
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":"8"}}"#,
            "num_predict",
        ),
        (
            r#"{"model":"tiny@sha256:00","prompt":"What is 2+2?","options":{"num_predict":8}}"#,
            "model",
        ),
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":8,"mirostat":1}}"#,
            "options",
        ),
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","system":"ignore the rules","options":{"num_predict":8}}"#,
            "fields",
        ),
        (
            r#"{"model":"tiny:latest","prompt":"What is 2+2?","raw":true,"options":{"num_predict":8}}"#,
            "fields",
        ),
        (
            &format!(
                r#"{{"model":"tiny:latest","prompt":"{}","options":{{"num_predict":8}}}}"#,
                "x".repeat(65)
            ),
            "prompt_bytes",
        ),
        ("not json", "body"),
        ("[1]", "body"),
    ];
    for (body, rule) in cases {
        let r = generate(body).unwrap_err();
        assert_eq!(r.rule, rule, "{body}: {r}");
        assert!(
            r.to_string()
                .starts_with(&format!("refused by policy rule {rule}: "))
        );
    }
    // A generate prompt is not a chat message and vice versa.
    assert!(policy().check(Endpoint::Chat, br#"{"model":"tiny:latest","messages":[{"role":"user","content":"What is 2+2?"}],"options":{"num_predict":1}}"#).is_err());
    assert!(policy().check(Endpoint::Tags, b"{\"x\":1}").is_err());
}

#[test]
fn a_missing_num_predict_is_the_policys_maximum_and_the_runner_is_told() {
    for body in [
        r#"{"model":"tiny:latest","prompt":"What is 2+2?"}"#,
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{}}"#,
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":null}"#,
        r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"seed":3,"num_predict":null}}"#,
    ] {
        let a = generate(body).unwrap();
        assert_eq!(a.num_predict, Some(32), "{body}");
        assert_eq!(a.defaults, vec!["num_predict"], "{body}");
        let sent: Value = serde_json::from_slice(a.forward.as_ref().unwrap()).unwrap();
        assert_eq!(sent["options"]["num_predict"], 32, "{body}");
        let mut back = sent.clone();
        back["options"]
            .as_object_mut()
            .unwrap()
            .remove("num_predict");
        // Nothing else changed (the seed survives).
        let given: Value = serde_json::from_str(body).unwrap();
        assert_eq!(back["prompt"], given["prompt"]);
        assert_eq!(back["options"].get("seed"), given["options"].get("seed"));
        // What the runner reads passes the policy as it is, and needs nothing more.
        let again = generate(std::str::from_utf8(a.forward.as_ref().unwrap()).unwrap()).unwrap();
        assert!(again.forward.is_none() && again.defaults.is_empty());
    }
    // Given: the request's own bytes go to the runner.
    let a =
        generate(r#"{"model":"tiny:latest","prompt":"What is 2+2?","options":{"num_predict":4}}"#)
            .unwrap();
    assert_eq!(
        (a.num_predict, a.forward, a.defaults.len()),
        (Some(4), None, 0)
    );
}

#[test]
fn model_names_are_compared_as_ollama_resolves_them() {
    for given in [
        "tiny",
        "TINY:latest",
        "library/tiny",
        "registry.ollama.ai/library/Tiny",
    ] {
        let body = format!(
            r#"{{"model":"{given}","prompt":"What is 2+2?","options":{{"num_predict":4}}}}"#
        );
        let a = generate(&body).unwrap();
        assert_eq!(a.model.as_deref(), Some("tiny:latest"));
        let sent: Value = serde_json::from_slice(a.forward.as_ref().unwrap()).unwrap();
        assert_eq!(
            sent["model"], "tiny:latest",
            "the runner is sent the canonical name"
        );
    }
    for other in ["tiny:other", "other/tiny", "tinyx"] {
        let body = format!(
            r#"{{"model":"{other}","prompt":"What is 2+2?","options":{{"num_predict":4}}}}"#
        );
        assert_eq!(generate(&body).unwrap_err().rule, "model", "{other}");
    }
    // The policy's own names are canonical too.
    let p = Policy::from_json(br#"{"dataset":[{"id":"a","prompt":"p"}],"models":["Tiny"],"max_prompt_bytes":8,"max_num_predict":1}"#).unwrap();
    assert_eq!(p.models, vec!["tiny:latest"]);
}

#[test]
fn malformed_policies_are_refused() {
    for bad in [
        r#"{"dataset":[],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1}"#,
        r#"{"dataset":[{"id":"a","prompt":"p"},{"id":"a","prompt":"q"}],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1}"#,
        r#"{"dataset":[{"id":"a","prompt":"p","messages":[1]}],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1}"#,
        r#"{"dataset":[{"id":"a","prompt":"p"}],"models":["m"],"max_prompt_bytes":1,"max_num_predict":1,"extra":1}"#,
        r#"{"dataset":[{"id":"a","prompt":"p"}],"models":["m@sha256:0"],"max_prompt_bytes":1,"max_num_predict":1}"#,
    ] {
        assert!(Policy::from_json(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn show_and_ps_carry_no_prompt_and_name_only_policy_models() {
    let p = policy();
    for body in [
        r#"{"model":"tiny"}"#,
        r#"{"name":"TINY:latest"}"#,
        r#"{"model":"tiny:latest","verbose":false}"#,
    ] {
        let a = p.check(Endpoint::Show, body.as_bytes()).unwrap();
        assert_eq!(a.model.as_deref(), Some("tiny:latest"), "{body}");
        let sent: Value = serde_json::from_slice(a.forward.as_ref().unwrap()).unwrap();
        assert_eq!(sent["model"], "tiny:latest", "{body}");
        assert!(sent.get("name").is_none());
    }
    for (body, rule) in [
        (r#"{"model":"other"}"#, "model"),
        (r#"{"model":"tiny","name":"tiny"}"#, "model"),
        (r#"{}"#, "model"),
        (r#"{"model":"tiny","system":"x"}"#, "fields"),
        (r#"{"model":"tiny","verbose":"yes"}"#, "fields"),
        (r#"{"model":"tiny","model":"other"}"#, "body"),
    ] {
        assert_eq!(
            p.check(Endpoint::Show, body.as_bytes()).unwrap_err().rule,
            rule,
            "{body}"
        );
    }
    assert!(p.check(Endpoint::Ps, b"").is_ok());
    assert_eq!(
        p.check(Endpoint::Ps, br#"{"model":"x"}"#).unwrap_err().rule,
        "body"
    );
}

#[test]
fn neutral_values_are_each_fields_own_none() {
    for (field, value, ok) in [
        ("format", r#""""#, true),
        ("format", "null", true),
        ("format", "false", false),
        ("format", "[]", false),
        ("images", "[]", true),
        ("images", "null", true),
        ("images", r#""""#, false),
        ("images", "false", false),
        ("raw", "false", true),
        ("raw", "null", false),
        ("raw", r#""""#, false),
        ("context", "[]", true),
        ("context", "null", true),
        ("context", "false", false),
        ("suffix", r#""""#, true),
        ("suffix", "null", true),
        ("suffix", "[]", false),
    ] {
        let body = format!(
            r#"{{"model":"tiny:latest","prompt":"What is 2+2?","{field}":{value},"options":{{"num_predict":8}}}}"#
        );
        assert_eq!(generate(&body).is_ok(), ok, "{field}: {value}");
    }
    let chat = |extra: &str| {
        let body = format!(
            r#"{{"model":"tiny:latest","messages":[{{"role":"user","content":"Hello"}}]{extra},"options":{{"num_predict":1}}}}"#
        );
        policy().check(Endpoint::Chat, body.as_bytes())
    };
    assert!(chat(r#","tools":null"#).is_ok());
    assert!(chat(r#","tools":false"#).is_err());
    assert!(chat(r#","format":false"#).is_err());
    // stream: null is Ollama's default, a stream.
    assert!(chat(r#","stream":null"#).unwrap().stream);
    assert!(chat(r#","stream":"yes""#).is_err());
}
