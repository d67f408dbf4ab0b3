//! Certificates and PEM bundles (AK/EK roots, VCEK/VLEK chains, `--certs`): DER or PEM in, each
//! certificate parsed. Property: every input is decided (libFuzzer's timeout catches a hang like
//! `der` 0.7's PEM reader on `MA==`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secllama_fuzz_bounds::decided(data, || {
        if let Ok(certs) = secllama_verifier::x509::load_certificates(data) {
            for der in &certs {
                let _ = secllama_verifier::x509::Cert::parse(der, "fuzz");
            }
        }
        let _ = secllama_protocol::pem::blocks(data, "CERTIFICATE", 64);
    });
});
