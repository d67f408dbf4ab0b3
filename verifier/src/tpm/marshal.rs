//! TPM 2.0 marshalling as Part 2 defines it: big-endian base types (§5) and `TPM2B_*` sized buffers
//! (a `UINT16` size, then that many bytes), read from a byte slice with the offset of every field
//! kept for error messages.
//!
//! Every read checks the remaining input before it slices, so no field length taken from the input
//! ever sizes an allocation or an index that was not checked first.

use super::error::{Result, TpmError};

/// A cursor over one marshalled structure.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    structure: &'static str,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `structure` (its spec name) at the beginning of `input`.
    pub(crate) fn new(structure: &'static str, input: &'a [u8]) -> Self {
        Self {
            structure,
            input,
            pos: 0,
        }
    }

    /// The offset of the next byte to read.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// Takes the next `n` bytes.
    pub(crate) fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8]> {
        let available = self.input.len().saturating_sub(self.pos);
        if n > available {
            return Err(TpmError::Truncated {
                structure: self.structure,
                field,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let out = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let b = self.bytes(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A `UINT8`.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A big-endian `UINT16`.
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `UINT32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `UINT64`.
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A `TPM2B_*`: a `UINT16` size then that many bytes, the size at most `max` (the buffer size
    /// the specification gives the type).
    pub(crate) fn tpm2b(&mut self, field: &'static str, max: usize) -> Result<&'a [u8]> {
        let at = self.pos;
        let size = usize::from(self.u16(field)?);
        if size > max {
            return Err(self.invalid_at(
                field,
                at,
                format!("a size of at most {max} bytes"),
                format!("{size}"),
            ));
        }
        self.bytes(field, size)
    }

    /// An error about the field that starts at `offset`.
    pub(crate) fn invalid_at(
        &self,
        field: &'static str,
        offset: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> TpmError {
        TpmError::Invalid {
            structure: self.structure,
            field,
            offset,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// Succeeds only when every byte was read.
    pub(crate) fn finish(&self) -> Result<()> {
        let left = self.input.len().saturating_sub(self.pos);
        if left != 0 {
            return Err(TpmError::TrailingBytes {
                structure: self.structure,
                offset: self.pos,
                found: left,
            });
        }
        Ok(())
    }
}

/// Removes a `TPM2B_*` size prefix when `input` starts with one that covers exactly the rest of it
/// and the rest starts as `looks_bare` says a bare structure does; otherwise returns `input`.
pub(crate) fn strip_tpm2b(input: &[u8], looks_bare: impl Fn(&[u8]) -> bool) -> &[u8] {
    if looks_bare(input) {
        return input;
    }
    match input {
        [hi, lo, rest @ ..]
            if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() && looks_bare(rest) =>
        {
            rest
        }
        _ => input,
    }
}

/// Appends a `TPM2B_*`: the `UINT16` size then the bytes.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, what: &str, bytes: &[u8]) -> Result<()> {
    let size = u16::try_from(bytes.len()).map_err(|_| {
        TpmError::input(
            what,
            "at most 65535 bytes",
            format!("{} bytes", bytes.len()),
        )
    })?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_reports_offsets() {
        let mut r = Reader::new("T", &[0, 1, 0, 0, 0, 2, 0, 3, 9, 9, 9]);
        assert_eq!(r.u16("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), 2);
        assert_eq!(r.tpm2b("c", 8).unwrap(), &[9, 9, 9]);
        r.finish().unwrap();
        let mut r = Reader::new("T", &[0, 5, 1]);
        let e = r.tpm2b("c", 8).unwrap_err();
        assert_eq!(
            e,
            TpmError::Truncated {
                structure: "T",
                field: "c",
                offset: 2,
                needed: 5,
                available: 1
            }
        );
        let mut r = Reader::new("T", &[0, 9]);
        assert!(
            r.tpm2b("c", 8)
                .unwrap_err()
                .to_string()
                .contains("T.c at byte 0")
        );
        let r = Reader::new("T", &[1]);
        assert!(matches!(
            r.finish(),
            Err(TpmError::TrailingBytes { found: 1, .. })
        ));
    }

    #[test]
    fn strips_only_an_exact_size_prefix() {
        let bare = |b: &[u8]| b.first() == Some(&0xAA);
        assert_eq!(strip_tpm2b(&[0, 2, 0xAA, 1], bare), &[0xAA, 1]);
        assert_eq!(strip_tpm2b(&[0, 3, 0xAA, 1], bare), &[0, 3, 0xAA, 1]);
        assert_eq!(strip_tpm2b(&[0xAA, 0], bare), &[0xAA, 0]);
        assert_eq!(strip_tpm2b(&[], bare), &[] as &[u8]);
    }
}
