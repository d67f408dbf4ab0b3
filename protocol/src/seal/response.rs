//! Sealed responses: AES-256-GCM under keys derived per request, as COSE_Encrypt0 (RFC 9052 §5.2).
//!
//! `HKDF-SHA256(ikm = content key, salt = request id, info = "secllama/v1/response")` gives a 32-byte
//! key ‖ 12-byte base IV. Chunk `n` uses nonce = base IV XOR n (n big-endian, right-aligned), carries
//! `n` as its Partial IV (label 6, minimal big-endian bytes) and `"final": true|false` in its protected
//! header, and has an empty unprotected header:
//!
//! ```text
//! 16([ << {1: 3, 6: h'n', "final": bool} >>, {}, ciphertext ])
//! ```
//!
//! The external AAD is `["secllama/v1/response", request_id, "single" | "stream"]`, so a single answer
//! and a stream never substitute for each other. A single answer is one COSE_Encrypt0 (chunk 0,
//! final). A stream is a sequence of `u32 big-endian length ‖ COSE_Encrypt0` frames ending with a final
//! chunk (the STREAM construction): dropping, reordering, duplicating or truncating chunks, splicing a
//! chunk from another stream, or appending data after the final chunk is detected.

use super::{ContentKey, IV_LEN, aes_gcm_open, aes_gcm_seal, hkdf_expand};
use crate::cbor::{self, Value};
use crate::cose::sign1::{encode, untag};
use crate::{ProtocolError, RequestId, Result};
use coset::{AsCborValue, CoseEncrypt0, Header, HeaderBuilder, iana};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// CBOR tag of COSE_Encrypt0.
pub const TAG_COSE_ENCRYPT0: u64 = 16;
/// Largest accepted encrypted frame (one COSE_Encrypt0).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Header label of the final-chunk flag.
pub const FINAL_LABEL: &str = "final";
const INFO: &[u8] = b"secllama/v1/response";

/// Response key and base IV for one request.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ResponseKeys {
    key: [u8; 32],
    base_iv: [u8; IV_LEN],
    request_id: [u8; 16],
}

impl std::fmt::Debug for ResponseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseKeys(..)")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Stream,
}

impl ResponseKeys {
    /// Derives the response keys of request `id` sealed under `content_key`.
    pub fn derive(content_key: &ContentKey, id: &RequestId) -> Result<Self> {
        let mut okm = zeroize::Zeroizing::new([0u8; 32 + IV_LEN]);
        hkdf_expand(content_key.as_bytes(), Some(&id.0), INFO, &mut okm[..])?;
        let mut key = [0u8; 32];
        let mut base_iv = [0u8; IV_LEN];
        key.copy_from_slice(&okm[..32]);
        base_iv.copy_from_slice(&okm[32..]);
        Ok(Self {
            key,
            base_iv,
            request_id: id.0,
        })
    }

    fn nonce(&self, counter: u64) -> [u8; IV_LEN] {
        let mut iv = self.base_iv;
        for (i, b) in counter.to_be_bytes().iter().enumerate() {
            iv[IV_LEN - 8 + i] ^= b;
        }
        iv
    }

    fn aad(&self, mode: Mode) -> Result<Vec<u8>> {
        cbor::to_vec(&Value::Array(vec![
            Value::Text("secllama/v1/response".into()),
            Value::Bytes(self.request_id.to_vec()),
            Value::Text(
                if mode == Mode::Single {
                    "single"
                } else {
                    "stream"
                }
                .into(),
            ),
        ]))
    }

    fn seal(&self, mode: Mode, counter: u64, last: bool, data: &[u8]) -> Result<Vec<u8>> {
        let aad = self.aad(mode)?;
        let iv = self.nonce(counter);
        let e0 = coset::CoseEncrypt0Builder::new()
            .protected(protected(counter, last))
            .try_create_ciphertext(data, &aad, |pt, enc| aes_gcm_seal(&self.key, &iv, enc, pt))?
            .build();
        encode("COSE_Encrypt0", e0, Some(TAG_COSE_ENCRYPT0))
    }

    /// Opens one COSE_Encrypt0 that must be chunk `counter`; returns its data and final flag.
    fn open(&self, mode: Mode, counter: u64, bytes: &[u8], what: &str) -> Result<(Vec<u8>, bool)> {
        let value = cbor::decode_deterministic(what, bytes, MAX_FRAME_LEN)?;
        let (inner, _) = untag(what, value, TAG_COSE_ENCRYPT0)?;
        let e0 = CoseEncrypt0::from_cbor_value(inner).map_err(|e| ProtocolError::cose(what, e))?;
        if !e0.unprotected.is_empty() {
            return Err(ProtocolError::mismatch(
                format!("{what} unprotected header"),
                "an empty map",
                "members",
            ));
        }
        let h = &e0.protected.header;
        let last = if *h == protected(counter, true) {
            true
        } else if *h == protected(counter, false) {
            false
        } else {
            let found = match partial_iv_counter(&h.partial_iv) {
                Some(n) if n != counter => format!("chunk {n}"),
                _ => "a protected header of another form".into(),
            };
            return Err(ProtocolError::Stream {
                expected: format!(
                    "chunk {counter} with protected header {{1: 3, 6: counter, \"final\": bool}}"
                ),
                found,
            });
        };
        let aad = self.aad(mode)?;
        let iv = self.nonce(counter);
        let data = e0.decrypt_ciphertext(
            &aad,
            || ProtocolError::Missing {
                field: format!("{what} ciphertext"),
                expected: "an attached ciphertext".into(),
            },
            |ct, enc| aes_gcm_open(&self.key, &iv, enc, ct, what),
        )?;
        Ok((data, last))
    }
}

fn partial_iv(counter: u64) -> Vec<u8> {
    let be = counter.to_be_bytes();
    let skip = be.iter().take(7).take_while(|b| **b == 0).count();
    be[skip..].to_vec()
}

fn partial_iv_counter(p: &[u8]) -> Option<u64> {
    (p.len() <= 8).then(|| p.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn protected(counter: u64, last: bool) -> Header {
    HeaderBuilder::new()
        .algorithm(iana::Algorithm::A256GCM)
        .partial_iv(partial_iv(counter))
        .text_value(FINAL_LABEL.to_string(), Value::Bool(last))
        .build()
}

/// Seals a complete (non-streaming) answer as one COSE_Encrypt0.
pub fn seal_single(keys: &ResponseKeys, data: &[u8]) -> Result<Vec<u8>> {
    keys.seal(Mode::Single, 0, true, data)
}

/// Opens a complete (non-streaming) answer.
pub fn open_single(keys: &ResponseKeys, bytes: &[u8]) -> Result<Vec<u8>> {
    let (data, last) = keys.open(Mode::Single, 0, bytes, "sealed response")?;
    if !last {
        return Err(ProtocolError::Stream {
            expected: "a single chunk marked final".into(),
            found: "a non-final chunk".into(),
        });
    }
    Ok(data)
}

/// Seals the chunks of a streamed answer, in order.
#[derive(Debug)]
pub struct StreamSealer {
    keys: ResponseKeys,
    counter: u64,
    done: bool,
}

impl StreamSealer {
    /// A sealer for the stream of the request these keys belong to.
    pub fn new(keys: ResponseKeys) -> Self {
        Self {
            keys,
            counter: 0,
            done: false,
        }
    }

    /// Seals `data` as the next chunk, returning the length-prefixed frame. `last` marks the final chunk;
    /// no chunk may follow it.
    pub fn seal_chunk(&mut self, data: &[u8], last: bool) -> Result<Vec<u8>> {
        if self.done {
            return Err(ProtocolError::Stream {
                expected: "no chunk after the final one".into(),
                found: "another chunk".into(),
            });
        }
        let frame = self.keys.seal(Mode::Stream, self.counter, last, data)?;
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_FRAME_LEN)
            .ok_or(ProtocolError::TooLarge {
                what: "response chunk".into(),
                limit: MAX_FRAME_LEN,
                found: frame.len(),
            })?;
        self.counter += 1;
        self.done = last;
        let mut out = Vec::with_capacity(4 + frame.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&frame);
        Ok(out)
    }
}

/// One opened chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the stream, from 0.
    pub index: u64,
    /// The plaintext.
    pub data: Vec<u8>,
    /// Whether this is the final chunk.
    pub last: bool,
}

/// Opens a streamed answer incrementally, as bytes arrive; fails closed on any irregularity and stays
/// failed afterwards.
#[derive(Debug)]
pub struct StreamOpener {
    keys: ResponseKeys,
    counter: u64,
    buf: Vec<u8>,
    done: bool,
    failed: bool,
}

impl StreamOpener {
    /// An opener for the stream of the request these keys belong to.
    pub fn new(keys: ResponseKeys) -> Self {
        Self {
            keys,
            counter: 0,
            buf: Vec::new(),
            done: false,
            failed: false,
        }
    }

    /// Feeds received bytes; returns every chunk they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>> {
        let r = self.push_inner(bytes);
        if r.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        r
    }

    fn push_inner(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>> {
        if self.failed {
            return Err(ProtocolError::Stream {
                expected: "a stream without earlier errors".into(),
                found: "a stream that already failed".into(),
            });
        }
        if self.done && !bytes.is_empty() {
            return Err(ProtocolError::Stream {
                expected: "end of stream after the final chunk".into(),
                found: format!("{} more bytes", bytes.len()),
            });
        }
        // Frames are opened straight from `bytes` when nothing is pending, so a large delivery is not
        // copied; only an incomplete tail is buffered.
        let mut joined = std::mem::take(&mut self.buf);
        let data: &[u8] = if joined.is_empty() {
            bytes
        } else {
            joined.extend_from_slice(bytes);
            &joined
        };
        let mut out = Vec::new();
        let mut pos = 0;
        while data.len() - pos >= 4 {
            if self.done {
                return Err(ProtocolError::Stream {
                    expected: "end of stream after the final chunk".into(),
                    found: format!("{} more bytes", data.len() - pos),
                });
            }
            let mut len = [0u8; 4];
            len.copy_from_slice(&data[pos..pos + 4]);
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_FRAME_LEN {
                return Err(ProtocolError::TooLarge {
                    what: "response chunk".into(),
                    limit: MAX_FRAME_LEN,
                    found: len,
                });
            }
            if data.len() - pos - 4 < len {
                break;
            }
            let frame = &data[pos + 4..pos + 4 + len];
            let (chunk, last) =
                self.keys
                    .open(Mode::Stream, self.counter, frame, "response chunk")?;
            out.push(Chunk {
                index: self.counter,
                data: chunk,
                last,
            });
            self.counter += 1;
            self.done = last;
            pos += 4 + len;
        }
        if self.done && pos < data.len() {
            return Err(ProtocolError::Stream {
                expected: "end of stream after the final chunk".into(),
                found: format!("{} more bytes", data.len() - pos),
            });
        }
        self.buf = data[pos..].to_vec();
        Ok(out)
    }

    /// Whether the final chunk has been opened.
    pub fn is_complete(&self) -> bool {
        self.done && !self.failed
    }

    /// Declares the end of input: an error unless the final chunk arrived and nothing is left over.
    pub fn finish(self) -> Result<()> {
        if self.failed {
            return Err(ProtocolError::Stream {
                expected: "a stream without errors".into(),
                found: "a stream that failed".into(),
            });
        }
        if !self.done {
            return Err(ProtocolError::Stream {
                expected: "a final chunk".into(),
                found: format!(
                    "end of input after {} chunks and {} bytes of a partial frame",
                    self.counter,
                    self.buf.len()
                ),
            });
        }
        Ok(())
    }
}
