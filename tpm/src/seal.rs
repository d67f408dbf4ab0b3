//! Sealing (TPM 2.0 Part 1 §19.6.10, Part 3 §23.7 PolicyPCR): a secret stored as a keyed-hash object
//! under the storage root key, whose authPolicy is PolicyPCR over the current PCR values, so only the
//! same measured software state can unseal it. The blob lives on the host's disk; without the TPM and
//! the PCR state it is useless.

use crate::eventlog::HashAlg;
use crate::pcr::selection;
use crate::{Result, Tpm, TpmError};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, KeyedHashScheme, PcrSelectionList, Private, Public, PublicBuilder,
    PublicKeyedHashParameters, RsaExponent, SensitiveData, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use zeroize::Zeroizing;

/// Largest secret a sealed object holds (MAX_SYM_DATA).
pub const MAX_SEALED_LEN: usize = 128;

/// A sealed secret as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// TPM2B_PRIVATE contents (encrypted under the SRK).
    pub private: Vec<u8>,
    /// TPMT_PUBLIC of the sealed object (carries the policy digest).
    pub public: Vec<u8>,
    /// The banks of the PCR policy.
    pub banks: Vec<HashAlg>,
    /// The PCR indices of the policy.
    pub pcrs: Vec<u32>,
}

impl SealedSecret {
    /// A byte form for storing the blob: `u16 len ‖ private ‖ u16 len ‖ public ‖ u8 n ‖ n × u16
    /// bank algorithm id ‖ u8 m ‖ m × u8 PCR index` (big-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.private.len() + self.public.len());
        for part in [&self.private, &self.public] {
            b.extend_from_slice(&(part.len() as u16).to_be_bytes());
            b.extend_from_slice(part);
        }
        b.push(self.banks.len() as u8);
        for bank in &self.banks {
            b.extend_from_slice(&bank.alg_id().to_be_bytes());
        }
        b.push(self.pcrs.len() as u8);
        b.extend(self.pcrs.iter().map(|&p| p as u8));
        b
    }

    /// Reads [`SealedSecret::to_bytes`]; anything else (trailing bytes included) is an error.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |found: String| TpmError::Config {
            what: "sealed secret blob",
            expected: "private, public, banks and PCR indices as SealedSecret::to_bytes writes them",
            found,
        };
        let mut rest = b;
        let mut take = |n: usize| -> Result<&[u8]> {
            if rest.len() < n {
                return Err(bad(format!(
                    "{} bytes where {n} more were needed",
                    rest.len()
                )));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let mut parts = Vec::new();
        for _ in 0..2 {
            let len = take(2)?;
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            parts.push(take(len)?.to_vec());
        }
        let n = take(1)?[0] as usize;
        let mut banks = Vec::with_capacity(n);
        for _ in 0..n {
            let id = take(2)?;
            let id = u16::from_be_bytes([id[0], id[1]]);
            banks.push(
                HashAlg::from_alg_id(id).ok_or_else(|| bad(format!("bank algorithm {id:#06x}")))?,
            );
        }
        let m = take(1)?[0] as usize;
        let pcrs = take(m)?.iter().map(|&p| u32::from(p)).collect::<Vec<_>>();
        if let Some(&p) = pcrs.iter().find(|&&p| p > 23) {
            return Err(bad(format!("PCR index {p}")));
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        let public = parts.pop().unwrap_or_default();
        let private = parts.pop().unwrap_or_default();
        Ok(Self {
            private,
            public,
            banks,
            pcrs,
        })
    }
}

/// The SRK's public template (see [`Tpm::with_srk`]).
fn srk_template() -> tss_esapi::Result<Public> {
    use tss_esapi::attributes::ObjectAttributesBuilder;
    use tss_esapi::structures::{PublicKeyRsa, PublicRsaParametersBuilder};
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(
            PublicRsaParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                RsaKeyBits::Rsa2048,
                RsaExponent::default(),
            )
            .build()?,
        )
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
}

impl Tpm {
    /// Runs `f` with the storage root key: TCG's RSA-2048 SRK template (TPM 2.0 Provisioning
    /// Guidance §7.5.1: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, **noDA**,
    /// restricted, decrypt; AES-128-CFB), created from the owner seed and flushed afterwards.
    /// `noDA` matters: a TPM that lost power without TPM2_Shutdown counts a dictionary-attack
    /// failure at its next start, and after a few crashes it refuses every DA-protected
    /// authorization (lockout) — with a DA-protected SRK, loading the sealed log identity would
    /// fail then, although its empty auth was never guessed (tested: `tests/tests/log_crash.rs`).
    fn with_srk<T>(&mut self, f: impl FnOnce(&mut Tpm, KeyHandle) -> Result<T>) -> Result<T> {
        let template = srk_template().map_err(TpmError::tss("building the SRK template"))?;
        let srk = self
            .ctx()
            .execute_with_nullauth_session(|ctx| {
                ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(TpmError::tss("creating the storage root key"))?
            .key_handle;
        let result = f(self, srk);
        let flushed = self
            .ctx()
            .flush_context(srk.into())
            .map_err(TpmError::tss("flushing the SRK"));
        let value = result?;
        flushed?;
        Ok(value)
    }

    /// Runs `f` with a fresh SHA-256 policy session (encrypted parameters), flushing the session
    /// whatever `f` returns. Shared by sealing (PolicyPCR) and credential activation (PolicySecret).
    pub(crate) fn with_policy_session<T>(
        &mut self,
        f: impl FnOnce(&mut Tpm, AuthSession, PolicySession) -> Result<T>,
    ) -> Result<T> {
        let session = self
            .ctx()
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(TpmError::tss("starting a policy session"))?
            .ok_or_else(|| TpmError::unexpected("policy session", "a session handle", "none"))?;
        let result = (|| {
            let (attrs, mask) = SessionAttributesBuilder::new()
                .with_decrypt(true)
                .with_encrypt(true)
                .build();
            self.ctx()
                .tr_sess_set_attributes(session, attrs, mask)
                .map_err(TpmError::tss("setting session attributes"))?;
            let policy = PolicySession::try_from(session)
                .map_err(TpmError::tss("using a policy session"))?;
            f(self, session, policy)
        })();
        let flushed = self
            .ctx()
            .flush_context(SessionHandle::from(session).into())
            .map_err(TpmError::tss("flushing the policy session"));
        let value = result?;
        flushed?;
        Ok(value)
    }

    /// Runs `f` with a policy session that has satisfied PolicyPCR for `sel` at the current PCR
    /// values.
    fn with_pcr_policy<T>(
        &mut self,
        sel: PcrSelectionList,
        f: impl FnOnce(&mut Tpm, AuthSession) -> Result<T>,
    ) -> Result<T> {
        self.with_policy_session(|tpm, session, policy| {
            // An empty pcrDigest makes the TPM use the current PCR values.
            tpm.ctx()
                .policy_pcr(policy, Digest::default(), sel)
                .map_err(TpmError::tss("PolicyPCR"))?;
            f(tpm, session)
        })
    }

    /// Seals `secret` to the current values of PCRs `indices` in `banks`.
    pub fn seal(
        &mut self,
        secret: &[u8],
        banks: &[HashAlg],
        indices: &[u32],
    ) -> Result<SealedSecret> {
        if secret.is_empty() || secret.len() > MAX_SEALED_LEN {
            return Err(TpmError::Config {
                what: "sealed secret",
                expected: "1 to 128 bytes",
                found: format!("{} bytes", secret.len()),
            });
        }
        let sel = selection(banks, indices)?;
        let policy_digest = self.with_pcr_policy(sel, |tpm, session| {
            let policy = PolicySession::try_from(session)
                .map_err(TpmError::tss("using a policy session"))?;
            tpm.ctx()
                .policy_get_digest(policy)
                .map_err(TpmError::tss("reading the policy digest"))
        })?;
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_no_da(true)
            .with_admin_with_policy(true)
            .with_user_with_auth(false)
            .build()
            .map_err(TpmError::tss("building sealed-object attributes"))?;
        let public = PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::KeyedHash)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_auth_policy(policy_digest)
            .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
            .with_keyed_hash_unique_identifier(Digest::default())
            .build()
            .map_err(TpmError::tss("building the sealed-object template"))?;
        let data = SensitiveData::try_from(secret.to_vec())
            .map_err(TpmError::tss("wrapping the secret"))?;
        let created = self.with_srk(|tpm, srk| {
            tpm.ctx()
                .execute_with_nullauth_session(|ctx| {
                    ctx.create(srk, public, None, Some(data), None, None)
                })
                .map_err(TpmError::tss("creating the sealed object"))
        })?;
        Ok(SealedSecret {
            private: created.out_private.value().to_vec(),
            public: created
                .out_public
                .marshall()
                .map_err(TpmError::tss("marshalling the sealed object"))?,
            banks: banks.to_vec(),
            pcrs: indices.to_vec(),
        })
    }

    /// Unseals; fails when any PCR of the policy has changed since sealing.
    pub fn unseal(&mut self, sealed: &SealedSecret) -> Result<Zeroizing<Vec<u8>>> {
        let private = Private::try_from(sealed.private.clone())
            .map_err(TpmError::tss("reading the sealed private"))?;
        let public = Public::unmarshall(&sealed.public)
            .map_err(TpmError::tss("reading the sealed public"))?;
        let sel = selection(&sealed.banks, &sealed.pcrs)?;
        self.with_srk(|tpm, srk| {
            let object = tpm
                .ctx()
                .execute_with_nullauth_session(|ctx| ctx.load(srk, private, public))
                .map_err(TpmError::tss("loading the sealed object"))?;
            let result = tpm.with_pcr_policy(sel, |tpm, session| {
                tpm.ctx()
                    .execute_with_session(Some(session), |ctx| ctx.unseal(object.into()))
                    .map_err(TpmError::tss(
                        "unsealing (the PCR policy is not satisfied if PCRs changed)",
                    ))
            });
            let flushed = tpm
                .ctx()
                .flush_context(object.into())
                .map_err(TpmError::tss("flushing the sealed object"));
            let data = result?;
            flushed?;
            Ok(Zeroizing::new(data.value().to_vec()))
        })
    }
}
