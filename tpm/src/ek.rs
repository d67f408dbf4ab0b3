//! The endorsement key (TCG EK Credential Profile §2.2): a primary key in the endorsement hierarchy
//! created from the default template, RSA-2048 by default or ECC P-256, and its certificate read from
//! NV (0x01c00002 for RSA-2048, 0x01c0000a for ECC P-256) when the manufacturer provisioned one.

/// NV index of the RSA-2048 EK certificate (EK Credential Profile §2.2.1.4).
pub const RSA_2048_EK_CERTIFICATE_NV_INDEX: u32 = 0x01c0_0002;
/// NV index of the ECC P-256 EK certificate.
pub const ECC_P256_EK_CERTIFICATE_NV_INDEX: u32 = 0x01c0_000a;

use crate::{Result, Tpm, TpmError};
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ek};
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::CapabilityData;
use tss_esapi::traits::Marshall;

/// Which default EK template to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EkKind {
    /// RSA-2048 (template L-1), the default.
    #[default]
    Rsa2048,
    /// ECC NIST P-256 (template L-2).
    EccP256,
}

impl EkKind {
    pub(crate) fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        }
    }
}

impl Tpm {
    /// Creates the EK (a primary, so the same template always gives the same key), runs `f` with it,
    /// and flushes it whatever `f` returns.
    pub(crate) fn with_ek<T>(
        &mut self,
        kind: EkKind,
        f: impl FnOnce(&mut Tpm, KeyHandle) -> Result<T>,
    ) -> Result<T> {
        let ek = ek::create_ek_object_2(self.ctx(), kind.selection(), None)
            .map_err(TpmError::tss("creating the EK from its default template"))?;
        let result = f(self, ek);
        let flushed = self
            .ctx()
            .flush_context(ek.into())
            .map_err(TpmError::tss("flushing the EK"));
        let value = result?;
        flushed?;
        Ok(value)
    }

    /// The EK's TPM2B_PUBLIC bytes.
    pub fn ek_public(&mut self, kind: EkKind) -> Result<Vec<u8>> {
        self.with_ek(kind, |tpm, ek| {
            let (public, _, _) = tpm
                .ctx()
                .read_public(ek)
                .map_err(TpmError::tss("reading the EK public area"))?;
            crate::ak::tpm2b(
                &public
                    .marshall()
                    .map_err(TpmError::tss("marshalling the EK public area"))?,
            )
        })
    }

    /// The EK certificate (DER) from NV, or `None` when the TPM has none for this template.
    pub fn ek_certificate(&mut self, kind: EkKind) -> Result<Option<Vec<u8>>> {
        let index = match kind {
            EkKind::Rsa2048 => RSA_2048_EK_CERTIFICATE_NV_INDEX,
            EkKind::EccP256 => ECC_P256_EK_CERTIFICATE_NV_INDEX,
        };
        if !self.handle_present(index)? {
            return Ok(None);
        }
        ek::retrieve_ek_pubcert(self.ctx(), kind.selection())
            .map(|cert| (!cert.is_empty()).then_some(cert))
            .map_err(TpmError::tss("reading the EK certificate from NV"))
    }

    /// Whether a persistent object or NV index exists at `handle` (asked with TPM2_GetCapability, so
    /// a missing handle is an answer, not an error).
    pub(crate) fn handle_present(&mut self, handle: u32) -> Result<bool> {
        let (data, _) = self
            .ctx()
            .get_capability(CapabilityType::Handles, handle, 1)
            .map_err(TpmError::tss("listing handles"))?;
        let CapabilityData::Handles(list) = data else {
            return Err(TpmError::unexpected(
                "handle list",
                "TPM_CAP_HANDLES data",
                "another capability",
            ));
        };
        Ok(list.first().is_some_and(|h| u32::from(*h) == handle))
    }
}
