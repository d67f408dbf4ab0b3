//! Credential activation (TPM 2.0 Part 3 §12.5, Part 1 §24): the TPM releases a verifier's secret,
//! wrapped by MakeCredential for the EK and bound to the AK's Name, only if that AK is loaded beside
//! that EK — proving to the verifier that the AK lives in the TPM whose EK it trusts.

use crate::ek::EkKind;
use crate::{Result, Tpm, TpmError};
use tss_esapi::handles::AuthHandle;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{EncryptedSecret, IdObject};
use zeroize::Zeroizing;

/// Strips and checks the u16 size of a TPM2B.
fn tpm2b_body<'a>(what: &'static str, b: &'a [u8]) -> Result<&'a [u8]> {
    let bad = || {
        TpmError::unexpected(
            what,
            "a TPM2B (u16 size, then that many bytes)",
            format!("{} bytes", b.len()),
        )
    };
    let (size, body) = b.split_first_chunk::<2>().ok_or_else(bad)?;
    if usize::from(u16::from_be_bytes(*size)) != body.len() {
        return Err(bad());
    }
    Ok(body)
}

impl Tpm {
    /// Activates a credential: `id_object` (TPM2B_ID_OBJECT) and `encrypted_secret`
    /// (TPM2B_ENCRYPTED_SECRET), made for the RSA-2048 EK and the Name of the AK at `ak_handle`.
    /// Returns the secret.
    pub fn activate_credential(
        &mut self,
        ak_handle: u32,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let id = IdObject::try_from(tpm2b_body("credential blob", id_object)?.to_vec())
            .map_err(TpmError::tss("reading the credential blob"))?;
        let secret =
            EncryptedSecret::try_from(tpm2b_body("encrypted secret", encrypted_secret)?.to_vec())
                .map_err(TpmError::tss("reading the encrypted secret"))?;
        let ak = self.ak_handle(ak_handle)?;
        self.with_ek(EkKind::Rsa2048, |tpm, ek| {
            tpm.with_policy_session(|tpm, session, policy| {
                // The default EK template's policy is PolicySecret(TPM_RH_ENDORSEMENT).
                tpm.ctx()
                    .execute_with_nullauth_session(|ctx| {
                        ctx.policy_secret(
                            policy,
                            AuthHandle::Endorsement,
                            Default::default(),
                            Default::default(),
                            Default::default(),
                            None,
                        )
                    })
                    .map_err(TpmError::tss("PolicySecret(endorsement)"))?;
                let digest = tpm
                    .ctx()
                    .execute_with_sessions(
                        (Some(AuthSession::Password), Some(session), None),
                        |ctx| ctx.activate_credential(ak, ek, id, secret),
                    )
                    .map_err(TpmError::tss("activating the credential"))?;
                Ok(Zeroizing::new(digest.value().to_vec()))
            })
        })
    }
}
