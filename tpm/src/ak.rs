//! The attestation key (TPM 2.0 Part 3 §12.1, TCG EK Credential Profile): a restricted signing key
//! created under the EK — RSA-2048 RSASSA-SHA256 or ECC P-256 ECDSA-SHA256 — and made persistent at
//! a configurable handle so it survives restarts (a verifier pins it once).

use crate::ek::EkKind;
use crate::{Result, Tpm, TpmError};
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::Auth;
use tss_esapi::traits::Marshall;

/// Persistent handle used for the AK unless configured otherwise (owner range 0x81000000–0x817FFFFF).
pub const DEFAULT_AK_HANDLE: u32 = 0x8101_0002;

/// The AK's key type and signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AkKind {
    /// RSA-2048 with RSASSA-PKCS1-v1_5 / SHA-256.
    #[default]
    RsaSsaSha256,
    /// ECC P-256 with ECDSA / SHA-256.
    EcdsaP256Sha256,
}

/// What a verifier needs about the AK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkInfo {
    /// The persistent handle.
    pub handle: u32,
    /// TPM2B_PUBLIC bytes.
    pub public: Vec<u8>,
    /// The AK's Name (nameAlg ‖ H(TPMT_PUBLIC)).
    pub name: Vec<u8>,
    /// The AK's qualified name (what a quote's qualifiedSigner carries).
    pub qualified_name: Vec<u8>,
}

/// Prefixes `bytes` with its u16 big-endian length (a TPM2B).
pub(crate) fn tpm2b(bytes: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(bytes.len()).map_err(|_| {
        TpmError::unexpected(
            "TPM2B",
            "at most 65535 bytes",
            format!("{} bytes", bytes.len()),
        )
    })?;
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(out)
}

/// `NoDa(true)` sets `noDA` on the AK template (for AKs with an auth value); `NoDa(false)` leaves
/// tss-esapi's template as it is.
#[derive(Debug, Clone, Copy)]
struct NoDa(bool);

impl tss_esapi::abstraction::KeyCustomization for NoDa {
    fn attributes(
        &self,
        attributes_builder: tss_esapi::attributes::ObjectAttributesBuilder,
    ) -> tss_esapi::attributes::ObjectAttributesBuilder {
        if self.0 {
            attributes_builder.with_no_da(true)
        } else {
            attributes_builder
        }
    }
}

/// An AK auth value: 1–32 bytes (the AK's name algorithm is SHA-256).
fn ak_auth(bytes: &[u8]) -> Result<Auth> {
    if bytes.is_empty() || bytes.len() > 32 {
        return Err(TpmError::Config {
            what: "AK auth value",
            expected: "1 to 32 bytes",
            found: format!("{} bytes", bytes.len()),
        });
    }
    Auth::try_from(bytes.to_vec()).map_err(TpmError::tss("building the AK auth value"))
}

fn persistent(handle: u32) -> Result<PersistentTpmHandle> {
    PersistentTpmHandle::new(handle).map_err(|_| TpmError::Config {
        what: "AK handle",
        expected: "a persistent handle 0x81000000..=0x81FFFFFF",
        found: format!("{handle:#010x}"),
    })
}

impl Tpm {
    /// Looks up the object at a persistent handle, if one is there.
    pub(crate) fn persistent_object(&mut self, handle: u32) -> Result<Option<ObjectHandle>> {
        let tpm_handle = TpmHandle::Persistent(persistent(handle)?);
        if !self.handle_present(handle)? {
            return Ok(None);
        }
        self.ctx()
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(tpm_handle))
            .map(Some)
            .map_err(TpmError::tss("opening a persistent handle"))
    }

    /// The AK at `handle`, created under the EK (with an empty auth value) and persisted there
    /// first if the handle is empty. Development only: anyone with access to this TPM can quote
    /// with such an AK; `secllama launch` uses [`Tpm::create_ak`] with an auth value instead.
    pub fn ensure_ak(&mut self, handle: u32, kind: AkKind) -> Result<AkInfo> {
        if self.persistent_object(handle)?.is_none() {
            self.create_ak_at(handle, kind, None)?;
        }
        self.ak_info(handle)
    }

    /// Whether a persistent object is at `handle`.
    pub fn has_persistent(&mut self, handle: u32) -> Result<bool> {
        Ok(self.persistent_object(handle)?.is_some())
    }

    /// Creates an AK under the EK whose use needs `auth` (TPM 2.0 Part 1 §19.6.4: `userWithAuth`
    /// with a non-empty authValue), persists it at the empty `handle` and returns it. Quotes with
    /// it then need [`Tpm::set_ak_auth`] with the same bytes (1–32 bytes; errors otherwise, and
    /// when `handle` is occupied).
    pub fn create_ak(&mut self, handle: u32, kind: AkKind, auth: &[u8]) -> Result<AkInfo> {
        if self.persistent_object(handle)?.is_some() {
            return Err(TpmError::unexpected(
                "AK handle",
                format!("an empty persistent handle {handle:#010x}"),
                "an object already there",
            ));
        }
        self.create_ak_at(handle, kind, Some(ak_auth(auth)?))?;
        self.ak_info(handle)
    }

    /// The auth value every later quote presents for the AK (kept in this connection only).
    pub fn set_ak_auth(&mut self, auth: &[u8]) -> Result<()> {
        self.ak_auth = Some(ak_auth(auth)?);
        Ok(())
    }

    /// With an auth value the AK is also `noDA`: a 32-byte random value cannot be guessed, and
    /// without `noDA` every wrong guess by anyone with access to the TPM would count towards the
    /// TPM's dictionary-attack lockout — a way to stop the agent's quotes (Part 1 §19.8.6).
    fn create_ak_at(&mut self, handle: u32, kind: AkKind, auth: Option<Auth>) -> Result<()> {
        let persistent = persistent(handle)?;
        let (key_alg, scheme) = match kind {
            AkKind::RsaSsaSha256 => (
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                SignatureSchemeAlgorithm::RsaSsa,
            ),
            AkKind::EcdsaP256Sha256 => (
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
            ),
        };
        self.with_ek(EkKind::Rsa2048, |tpm, ek| {
            let created = ak::create_ak_2(
                tpm.ctx(),
                ek,
                HashingAlgorithm::Sha256,
                key_alg,
                scheme,
                auth.clone(),
                NoDa(auth.is_some()),
            )
            .map_err(TpmError::tss("creating the AK under the EK"))?;
            let loaded = ak::load_ak(tpm.ctx(), ek, auth, created.out_private, created.out_public)
                .map_err(TpmError::tss("loading the new AK"))?;
            let persisted = tpm
                .ctx()
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.evict_control(
                        Provision::Owner,
                        loaded.into(),
                        Persistent::Persistent(persistent),
                    )
                });
            let flushed = tpm
                .ctx()
                .flush_context(loaded.into())
                .map_err(TpmError::tss("flushing the AK"));
            persisted.map_err(TpmError::tss("making the AK persistent"))?;
            flushed
        })
    }

    /// The persistent AK as a key handle.
    pub(crate) fn ak_handle(&mut self, handle: u32) -> Result<KeyHandle> {
        self.persistent_object(handle)?
            .map(KeyHandle::from)
            .ok_or_else(|| {
                TpmError::unexpected(
                    "AK",
                    format!("a key at persistent handle {handle:#010x}"),
                    "an empty handle",
                )
            })
    }

    /// The AK's public area, name and qualified name.
    pub fn ak_info(&mut self, handle: u32) -> Result<AkInfo> {
        let key = self.ak_handle(handle)?;
        let (public, name, qualified) = self
            .ctx()
            .read_public(key)
            .map_err(TpmError::tss("reading the AK public area"))?;
        Ok(AkInfo {
            handle,
            public: tpm2b(
                &public
                    .marshall()
                    .map_err(TpmError::tss("marshalling the AK public area"))?,
            )?,
            name: name.value().to_vec(),
            qualified_name: qualified.value().to_vec(),
        })
    }

    /// Removes the persistent AK (operators rotate keys; tests start clean).
    pub fn evict_ak(&mut self, handle: u32) -> Result<()> {
        let persistent = persistent(handle)?;
        if let Some(obj) = self.persistent_object(handle)? {
            self.ctx()
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.evict_control(Provision::Owner, obj, Persistent::Persistent(persistent))
                })
                .map_err(TpmError::tss("evicting the AK"))?;
        }
        Ok(())
    }
}
