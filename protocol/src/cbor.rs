//! Deterministic CBOR (RFC 8949 §4.2.1) encoding and strict decoding on top of ciborium.
//!
//! Encoding sorts every map by the bytewise order of its encoded keys and relies on ciborium's
//! shortest-form integers and definite lengths. Strict decoding accepts one item of at most a given
//! size, with no trailing bytes, no duplicate map keys (compared by value, at any depth, inside
//! keys too) and no bignums (tags 2 and 3: no format secllama reads uses them, and ciborium turns
//! some into integers and not others, so their re-encoding is not what was read) — and, for
//! formats we define, only the deterministic encoding: the input must equal the re-encoding of
//! what was decoded. Whatever [`decode`] accepts, [`to_vec`] re-encodes into bytes
//! [`decode_deterministic`] accepts as the same value.

use crate::{ProtocolError, Result};
pub use ciborium::Value;

/// Nesting depth ciborium is allowed while decoding untrusted input.
const MAX_DEPTH: usize = 32;

/// Encodes `value` deterministically: maps sorted by encoded key, shortest integers, definite lengths.
pub fn to_vec(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Map(entries) => {
            let mut encoded = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                encoded.push((to_vec(k)?, v));
            }
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            write_head(out, 5, encoded.len() as u64);
            for (k, v) in encoded {
                out.extend_from_slice(&k);
                write_canonical(v, out)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                write_canonical(item, out)?;
            }
            Ok(())
        }
        Value::Tag(tag, inner) => {
            write_head(out, 6, *tag);
            write_canonical(inner, out)
        }
        scalar => ciborium::ser::into_writer(scalar, &mut *out)
            .map_err(|e| ProtocolError::crypto("CBOR encoding", e)),
    }
}

/// Writes a CBOR head (major type and argument) in its shortest form.
fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Decodes exactly one CBOR item of at most `limit` bytes, rejecting trailing bytes and duplicate
/// map keys (at any depth). Non-canonical encodings are accepted: use [`decode_deterministic`] for
/// formats secllama defines.
pub fn decode(what: &str, bytes: &[u8], limit: usize) -> Result<Value> {
    if bytes.len() > limit {
        return Err(ProtocolError::TooLarge {
            what: what.into(),
            limit,
            found: bytes.len(),
        });
    }
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
        .map_err(|e| ProtocolError::Cbor {
            what: what.into(),
            reason: describe(&e),
        })?;
    if !rest.is_empty() {
        return Err(ProtocolError::TrailingBytes {
            what: what.into(),
            found: rest.len(),
        });
    }
    refuse_bignums(what, bytes)?;
    check_unique_keys(what, &value)?;
    Ok(value)
}

/// Refuses a bignum (tag 2 or 3, RFC 8949 §3.4.3) anywhere in `bytes`, one well-formed item (as
/// ciborium accepted it). Every head comes in order, so one pass over the heads, skipping string
/// contents, sees every tag.
fn refuse_bignums(what: &str, bytes: &[u8]) -> Result<()> {
    let malformed = || ProtocolError::Cbor {
        what: what.into(),
        reason: "a head that runs past the end of the input".into(),
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        let head = bytes[pos];
        let (major, info) = (head >> 5, head & 0x1f);
        let width = match info {
            0..=23 | 31 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(malformed()),
        };
        let arg_bytes = bytes.get(pos + 1..pos + 1 + width).ok_or_else(malformed)?;
        let arg = if width == 0 {
            u64::from(info)
        } else {
            arg_bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
        };
        pos += 1 + width;
        match major {
            // A definite string's content follows its head (an indefinite one's chunks are heads).
            2 | 3 if info != 31 => {
                let len = usize::try_from(arg).map_err(|_| malformed())?;
                pos = pos.checked_add(len).ok_or_else(malformed)?;
            }
            6 if arg == 2 || arg == 3 => {
                return Err(ProtocolError::Cbor {
                    what: what.into(),
                    reason: format!(
                        "a bignum (tag {arg}) at byte offset {}: no secllama format uses them",
                        pos - 1 - width
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Like [`decode`], and additionally requires the input to be in deterministic form.
pub fn decode_deterministic(what: &str, bytes: &[u8], limit: usize) -> Result<Value> {
    let value = decode(what, bytes, limit)?;
    if to_vec(&value)? != bytes {
        return Err(ProtocolError::NotDeterministic { what: what.into() });
    }
    Ok(value)
}

fn describe<T: std::fmt::Debug>(e: &ciborium::de::Error<T>) -> String {
    match e {
        ciborium::de::Error::Io(_) => "the input ending inside an item".into(),
        ciborium::de::Error::Syntax(off) => format!("a syntax error at byte offset {off}"),
        ciborium::de::Error::Semantic(off, msg) => match off {
            Some(o) => format!("{msg} at byte offset {o}"),
            None => msg.clone(),
        },
        ciborium::de::Error::RecursionLimitExceeded => {
            format!("nesting deeper than {MAX_DEPTH} levels")
        }
    }
}

fn check_unique_keys(what: &str, value: &Value) -> Result<()> {
    match value {
        Value::Map(entries) => {
            let mut keys = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                // Keys may be maps too: no duplicates inside them either. Compared by value: the
                // deterministic encoding of what was decoded (bignums, the one way ciborium keeps
                // two encodings of one value apart, are refused before).
                check_unique_keys(what, k)?;
                keys.push(to_vec(k)?);
                check_unique_keys(what, v)?;
            }
            keys.sort();
            if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
                let key = decode(what, &w[0], usize::MAX).map(|k| describe_value(&k));
                return Err(ProtocolError::DuplicateKey {
                    what: what.into(),
                    key: key.unwrap_or_else(|_| "?".into()),
                });
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|i| check_unique_keys(what, i)),
        Value::Tag(_, inner) => check_unique_keys(what, inner),
        _ => Ok(()),
    }
}

/// A short human description of a value, for error messages (never prints byte contents).
pub fn describe_value(v: &Value) -> String {
    match v {
        Value::Integer(i) => format!("integer {}", i128::from(*i)),
        Value::Bytes(b) => format!("byte string of {} bytes", b.len()),
        Value::Float(_) => "a float".into(),
        Value::Text(t) if t.len() <= 64 => format!("text {t:?}"),
        Value::Text(t) => format!("text of {} bytes", t.len()),
        Value::Bool(b) => format!("bool {b}"),
        Value::Null => "null".into(),
        Value::Tag(t, _) => format!("tag {t}"),
        Value::Array(a) => format!("array of {} items", a.len()),
        Value::Map(m) => format!("map of {} entries", m.len()),
        _ => "an unsupported CBOR value".into(),
    }
}

/// A map key in one of secllama's formats: an integer label (EAT, COSE) or a text label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// An integer label.
    Int(i64),
    /// A text label.
    Text(&'static str),
}

impl Key {
    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Key::Int(k), Value::Integer(i)) => i128::from(*i) == i128::from(*k),
            (Key::Text(k), Value::Text(t)) => t == k,
            _ => false,
        }
    }

    /// The key as a CBOR value.
    pub fn value(&self) -> Value {
        match self {
            Key::Int(i) => Value::Integer((*i).into()),
            Key::Text(t) => Value::Text((*t).into()),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// Builds a map from `(key, value)` pairs; [`to_vec`] sorts it.
pub fn map(entries: Vec<(Key, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (k.value(), v)).collect())
}

/// Reads the fields of a decoded map one by one and fails on any key left unread.
pub struct MapReader {
    what: String,
    entries: Vec<(Value, Value)>,
    known: Vec<Key>,
}

impl MapReader {
    /// Starts reading `value`, which must be a map; `what` names it in errors.
    pub fn new(what: impl Into<String>, value: Value) -> Result<Self> {
        let what = what.into();
        match value {
            Value::Map(entries) => Ok(Self {
                what,
                entries,
                known: Vec::new(),
            }),
            other => Err(ProtocolError::WrongType {
                field: what,
                expected: "a map".into(),
                found: describe_value(&other),
            }),
        }
    }

    fn field(&self, key: Key) -> String {
        format!("{}.{}", self.what, key)
    }

    /// Removes and returns the value at `key`, if present.
    pub fn take(&mut self, key: Key) -> Option<Value> {
        self.known.push(key);
        let pos = self.entries.iter().position(|(k, _)| key.matches(k))?;
        Some(self.entries.swap_remove(pos).1)
    }

    /// Removes and returns the value at `key`, which must be present.
    pub fn require(&mut self, key: Key, expected: &str) -> Result<Value> {
        let field = self.field(key);
        self.take(key).ok_or(ProtocolError::Missing {
            field,
            expected: expected.into(),
        })
    }

    /// A required byte string.
    pub fn bytes(&mut self, key: Key) -> Result<Vec<u8>> {
        let field = self.field(key);
        as_bytes(&field, self.require(key, "a byte string")?)
    }

    /// A required byte string of exactly `N` bytes.
    pub fn array<const N: usize>(&mut self, key: Key) -> Result<[u8; N]> {
        let field = self.field(key);
        let b = self.bytes(key)?;
        let n = b.len();
        b.try_into()
            .map_err(|_| ProtocolError::length(field, N.to_string(), n))
    }

    /// An optional byte string.
    pub fn opt_bytes(&mut self, key: Key) -> Result<Option<Vec<u8>>> {
        let field = self.field(key);
        self.take(key).map(|v| as_bytes(&field, v)).transpose()
    }

    /// A required text string.
    pub fn text(&mut self, key: Key) -> Result<String> {
        let field = self.field(key);
        match self.require(key, "a text string")? {
            Value::Text(t) => Ok(t),
            other => Err(wrong(field, "a text string", &other)),
        }
    }

    /// A required unsigned integer.
    pub fn uint(&mut self, key: Key) -> Result<u64> {
        let field = self.field(key);
        let v = self.require(key, "an unsigned integer")?;
        as_uint(&field, &v)
    }

    /// A required nested map, read with its own reader.
    pub fn map(&mut self, key: Key) -> Result<MapReader> {
        let field = self.field(key);
        MapReader::new(field, self.require(key, "a map")?)
    }

    /// An optional nested map.
    pub fn opt_map(&mut self, key: Key) -> Result<Option<MapReader>> {
        let field = self.field(key);
        self.take(key).map(|v| MapReader::new(field, v)).transpose()
    }

    /// The entries not yet read (for maps with free-form keys); consumes the reader.
    pub fn into_entries(self) -> (String, Vec<(Value, Value)>) {
        (self.what, self.entries)
    }

    /// Ends reading: any key not read is an error.
    pub fn finish(self) -> Result<()> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, _)) => Err(ProtocolError::UnexpectedKey {
                what: self.what,
                expected: self
                    .known
                    .iter()
                    .map(Key::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                key: describe_value(k),
            }),
        }
    }
}

fn wrong(field: impl Into<String>, expected: &str, found: &Value) -> ProtocolError {
    ProtocolError::WrongType {
        field: field.into(),
        expected: expected.into(),
        found: describe_value(found),
    }
}

/// The bytes of a byte-string value.
pub fn as_bytes(field: &str, v: Value) -> Result<Vec<u8>> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(wrong(field, "a byte string", &other)),
    }
}

/// The value of an unsigned-integer value.
pub fn as_uint(field: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| wrong(field, "an unsigned integer", v)),
        other => Err(wrong(field, "an unsigned integer", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_bytewise_and_uses_shortest_forms() {
        let v = map(vec![
            (Key::Text("b"), Value::Integer(1000.into())),
            (Key::Int(-1), Value::Bool(true)),
            (Key::Int(10), Value::Bytes(vec![1; 24])),
            (Key::Int(265), Value::Null),
        ]);
        let bytes = to_vec(&v).unwrap();
        // 10 (0x0a) < 265 (0x19 01 09) < -1 (0x20) < "b" (0x61 62): RFC 8949 §4.2.1 bytewise order.
        let expected = format!("a40a5818{}190109f620f561621903e8", "01".repeat(24));
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(
            decode_deterministic("t", &bytes, 1 << 16).unwrap(),
            to_value(&bytes)
        );
    }

    fn to_value(b: &[u8]) -> Value {
        ciborium::de::from_reader(b).unwrap()
    }

    #[test]
    fn rejects_trailing_duplicate_unsorted_long_form_and_oversize() {
        assert!(matches!(
            decode("t", &[0x01, 0x02], 10),
            Err(ProtocolError::TrailingBytes { found: 1, .. })
        ));
        // {1: 1, 1: 2}
        assert!(matches!(
            decode("t", &[0xa2, 0x01, 0x01, 0x01, 0x02], 10),
            Err(ProtocolError::DuplicateKey { .. })
        ));
        // {2: 0, 1: 0} is well formed but unsorted.
        assert!(decode("t", &[0xa2, 0x02, 0x00, 0x01, 0x00], 10).is_ok());
        assert!(matches!(
            decode_deterministic("t", &[0xa2, 0x02, 0x00, 0x01, 0x00], 10),
            Err(ProtocolError::NotDeterministic { .. })
        ));
        // 1 encoded in two bytes.
        assert!(matches!(
            decode_deterministic("t", &[0x18, 0x01], 10),
            Err(ProtocolError::NotDeterministic { .. })
        ));
        // Indefinite-length byte string.
        assert!(matches!(
            decode_deterministic("t", &[0x5f, 0x41, 0x00, 0xff], 10),
            Err(ProtocolError::NotDeterministic { .. })
        ));
        assert!(matches!(
            decode("t", &[0u8; 11], 10),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    /// Found by fuzzing (issue 16; the inputs are in `../shared/cases/cbor/`, read by
    /// `protocol/tests/cbor_cases.rs`): bignums in every form, duplicate keys that differ only in
    /// encoding, and duplicates inside a key.
    #[test]
    fn bignums_duplicates_by_value_and_inside_keys_are_refused() {
        for (bytes, expect) in [
            (&[0xc3, 0x5f, 0xff][..], "bignum (tag 3)"),
            (&[0xc2, 0x41, 0x05], "bignum (tag 2)"),
            (&[0xc3, 0x40], "bignum (tag 3)"),
            (
                &[0x82, 0x01, 0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                "bignum (tag 2)",
            ),
            (
                &[0xa2, 0xc3, 0x5f, 0xff, 0x00, 0x20, 0x00],
                "bignum (tag 3)",
            ),
            (&[0xa1, 0xa2, 0x01, 0x00, 0x01, 0x00, 0x00], "integer 1"),
            (&[0xa2, 0x18, 0x01, 0x00, 0x01, 0x00], "integer 1"),
            (
                &[0xa2, 0x5f, 0x41, 0x61, 0xff, 0x00, 0x41, 0x61, 0x00],
                "byte string",
            ),
        ] {
            for e in [
                decode("t", bytes, 64).unwrap_err(),
                decode_deterministic("t", bytes, 64).unwrap_err(),
            ] {
                assert!(
                    e.to_string().contains(expect),
                    "{}: {e}",
                    hex::encode(bytes)
                );
            }
        }
        // A half-precision NaN with a payload (fuzzing, `fuzz/seeds/cbor/nan-half-payload.bin`):
        // accepted, and its re-encoding (the canonical NaN) accepted strictly.
        let nan = decode("t", &[0xf9, 0xff, 0x00], 64).unwrap();
        let again = to_vec(&nan).unwrap();
        assert_eq!(
            to_vec(&decode_deterministic("t", &again, 64).unwrap()).unwrap(),
            again
        );
        // A tag 2 or 3 byte inside a string is content, not a tag.
        assert!(decode_deterministic("t", &[0x42, 0xc2, 0xc3], 64).is_ok());
        assert!(decode_deterministic("t", &[0x62, 0x61, 0x62], 64).is_ok());
    }

    proptest::proptest! {
        /// Whatever `decode` accepts re-encodes into bytes `decode_deterministic` accepts as the
        /// same value (the property the fuzzer broke).
        #[test]
        fn decode_is_closed_under_the_encoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..48)) {
            if let Ok(v) = decode("t", &bytes, 64) {
                let again = to_vec(&v).unwrap();
                proptest::prop_assert_eq!(decode_deterministic("t", &again, 1 << 16).unwrap(), v);
            }
        }
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        // A byte string claiming 2^63 bytes, an array claiming 2^32 items, a map claiming 2^32 entries.
        for input in [
            vec![0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2],
            vec![0x9a, 0xff, 0xff, 0xff, 0xff, 0x01],
            vec![0xba, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01],
        ] {
            assert!(decode("t", &input, 1 << 16).is_err());
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x81u8; 10_000];
        assert!(decode("t", &deep, 1 << 16).is_err());
    }

    #[test]
    fn map_reader_names_fields_and_rejects_unknown_keys() {
        let v = map(vec![
            (Key::Int(1), Value::Text("x".into())),
            (Key::Text("z"), Value::Null),
        ]);
        let mut r = MapReader::new("doc", v).unwrap();
        let e = r.uint(Key::Int(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "doc.1: expected an unsigned integer, found text \"x\""
        );
        let e = r.finish().unwrap_err();
        assert!(e.to_string().contains("unknown key text \"z\""), "{e}");
    }
}
