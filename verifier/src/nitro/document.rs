//! The AWS Nitro Enclaves attestation document: a COSE_Sign1 (RFC 9052 §4.2, tagged or untagged,
//! as the Nitro hypervisor emits it untagged) whose payload is the CBOR map AWS specifies
//! ("Nitro Enclaves attestation process", `AttestationDocument`): `module_id` text, `digest`
//! `"SHA384"`, `timestamp` (ms since the epoch), `pcrs` (index → 48 bytes), `certificate` (the
//! leaf, DER), `cabundle` (root first), and optional `public_key`, `user_data`, `nonce` (≤ 1024
//! bytes each, or null).
//!
//! Parsing collects every deviation instead of stopping at the first, so a rejected document
//! says everything wrong with it; nothing here is trusted before [`super::Document`] has checked
//! the signature and the chain.

use ciborium::Value;
use secllama_protocol::cbor;
use std::collections::BTreeMap;

/// Largest document accepted, bytes.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;
/// Largest `public_key`, `user_data` or `nonce`, bytes.
pub const MAX_USER_FIELD: usize = 1024;
/// COSE alg ES384.
pub const ES384: i64 = -35;

/// A parsed document (untrusted until appraised).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NitroDocument {
    /// The COSE protected header bytes (signed).
    pub protected: Vec<u8>,
    /// The payload bytes (signed).
    pub payload: Vec<u8>,
    /// The signature: r ‖ s, 48 bytes each.
    pub signature: Vec<u8>,
    /// The protected header's `alg`.
    pub alg: Option<i64>,
    /// `module_id`.
    pub module_id: String,
    /// `digest`.
    pub digest: String,
    /// `timestamp`, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// `pcrs`.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// `certificate`, DER.
    pub certificate: Vec<u8>,
    /// `cabundle`, DER, root first.
    pub cabundle: Vec<Vec<u8>>,
    /// `public_key`.
    pub public_key: Option<Vec<u8>>,
    /// `user_data`.
    pub user_data: Option<Vec<u8>>,
    /// `nonce`.
    pub nonce: Option<Vec<u8>>,
    /// Every deviation from the format found while parsing.
    pub problems: Vec<String>,
}

fn describe(v: &Value) -> String {
    cbor::describe_value(v)
}

impl NitroDocument {
    /// Parses `bytes`. `Err` only when nothing can be appraised (not CBOR, not a four-element
    /// array, no byte-string payload); lesser deviations are recorded in `problems`.
    ///
    /// # Errors
    /// A message saying what was expected and found.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value = cbor::decode("Nitro attestation document", bytes, MAX_DOCUMENT_LEN)
            .map_err(|e| e.to_string())?;
        let value = match value {
            Value::Tag(18, inner) => *inner,
            v => v,
        };
        let Value::Array(items) = value else {
            return Err(format!(
                "COSE_Sign1: expected an array of 4, found {}",
                describe(&value)
            ));
        };
        let [protected, unprotected, payload, signature]: [Value; 4] =
            items.try_into().map_err(|v: Vec<Value>| {
                format!("COSE_Sign1: expected 4 elements, found {}", v.len())
            })?;
        let mut d = NitroDocument::default();
        let bstr = |v: Value, what: &str| match v {
            Value::Bytes(b) => Ok(b),
            other => Err(format!(
                "{what}: expected a byte string, found {}",
                describe(&other)
            )),
        };
        d.protected = bstr(protected, "COSE_Sign1 protected header")?;
        d.payload = bstr(payload, "COSE_Sign1 payload")?;
        d.signature = bstr(signature, "COSE_Sign1 signature")?;
        match &unprotected {
            Value::Map(m) if m.is_empty() => {}
            Value::Map(_) => d
                .problems
                .push("COSE_Sign1 unprotected header: expected an empty map, found entries".into()),
            other => d.problems.push(format!(
                "COSE_Sign1 unprotected header: expected a map, found {}",
                describe(other)
            )),
        }
        d.read_protected();
        d.read_payload()?;
        Ok(d)
    }

    fn read_protected(&mut self) {
        let header = match cbor::decode("COSE protected header", &self.protected, 1024) {
            Ok(Value::Map(m)) => m,
            Ok(other) => {
                self.problems.push(format!(
                    "COSE protected header: expected a map, found {}",
                    describe(&other)
                ));
                return;
            }
            Err(e) => {
                self.problems.push(e.to_string());
                return;
            }
        };
        for (k, v) in header {
            match (
                k.as_integer().map(i128::from),
                v.as_integer().map(i128::from),
            ) {
                (Some(1), Some(alg)) => self.alg = i64::try_from(alg).ok(),
                _ => self.problems.push(format!(
                    "COSE protected header: expected only alg (1), found {} = {}",
                    describe(&k),
                    describe(&v)
                )),
            }
        }
    }

    fn read_payload(&mut self) -> Result<(), String> {
        let value = cbor::decode("Nitro attestation payload", &self.payload, MAX_DOCUMENT_LEN)
            .map_err(|e| e.to_string())?;
        let Value::Map(entries) = value else {
            return Err(format!(
                "payload: expected a map, found {}",
                describe(&value)
            ));
        };
        let mut seen = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_text().map(str::to_string) else {
                self.problems.push(format!(
                    "payload: expected text keys, found {}",
                    describe(&k)
                ));
                continue;
            };
            seen.push(key.clone());
            match (key.as_str(), v) {
                ("module_id", Value::Text(t)) if !t.is_empty() => self.module_id = t,
                ("digest", Value::Text(t)) => self.digest = t,
                ("timestamp", Value::Integer(i)) => {
                    self.timestamp_ms = u64::try_from(i128::from(i)).unwrap_or_default();
                }
                ("pcrs", Value::Map(m)) => self.read_pcrs(m),
                ("certificate", Value::Bytes(b)) => self.certificate = b,
                ("cabundle", Value::Array(a)) => {
                    for (i, c) in a.into_iter().enumerate() {
                        match c {
                            Value::Bytes(b) => self.cabundle.push(b),
                            other => self.problems.push(format!(
                                "cabundle[{i}]: expected a byte string, found {}",
                                describe(&other)
                            )),
                        }
                    }
                }
                (f @ ("public_key" | "user_data" | "nonce"), v) => {
                    let value = match v {
                        Value::Null => None,
                        Value::Bytes(b) if b.len() <= MAX_USER_FIELD => Some(b),
                        Value::Bytes(b) => {
                            self.problems.push(format!(
                                "{f}: expected at most {MAX_USER_FIELD} bytes, found {}",
                                b.len()
                            ));
                            None
                        }
                        other => {
                            self.problems.push(format!(
                                "{f}: expected bytes or null, found {}",
                                describe(&other)
                            ));
                            None
                        }
                    };
                    match f {
                        "public_key" => self.public_key = value,
                        "user_data" => self.user_data = value,
                        _ => self.nonce = value,
                    }
                }
                (k, other) => self.problems.push(format!(
                    "payload.{k}: unexpected field or type ({})",
                    describe(&other)
                )),
            }
        }
        for required in [
            "module_id",
            "digest",
            "timestamp",
            "pcrs",
            "certificate",
            "cabundle",
        ] {
            if !seen.iter().any(|s| s == required) {
                self.problems
                    .push(format!("payload.{required}: expected it, found none"));
            }
        }
        if !self.digest.is_empty() && self.digest != "SHA384" {
            self.problems.push(format!(
                "payload.digest: expected SHA384, found {}",
                self.digest
            ));
        }
        // Seconds instead of milliseconds (before 2001 as milliseconds).
        if self.timestamp_ms != 0 && self.timestamp_ms < 1_000_000_000_000 {
            self.problems.push(format!(
                "payload.timestamp: expected milliseconds since the epoch, found {} (seconds?)",
                self.timestamp_ms
            ));
        }
        Ok(())
    }

    fn read_pcrs(&mut self, m: Vec<(Value, Value)>) {
        if m.is_empty() || m.len() > 32 {
            self.problems
                .push(format!("pcrs: expected 1 to 32 entries, found {}", m.len()));
        }
        for (k, v) in m {
            let index = k
                .as_integer()
                .and_then(|i| u8::try_from(i128::from(i)).ok())
                .filter(|i| *i < 32);
            match (index, v) {
                (Some(i), Value::Bytes(b)) if b.len() == 48 => {
                    self.pcrs.insert(i, b);
                }
                (i, v) => self.problems.push(format!(
                    "pcrs: expected index 0-31 → 48 bytes, found {} → {}",
                    i.map_or_else(|| describe(&k), |i| i.to_string()),
                    describe(&v)
                )),
            }
        }
    }

    /// The COSE Sig_structure `["Signature1", protected, h'', payload]` (RFC 9052 §4.4).
    pub fn to_be_signed(&self) -> Result<Vec<u8>, String> {
        let v = Value::Array(vec![
            Value::Text("Signature1".into()),
            Value::Bytes(self.protected.clone()),
            Value::Bytes(Vec::new()),
            Value::Bytes(self.payload.clone()),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&v, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Debug mode: PCR0, PCR1 and PCR2 all zero.
    pub fn debug_mode(&self) -> bool {
        (0..3).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|b| *b == 0)))
    }
}
