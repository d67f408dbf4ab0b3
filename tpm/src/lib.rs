//! # secllama-tpm — the only crate that talks to a TPM (not yet implemented)
//!
//! This crate will own every TPM operation secllama performs, through tss-esapi 7.7 over a TCTI
//! taken from config or `SECLLAMA_TCTI` (`device:/dev/tpmrm0` by default, `swtpm:host=…,port=…` in
//! tests): EK and AK creation, PCR extension with a TCG crypto-agile event log, quotes, sealing under
//! a PCR policy, NV monotonic counters and credential activation.
//!
//! It is empty until the TPM evidence issue fills it; nothing here pretends to work. It will be the
//! one crate that may use `unsafe` (FFI through tss-esapi) and must say why where it does.
