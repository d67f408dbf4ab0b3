//! TPM 2.0 Part 2 §10.12 (attestation structures) `TPMS_ATTEST` for `TPM_ST_ATTEST_QUOTE`, with its
//! `TPMS_QUOTE_INFO` and `TPMS_CLOCK_INFO` (§10.11), bare or wrapped in a `TPM2B_ATTEST`.
//!
//! Parsing reads the structure only; whether it is acceptable (magic, nonce, PCRs, signature) is
//! decided in [`super::appraise`].

use super::error::Result;
use super::marshal::{Reader, strip_tpm2b};
use super::pcr::PcrSelection;

/// `TPM_GENERATED_VALUE` (Part 2 §6.2): the magic that starts every structure the TPM signs.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE` (Part 2 §6.9): the attestation type of a TPM2_Quote.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// Size of `TPMU_NAME` / `TPM2B_NAME` contents: a handle or a hash-algorithm id and a digest.
pub(crate) const MAX_NAME: usize = 2 + 64;
/// Size of `TPM2B_DATA` contents (`sizeof(TPMT_HA)`).
const MAX_DATA: usize = 2 + 64;
/// Size of `TPM2B_DIGEST` contents (`sizeof(TPMU_HA)`).
pub(crate) const MAX_DIGEST: usize = 64;

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// `clock`: milliseconds the TPM has been powered since it was last cleared.
    pub clock: u64,
    /// `resetCount`: TPM resets since the last TPM2_Clear.
    pub reset_count: u32,
    /// `restartCount`: TPM restarts or resumes since the last reset or clear.
    pub restart_count: u32,
    /// `safe`: whether `clock` can never have been reported lower than now (`YES` is 1).
    pub safe: bool,
}

/// `TPMS_QUOTE_INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `pcrSelect`: the quoted PCRs.
    pub pcr_select: PcrSelection,
    /// `pcrDigest`: the digest of the quoted PCR values, with the signing scheme's hash.
    pub pcr_digest: Vec<u8>,
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// `magic` (must be [`TPM_GENERATED_VALUE`]; kept as read so the appraisal can report it).
    pub magic: u32,
    /// `type` (always [`TPM_ST_ATTEST_QUOTE`] here: other types are not parsed).
    pub attest_type: u16,
    /// `qualifiedSigner`: the qualified name of the signing key (`TPM2B_NAME` contents).
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's qualifying data, here the verifier's nonce or key binding.
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`: vendor-specific.
    pub firmware_version: u64,
    /// `attested.quote`.
    pub quote: QuoteInfo,
    /// Whether the input was a `TPM2B_ATTEST` (size-prefixed) rather than a bare `TPMS_ATTEST`.
    pub was_tpm2b: bool,
}

/// The bytes a quote signature covers: `input` without its `TPM2B_ATTEST` size prefix, when it has
/// one (detected by [`TPM_GENERATED_VALUE`] right after a size that covers the rest exactly).
pub fn signed_bytes(input: &[u8]) -> &[u8] {
    strip_tpm2b(input, |b| b.starts_with(&TPM_GENERATED_VALUE.to_be_bytes()))
}

impl Attest {
    /// Parses a `TPMS_ATTEST` or a `TPM2B_ATTEST` holding one. Only quotes are read: another
    /// `type` is an error. Trailing bytes are an error.
    pub fn parse(input: &[u8]) -> Result<Self> {
        let body = signed_bytes(input);
        let was_tpm2b = body.len() != input.len();
        let mut r = Reader::new("TPMS_ATTEST", body);
        let magic = r.u32("magic")?;
        let at = r.offset();
        let attest_type = r.u16("type")?;
        if attest_type != TPM_ST_ATTEST_QUOTE {
            return Err(r.invalid_at(
                "type",
                at,
                format!("TPM_ST_ATTEST_QUOTE (0x{TPM_ST_ATTEST_QUOTE:04x})"),
                format!("0x{attest_type:04x}"),
            ));
        }
        let qualified_signer = r.tpm2b("qualifiedSigner", MAX_NAME)?.to_vec();
        let extra_data = r.tpm2b("extraData", MAX_DATA)?.to_vec();
        let clock = r.u64("clockInfo.clock")?;
        let reset_count = r.u32("clockInfo.resetCount")?;
        let restart_count = r.u32("clockInfo.restartCount")?;
        let at = r.offset();
        let safe = match r.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            other => {
                return Err(r.invalid_at(
                    "clockInfo.safe",
                    at,
                    "YES (1) or NO (0)",
                    other.to_string(),
                ));
            }
        };
        let firmware_version = r.u64("firmwareVersion")?;
        let pcr_select = PcrSelection::read(&mut r)?;
        let pcr_digest = r.tpm2b("attested.quote.pcrDigest", MAX_DIGEST)?.to_vec();
        r.finish()?;
        Ok(Self {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            quote: QuoteInfo {
                pcr_select,
                pcr_digest,
            },
            was_tpm2b,
        })
    }

    /// The marshalled bare `TPMS_ATTEST` (what a TPM signs), for building quotes in tests and tools.
    pub fn marshal(&self) -> Result<Vec<u8>> {
        use super::marshal::put_tpm2b;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.attest_type.to_be_bytes());
        put_tpm2b(&mut out, "qualifiedSigner", &self.qualified_signer)?;
        put_tpm2b(&mut out, "extraData", &self.extra_data)?;
        out.extend_from_slice(&self.clock_info.clock.to_be_bytes());
        out.extend_from_slice(&self.clock_info.reset_count.to_be_bytes());
        out.extend_from_slice(&self.clock_info.restart_count.to_be_bytes());
        out.push(u8::from(self.clock_info.safe));
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        out.extend_from_slice(&self.quote.pcr_select.marshal()?);
        put_tpm2b(&mut out, "pcrDigest", &self.quote.pcr_digest)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::TpmError;

    fn sample() -> Attest {
        Attest {
            magic: TPM_GENERATED_VALUE,
            attest_type: TPM_ST_ATTEST_QUOTE,
            qualified_signer: vec![0, 0x0b, 1, 2, 3],
            extra_data: vec![0x90, 0x09],
            clock_info: ClockInfo {
                clock: 7,
                reset_count: 2,
                restart_count: 1,
                safe: true,
            },
            firmware_version: 0x2016_0511_0016_2800,
            quote: QuoteInfo {
                pcr_select: PcrSelection::parse_tpm2_tools("sha256:0,1,16").unwrap(),
                pcr_digest: vec![0xAB; 32],
            },
            was_tpm2b: false,
        }
    }

    #[test]
    fn bare_and_tpm2b_parse_alike() {
        let a = sample();
        let bytes = a.marshal().unwrap();
        assert_eq!(Attest::parse(&bytes).unwrap(), a);
        let mut wrapped = (bytes.len() as u16).to_be_bytes().to_vec();
        wrapped.extend_from_slice(&bytes);
        let w = Attest::parse(&wrapped).unwrap();
        assert!(w.was_tpm2b);
        assert_eq!(signed_bytes(&wrapped), &bytes[..]);
        assert_eq!(
            Attest {
                was_tpm2b: false,
                ..w
            },
            a
        );
    }

    #[test]
    fn errors_name_field_and_offset() {
        let bytes = sample().marshal().unwrap();
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            Attest::parse(&extra).unwrap_err(),
            TpmError::TrailingBytes {
                structure: "TPMS_ATTEST",
                offset: bytes.len(),
                found: 1
            }
        );
        let mut certify = bytes.clone();
        certify[5] = 0x17;
        let e = Attest::parse(&certify).unwrap_err().to_string();
        assert!(e.contains("TPMS_ATTEST.type at byte 4"), "{e}");
        let mut unsafe_flag = bytes.clone();
        unsafe_flag[4 + 2 + 7 + 4 + 8 + 4 + 4] = 2;
        let e = Attest::parse(&unsafe_flag).unwrap_err().to_string();
        assert!(e.contains("clockInfo.safe at byte 33"), "{e}");
        for len in 0..bytes.len() {
            assert!(Attest::parse(&bytes[..len]).is_err(), "length {len}");
        }
    }
}
