//! Quotes (TPM 2.0 Part 3 §18.4): the AK signs a TPMS_ATTEST holding the qualifying data and the
//! digest of the selected PCRs. tss-esapi returns parsed structures, so the attest and signature are
//! re-marshalled to give the exact bytes the TPM signed.

use crate::eventlog::HashAlg;
use crate::pcr::{PcrValues, selection};
use crate::{Result, Tpm, TpmError};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Data, SignatureScheme};
use tss_esapi::traits::Marshall;

/// Largest qualifying data a quote carries (TPM2B_DATA of a SHA-512 TPM).
pub const MAX_QUALIFYING_DATA: usize = 64;

/// A quote and everything a verifier needs to appraise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The signed TPMS_ATTEST bytes.
    pub attest: Vec<u8>,
    /// The TPMT_SIGNATURE bytes.
    pub signature: Vec<u8>,
    /// The AK's TPM2B_PUBLIC bytes.
    pub ak_public: Vec<u8>,
    /// The quoted PCR values.
    pub pcrs: PcrValues,
}

impl Tpm {
    /// Quotes PCRs `indices` of `banks` with the AK at `ak_handle` over `qualifying_data`.
    ///
    /// The PCRs are read before and after the quote; if they moved in between, the quote is taken
    /// again (at most three times), so the returned values are the ones the quote covers.
    pub fn quote(
        &mut self,
        ak_handle: u32,
        qualifying_data: &[u8],
        banks: &[HashAlg],
        indices: &[u32],
    ) -> Result<Quote> {
        if qualifying_data.len() > MAX_QUALIFYING_DATA {
            return Err(TpmError::Config {
                what: "qualifying data",
                expected: "at most 64 bytes",
                found: format!("{} bytes", qualifying_data.len()),
            });
        }
        let ak = self.ak_handle(ak_handle)?;
        if let Some(auth) = self.ak_auth.clone() {
            self.ctx()
                .tr_set_auth(ak.into(), auth)
                .map_err(TpmError::tss("presenting the AK auth value"))?;
        }
        let ak_public = self.ak_info(ak_handle)?.public;
        let sel = selection(banks, indices)?;
        for _ in 0..3 {
            let before = self.read_pcrs(sel.clone())?;
            let data = Data::try_from(qualifying_data.to_vec())
                .map_err(TpmError::tss("building qualifying data"))?;
            let (attest, signature) = self
                .ctx()
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(ak, data, SignatureScheme::Null, sel.clone())
                })
                .map_err(TpmError::tss("quoting PCRs"))?;
            let after = self.read_pcrs(sel.clone())?;
            if before == after {
                return Ok(Quote {
                    attest: attest
                        .marshall()
                        .map_err(TpmError::tss("marshalling TPMS_ATTEST"))?,
                    signature: signature
                        .marshall()
                        .map_err(TpmError::tss("marshalling TPMT_SIGNATURE"))?,
                    ak_public,
                    pcrs: after,
                });
            }
        }
        Err(TpmError::unexpected(
            "PCRs during a quote",
            "stable values",
            "values that kept changing",
        ))
    }
}
