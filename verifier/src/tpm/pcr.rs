//! TPM 2.0 Part 2 §10.6 `TPMS_PCR_SELECTION` / §10.9.7 `TPML_PCR_SELECTION`, the PCR values a
//! verifier is given, and the quote's PCR digest (Part 3 §18.4: the digest of the selected PCR values
//! concatenated in selection order).
//!
//! Also reads the two ways `tpm2_checkquote` takes PCRs: a tpm2-tools selection string
//! (`sha1:0,1+sha256:0,1,16`) with raw values concatenated in that order (`tpm2_pcrread -o`), and a
//! JSON map `{"sha256": {"0": "<hex>", ...}}`.

use super::alg::{HashAlg, parse_hash_alg};
use super::error::{Result, TpmError};
use super::marshal::Reader;
use std::collections::BTreeMap;

/// A PCR index (0..=255; a PC-client TPM has 0..=23).
pub type PcrIndex = u32;

/// Largest PCR index a selection may name (a `sizeofSelect` of 32 bytes).
pub const MAX_PCR_INDEX: PcrIndex = 255;
/// Largest `TPML_PCR_SELECTION.count` read (`HASH_COUNT` is far smaller on any real TPM).
const MAX_BANKS: u32 = 16;
/// `PCR_SELECT_MIN`: the `sizeofSelect` a TPM with 24 PCRs uses.
const PCR_SELECT_MIN: usize = 3;

/// One `TPMS_PCR_SELECTION`: a bank and the PCRs selected in it, ascending (bitmap order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrBankSelection {
    /// The bank (`hash`).
    pub bank: HashAlg,
    /// The selected PCR indices, ascending and without repeats.
    pub pcrs: Vec<PcrIndex>,
}

/// A `TPML_PCR_SELECTION`: banks in the order the TPM hashes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelection {
    /// The banks, in order.
    pub banks: Vec<PcrBankSelection>,
}

impl PcrSelection {
    /// Reads a `TPML_PCR_SELECTION`.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let at = r.offset();
        let count = r.u32("pcrSelect.count")?;
        if count > MAX_BANKS {
            return Err(r.invalid_at(
                "pcrSelect.count",
                at,
                format!("at most {MAX_BANKS} banks"),
                count.to_string(),
            ));
        }
        let mut banks = Vec::new();
        for _ in 0..count {
            let at = r.offset();
            let id = r.u16("pcrSelect.hash")?;
            let bank = HashAlg::from_alg_id(id).ok_or_else(|| {
                r.invalid_at(
                    "pcrSelect.hash",
                    at,
                    "a SHA-1, SHA-256, SHA-384 or SHA-512 bank",
                    super::alg::alg_name(id),
                )
            })?;
            let at = r.offset();
            let size = usize::from(r.u8("pcrSelect.sizeofSelect")?);
            if size > (MAX_PCR_INDEX as usize + 1) / 8 {
                return Err(r.invalid_at(
                    "pcrSelect.sizeofSelect",
                    at,
                    "at most 32 bytes",
                    size.to_string(),
                ));
            }
            let bitmap = r.bytes("pcrSelect.pcrSelect", size)?;
            let pcrs = bitmap
                .iter()
                .enumerate()
                .flat_map(|(byte, bits)| {
                    (0..8u32)
                        .filter(move |bit| bits & (1 << bit) != 0)
                        .map(move |bit| byte as u32 * 8 + bit)
                })
                .collect();
            banks.push(PcrBankSelection { bank, pcrs });
        }
        Ok(Self { banks })
    }

    /// The marshalled `TPML_PCR_SELECTION` (`sizeofSelect` at least 3, as a TPM writes it); an
    /// index above [`MAX_PCR_INDEX`] is an error.
    pub fn marshal(&self) -> Result<Vec<u8>> {
        let mut out = (self.banks.len() as u32).to_be_bytes().to_vec();
        for b in &self.banks {
            out.extend_from_slice(&b.bank.alg_id().to_be_bytes());
            let max = b.pcrs.iter().max().copied().unwrap_or(0);
            if max > MAX_PCR_INDEX {
                return Err(TpmError::input(
                    "PCR selection",
                    format!("PCR indices up to {MAX_PCR_INDEX}"),
                    max.to_string(),
                ));
            }
            let needed = if b.pcrs.is_empty() {
                0
            } else {
                max as usize / 8 + 1
            };
            let mut bitmap = vec![0u8; needed.max(PCR_SELECT_MIN)];
            for &p in &b.pcrs {
                if let Some(byte) = bitmap.get_mut(p as usize / 8) {
                    *byte |= 1 << (p % 8);
                }
            }
            out.push(bitmap.len() as u8);
            out.extend_from_slice(&bitmap);
        }
        Ok(out)
    }

    /// Reads a tpm2-tools selection: banks joined by `+`, each `bank:pcr,pcr,...` where a pcr is a
    /// decimal or `0x` index, or `all` (0–23). Indices come out ascending, as a TPM orders them.
    pub fn parse_tpm2_tools(text: &str) -> Result<Self> {
        let bad = |found: &str| {
            TpmError::input(
                "PCR selection",
                "tpm2-tools syntax such as sha1:0,1+sha256:0,1,16",
                format!("{found:?}"),
            )
        };
        let mut banks = Vec::new();
        for part in text.trim().split('+') {
            let (name, list) = part.split_once(':').ok_or_else(|| bad(part))?;
            let bank = parse_hash_alg(name).ok_or_else(|| {
                TpmError::input(
                    "PCR selection",
                    "a bank sha1, sha256, sha384 or sha512",
                    format!("{name:?}"),
                )
            })?;
            let mut pcrs = Vec::new();
            for item in list.split(',').map(str::trim) {
                if item.eq_ignore_ascii_case("all") {
                    pcrs.extend(0..24);
                    continue;
                }
                let index = match item.strip_prefix("0x") {
                    Some(h) => PcrIndex::from_str_radix(h, 16),
                    None => item.parse(),
                }
                .map_err(|_| bad(item))?;
                if index > MAX_PCR_INDEX {
                    return Err(TpmError::input(
                        "PCR selection",
                        format!("PCR indices up to {MAX_PCR_INDEX}"),
                        index.to_string(),
                    ));
                }
                pcrs.push(index);
            }
            pcrs.sort_unstable();
            pcrs.dedup();
            banks.push(PcrBankSelection { bank, pcrs });
        }
        Ok(Self { banks })
    }

    /// Every selected (bank, PCR), in selection order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, PcrIndex)> + '_ {
        self.banks
            .iter()
            .flat_map(|b| b.pcrs.iter().map(move |&p| (b.bank, p)))
    }

    /// Whether the two select the same (bank, PCR) pairs, whatever the bank order.
    pub fn same_pcrs(&self, other: &PcrSelection) -> bool {
        let a: std::collections::BTreeSet<_> = self.iter().collect();
        let b: std::collections::BTreeSet<_> = other.iter().collect();
        a == b
    }
}

impl std::fmt::Display for PcrSelection {
    /// The tpm2-tools syntax; an empty selection prints as `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.banks.is_empty() {
            return f.write_str("none");
        }
        for (i, b) in self.banks.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            let list: Vec<String> = b.pcrs.iter().map(ToString::to_string).collect();
            write!(f, "{}:{}", b.bank, list.join(","))?;
        }
        Ok(())
    }
}

/// PCR values supplied by the verifier's caller, per bank and index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues {
    banks: BTreeMap<HashAlg, BTreeMap<PcrIndex, Vec<u8>>>,
}

impl PcrValues {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value; it must be as long as the bank's digest.
    pub fn insert(&mut self, bank: HashAlg, index: PcrIndex, value: Vec<u8>) -> Result<()> {
        if index > MAX_PCR_INDEX {
            return Err(TpmError::input(
                format!("PCR {bank}:{index}"),
                format!("an index up to {MAX_PCR_INDEX}"),
                index.to_string(),
            ));
        }
        if value.len() != bank.size() {
            return Err(TpmError::input(
                format!("PCR {bank}:{index}"),
                format!("a {}-byte {bank} value", bank.size()),
                format!("{} bytes", value.len()),
            ));
        }
        self.banks.entry(bank).or_default().insert(index, value);
        Ok(())
    }

    /// The value of one PCR, if supplied.
    pub fn get(&self, bank: HashAlg, index: PcrIndex) -> Option<&[u8]> {
        self.banks.get(&bank)?.get(&index).map(Vec::as_slice)
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.banks.values().map(BTreeMap::len).sum()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (bank, PCR) pairs held, banks by algorithm identifier, indices ascending.
    pub fn selection(&self) -> PcrSelection {
        PcrSelection {
            banks: self
                .banks
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(bank, v)| PcrBankSelection {
                    bank: *bank,
                    pcrs: v.keys().copied().collect(),
                })
                .collect(),
        }
    }

    /// Reads raw values concatenated in the order of `selection` (what `tpm2_pcrread -o` writes).
    pub fn from_concatenated(selection: &PcrSelection, bytes: &[u8]) -> Result<Self> {
        let expected: usize = selection.iter().map(|(bank, _)| bank.size()).sum();
        if bytes.len() != expected {
            return Err(TpmError::input(
                "PCR values file",
                format!("{expected} bytes for the selection {selection}"),
                format!("{} bytes", bytes.len()),
            ));
        }
        let mut values = Self::new();
        let mut rest = bytes;
        for (bank, index) in selection.iter() {
            let (value, tail) = rest.split_at(bank.size());
            values.insert(bank, index, value.to_vec())?;
            rest = tail;
        }
        Ok(values)
    }

    /// Reads the PCR file `tpm2_quote -o` (and `tpm2_pcrread -o -F serialized`) writes by
    /// default: tpm2-tools' in-memory structures, little-endian — a `TPML_PCR_SELECTION` (u32
    /// count, 16 × {u16 hash, u8 sizeofSelect, u8 pcrSelect[4], 1 pad byte}), a u32 count of
    /// `TPML_DIGEST`s, then each `TPML_DIGEST` (u32 count ≤ 8, 8 × {u16 size, 64 bytes}). The values
    /// follow the selection's order. Returns the selection and the values.
    pub fn from_tpm2_tools_serialized(bytes: &[u8]) -> Result<(PcrSelection, Self)> {
        const SELECTION_LEN: usize = 4 + 16 * 8;
        const DIGEST_LIST_LEN: usize = 4 + 8 * 66;
        let bad = |expected: String, found: String| {
            TpmError::input("tpm2-tools PCR file (serialized)", expected, found)
        };
        let u32_at = |at: usize| -> Result<u32> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| {
                    bad(
                        format!("4 bytes at {at}"),
                        format!("{} bytes in all", bytes.len()),
                    )
                })
        };
        let count = u32_at(0)? as usize;
        if count == 0 || count > 16 {
            return Err(bad("1 to 16 banks".into(), count.to_string()));
        }
        let mut selection = PcrSelection::default();
        for i in 0..count {
            let at = 4 + i * 8;
            let e = bytes
                .get(at..at + 8)
                .ok_or_else(|| bad(format!("a selection at {at}"), "the end of the file".into()))?;
            let id = u16::from_le_bytes([e[0], e[1]]);
            let bank = HashAlg::from_alg_id(id)
                .ok_or_else(|| bad("a SHA-1/256/384/512 bank".into(), format!("{id:#06x}")))?;
            let size = usize::from(e[2]);
            if size > 4 {
                return Err(bad("sizeofSelect ≤ 4".into(), size.to_string()));
            }
            let pcrs: Vec<PcrIndex> = (0..size * 8)
                .filter(|n| e[3 + n / 8] >> (n % 8) & 1 == 1)
                .map(|n| n as PcrIndex)
                .collect();
            selection.banks.push(PcrBankSelection { bank, pcrs });
        }
        let lists = u32_at(SELECTION_LEN)? as usize;
        let expected_len = SELECTION_LEN + 4 + lists * DIGEST_LIST_LEN;
        if lists > 8 || bytes.len() != expected_len {
            return Err(bad(
                format!("{} bytes for {lists} TPML_DIGEST lists", expected_len),
                format!("{} bytes", bytes.len()),
            ));
        }
        let mut digests = Vec::new();
        for l in 0..lists {
            let base = SELECTION_LEN + 4 + l * DIGEST_LIST_LEN;
            let n = u32_at(base)? as usize;
            if n > 8 {
                return Err(bad(
                    "at most 8 digests per TPML_DIGEST".into(),
                    n.to_string(),
                ));
            }
            for d in 0..n {
                let at = base + 4 + d * 66;
                let size = usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
                if size > 64 {
                    return Err(bad("a digest of at most 64 bytes".into(), size.to_string()));
                }
                digests.push(bytes[at + 2..at + 2 + size].to_vec());
            }
        }
        let wanted: Vec<(HashAlg, PcrIndex)> = selection.iter().collect();
        if wanted.len() != digests.len() {
            return Err(bad(
                format!("{} values for the selection {selection}", wanted.len()),
                format!("{} values", digests.len()),
            ));
        }
        let mut values = Self::new();
        for ((bank, index), value) in wanted.into_iter().zip(digests) {
            values.insert(bank, index, value)?;
        }
        Ok((selection, values))
    }

    /// Reads `{"sha256": {"0": "<hex>", ...}, "sha1": {...}}`.
    pub fn from_json(text: &str) -> Result<Self> {
        let what = "PCR values JSON";
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| TpmError::input(what, "a JSON object", e.to_string()))?;
        let banks = doc
            .as_object()
            .ok_or_else(|| TpmError::input(what, "an object of banks", json_kind(&doc)))?;
        let mut values = Self::new();
        for (name, pcrs) in banks {
            let bank = parse_hash_alg(name).ok_or_else(|| {
                TpmError::input(what, "banks sha1, sha256, sha384 or sha512", name.clone())
            })?;
            let pcrs = pcrs.as_object().ok_or_else(|| {
                TpmError::input(
                    format!("{what} bank {name}"),
                    "an object of PCR index to hex value",
                    json_kind(pcrs),
                )
            })?;
            for (index, value) in pcrs {
                let i: PcrIndex = index.trim().parse().map_err(|_| {
                    TpmError::input(
                        format!("{what} bank {name}"),
                        "decimal PCR indices",
                        format!("{index:?}"),
                    )
                })?;
                let hex_value = value.as_str().ok_or_else(|| {
                    TpmError::input(
                        format!("{what} {name}:{index}"),
                        "a hex string",
                        json_kind(value),
                    )
                })?;
                let bytes = hex::decode(hex_value.trim()).map_err(|e| {
                    TpmError::input(format!("{what} {name}:{index}"), "hex", e.to_string())
                })?;
                values.insert(bank, i, bytes)?;
            }
        }
        Ok(values)
    }

    /// The concatenation of the values selected by `selection`, in selection order, hashed with
    /// `hash`; `Err` names the first selected PCR without a value.
    pub fn digest(&self, selection: &PcrSelection, hash: HashAlg) -> Result<Vec<u8>, String> {
        let mut parts = Vec::new();
        for (bank, index) in selection.iter() {
            parts.push(
                self.get(bank, index)
                    .ok_or_else(|| format!("{bank}:{index}"))?,
            );
        }
        Ok(hash.hash(&parts))
    }
}

fn json_kind(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm2_tools_syntax_round_trips() {
        let s = PcrSelection::parse_tpm2_tools("sha1:0,1+sha256:16,0x1,1").unwrap();
        assert_eq!(s.to_string(), "sha1:0,1+sha256:1,16");
        assert_eq!(
            PcrSelection::parse_tpm2_tools("sha256:all")
                .unwrap()
                .iter()
                .count(),
            24
        );
        for bad in [
            "",
            "sha256",
            "sha256:x",
            "sm3_256:0",
            "sha256:256",
            "sha256:0,,1",
        ] {
            assert!(PcrSelection::parse_tpm2_tools(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn marshal_and_read_agree() {
        let s = PcrSelection::parse_tpm2_tools("sha256:0,7,23+sha1:30").unwrap();
        let bytes = s.marshal().unwrap();
        let mut r = Reader::new("TPML_PCR_SELECTION", &bytes);
        assert_eq!(PcrSelection::read(&mut r).unwrap(), s);
        r.finish().unwrap();
    }

    #[test]
    fn values_from_both_formats_agree() {
        let sel = PcrSelection::parse_tpm2_tools("sha1:1+sha256:0").unwrap();
        let mut raw = vec![0x11u8; 20];
        raw.extend_from_slice(&[0x22u8; 32]);
        let a = PcrValues::from_concatenated(&sel, &raw).unwrap();
        let json = format!(
            r#"{{"sha256": {{"0": "{}"}}, "sha1": {{"1": "{}"}}}}"#,
            "22".repeat(32),
            "11".repeat(20)
        );
        let b = PcrValues::from_json(&json).unwrap();
        assert_eq!(a, b);
        assert!(a.selection().same_pcrs(&sel));
        assert_eq!(
            a.digest(&sel, HashAlg::Sha256).unwrap(),
            HashAlg::Sha256.hash(&[&raw])
        );
        let missing = PcrSelection::parse_tpm2_tools("sha256:0,5").unwrap();
        assert_eq!(a.digest(&missing, HashAlg::Sha256).unwrap_err(), "sha256:5");
        assert!(PcrValues::from_concatenated(&sel, &raw[1..]).is_err());
        assert!(PcrValues::from_json(r#"{"sha256": {"0": "00"}}"#).is_err());
        assert!(PcrValues::from_json(r#"{"sha256": {"x": "00"}}"#).is_err());
        assert!(PcrValues::from_json("[]").is_err());
    }
}
