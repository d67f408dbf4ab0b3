//! GGUF metadata, read in pure Rust before llama.cpp sees the file: the key/value section (as JSON
//! values, for `/api/show`'s `model_info`), the parameter count (from the tensor infos), and the
//! Ollama-style strings derived from them (`parameter_size`, `quantization_level`). A file that is
//! not a GGUF (v2 or v3) is refused here with a clear error.

use serde_json::{Map, Value};
use std::io::{BufReader, Read};
use std::path::Path;

/// Limits that keep a hostile or corrupt header from allocating without bound.
const MAX_STRING: u64 = 16 << 20;
const MAX_ITEMS: u64 = 1 << 24;
const MAX_DIMS: u32 = 8;

/// Why a file's GGUF header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Reading the file failed (including a header cut short).
    #[error("reading {0}")]
    Io(#[from] std::io::Error),
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file (the first four bytes are {0:02x?}, expected \"GGUF\")")]
    Magic([u8; 4]),
    /// A GGUF version we do not read.
    #[error("GGUF version {0} is not supported (expected 2 or 3)")]
    Version(u32),
    /// A malformed header.
    #[error("malformed GGUF header: {0}")]
    Malformed(String),
}

/// What the runner needs from a GGUF header.
#[derive(Debug, Clone)]
pub struct GgufInfo {
    /// Every metadata key with its value, in file order.
    pub kv: Vec<(String, Value)>,
    /// The number of model parameters (sum over tensors of the product of their dimensions).
    pub parameter_count: u64,
}

impl GgufInfo {
    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// `general.architecture` (e.g. `llama`), empty when absent.
    pub fn architecture(&self) -> &str {
        self.get_str("general.architecture").unwrap_or_default()
    }

    /// `tokenizer.chat_template`, empty when absent.
    pub fn chat_template(&self) -> &str {
        self.get_str("tokenizer.chat_template").unwrap_or_default()
    }

    /// Ollama's `quantization_level` from `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn quantization_level(&self) -> String {
        match self.get("general.file_type").and_then(Value::as_u64) {
            Some(t) => file_type_name(t).to_string(),
            None => "unknown".to_string(),
        }
    }

    /// `model_info` as Ollama's `/api/show` gives it: every key, `general.parameter_count` added,
    /// and long arrays (the tokenizer's vocabulary) as `null` unless `verbose`.
    pub fn model_info(&self, verbose: bool) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in &self.kv {
            let v = match v {
                Value::Array(a) if !verbose && a.len() > 16 => Value::Null,
                v => v.clone(),
            };
            m.insert(k.clone(), v);
        }
        m.entry("general.parameter_count")
            .or_insert_with(|| Value::from(self.parameter_count));
        m
    }
}

/// Ollama's name for a llama.cpp file type (`general.file_type`).
pub fn file_type_name(t: u64) -> &'static str {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        _ => "unknown",
    }
}

/// Ollama's `parameter_size` (its `format.HumanNumber`): `134.52M`, `7B`, `1.5B`, `500K`.
pub fn human_number(n: u64) -> String {
    const B: f64 = 1e9;
    const M: f64 = 1e6;
    const K: f64 = 1e3;
    #[allow(clippy::cast_precision_loss)] // display only
    let f = n as f64;
    if f >= B {
        let x = f / B;
        if x == x.floor() {
            format!("{x:.0}B")
        } else {
            format!("{x:.1}B")
        }
    } else if f >= M {
        let x = f / M;
        if x == x.floor() {
            format!("{x:.0}M")
        } else {
            format!("{x:.2}M")
        }
    } else if f >= K {
        format!("{:.0}K", f / K)
    } else {
        n.to_string()
    }
}

/// Reads the metadata and tensor infos of the GGUF file at `path` (not the tensor data).
pub fn read(path: &Path) -> Result<GgufInfo, GgufError> {
    let f = std::fs::File::open(path)?;
    parse(&mut BufReader::with_capacity(1 << 20, f))
}

/// Parses a GGUF header from `r`.
pub fn parse(r: &mut impl Read) -> Result<GgufInfo, GgufError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err(GgufError::Magic(magic));
    }
    let version = u32::from_le_bytes(bytes(r)?);
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    let n_tensors = u64::from_le_bytes(bytes(r)?);
    let n_kv = u64::from_le_bytes(bytes(r)?);
    if n_tensors > MAX_ITEMS || n_kv > MAX_ITEMS {
        return Err(GgufError::Malformed(format!(
            "{n_tensors} tensors, {n_kv} keys"
        )));
    }
    let mut kv = Vec::new();
    for _ in 0..n_kv {
        let key = string(r)?;
        let ty = u32::from_le_bytes(bytes(r)?);
        let v = value(r, ty, 0)?;
        kv.push((key, v));
    }
    let mut parameter_count: u64 = 0;
    for _ in 0..n_tensors {
        let _name = string(r)?;
        let n_dims = u32::from_le_bytes(bytes(r)?);
        if n_dims > MAX_DIMS {
            return Err(GgufError::Malformed(format!("tensor with {n_dims} dims")));
        }
        let mut count: u64 = 1;
        for _ in 0..n_dims {
            count = count.saturating_mul(u64::from_le_bytes(bytes(r)?));
        }
        let _ty = u32::from_le_bytes(bytes::<4>(r)?);
        let _offset = u64::from_le_bytes(bytes::<8>(r)?);
        parameter_count = parameter_count.saturating_add(count);
    }
    Ok(GgufInfo {
        kv,
        parameter_count,
    })
}

fn bytes<const N: usize>(r: &mut impl Read) -> Result<[u8; N], GgufError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn string(r: &mut impl Read) -> Result<String, GgufError> {
    let len = u64::from_le_bytes(bytes(r)?);
    if len > MAX_STRING {
        return Err(GgufError::Malformed(format!("string of {len} bytes")));
    }
    let mut buf = Vec::new();
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(GgufError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn value(r: &mut impl Read, ty: u32, depth: u8) -> Result<Value, GgufError> {
    Ok(match ty {
        0 => Value::from(u8::from_le_bytes(bytes(r)?)),
        1 => Value::from(i8::from_le_bytes(bytes(r)?)),
        2 => Value::from(u16::from_le_bytes(bytes(r)?)),
        3 => Value::from(i16::from_le_bytes(bytes(r)?)),
        4 => Value::from(u32::from_le_bytes(bytes(r)?)),
        5 => Value::from(i32::from_le_bytes(bytes(r)?)),
        6 => Value::from(f64::from(f32::from_le_bytes(bytes(r)?))),
        7 => Value::from(u8::from_le_bytes(bytes::<1>(r)?) != 0),
        8 => Value::from(string(r)?),
        9 => {
            if depth > 2 {
                return Err(GgufError::Malformed("arrays nested too deep".into()));
            }
            let item_ty = u32::from_le_bytes(bytes(r)?);
            let n = u64::from_le_bytes(bytes(r)?);
            if n > MAX_ITEMS {
                return Err(GgufError::Malformed(format!("array of {n} items")));
            }
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(value(r, item_ty, depth + 1)?);
            }
            Value::Array(items)
        }
        10 => Value::from(u64::from_le_bytes(bytes(r)?)),
        11 => Value::from(i64::from_le_bytes(bytes(r)?)),
        12 => Value::from(f64::from_le_bytes(bytes(r)?)),
        t => return Err(GgufError::Malformed(format!("value type {t}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(out: &mut Vec<u8>, x: &str) {
        out.extend_from_slice(&(x.len() as u64).to_le_bytes());
        out.extend_from_slice(x.as_bytes());
    }

    fn sample() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes()); // tensors
        b.extend_from_slice(&3u64.to_le_bytes()); // kv
        s(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "general.file_type");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        s(&mut b, "tokenizer.ggml.tokens");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&20u64.to_le_bytes());
        for i in 0..20 {
            s(&mut b, &format!("t{i}"));
        }
        for (name, dims) in [("a", vec![4u64, 5]), ("b", vec![7u64])] {
            s(&mut b, name);
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_metadata_and_counts_parameters() {
        let info = parse(&mut sample().as_slice()).unwrap();
        assert_eq!(info.architecture(), "llama");
        assert_eq!(info.quantization_level(), "Q4_1");
        assert_eq!(info.parameter_count, 27);
        let mi = info.model_info(false);
        assert_eq!(mi["tokenizer.ggml.tokens"], Value::Null);
        assert_eq!(mi["general.parameter_count"], 27);
        assert_eq!(info.model_info(true)["tokenizer.ggml.tokens"][19], "t19");
    }

    #[test]
    fn refuses_other_files_and_truncation() {
        assert!(matches!(
            parse(&mut b"PK\x03\x04rest".as_slice()),
            Err(GgufError::Magic(_))
        ));
        let b = sample();
        for cut in 0..b.len() {
            assert!(parse(&mut &b[..cut]).is_err(), "cut at {cut}");
        }
        let mut v1 = b.clone();
        v1[4] = 1;
        assert!(matches!(
            parse(&mut v1.as_slice()),
            Err(GgufError::Version(1))
        ));
    }

    #[test]
    fn human_numbers_like_ollama() {
        assert_eq!(human_number(134_515_008), "134.52M");
        assert_eq!(human_number(7_000_000_000), "7B");
        assert_eq!(human_number(1_543_714_304), "1.5B");
        assert_eq!(human_number(500_000), "500K");
        assert_eq!(human_number(12), "12");
        assert_eq!(human_number(2_000_000), "2M");
    }
}
