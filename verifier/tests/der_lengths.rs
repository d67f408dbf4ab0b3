//! A DER length is a claim, not an allocation (found by the `x509` fuzz target, issue 16):
//! `der` 0.7 allocates an owned value's declared length before it checks the bytes are there, so
//! a 1.4 KiB certificate whose name claims an 8 MiB string made the verifier allocate 8 MiB, and a
//! 12-byte one whose serial number claims 256 MiB, 256 MiB. Every DER path of the verifier checks
//! the structure first (`secllama_protocol::x690`). Each case here is refused with the length it
//! claimed, and what it made the verifier allocate at once is counted by this binary's allocator
//! and must stay within a small multiple of the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: a failed unwrap is a failed test
#![allow(unsafe_code)] // the counting global allocator below: what the test measures

use secllama_verifier::x509;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Counts the bytes the armed thread holds at once (the tests run on several threads).
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let live = LIVE.with(Cell::get) + n;
        LIVE.with(|l| l.set(live));
        PEAK.with(|p| p.set(p.get().max(live)));
    }
}

fn sub(n: usize) {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        LIVE.with(|l| l.set(l.get().saturating_sub(n)));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: the caller's layout, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: the caller's layout, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: a pointer this allocator returned, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        add(new);
        sub(layout.size());
        // SAFETY: a pointer this allocator returned, with its layout and the caller's new size.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, returning its result and the most bytes it held at once.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, PEAK.with(Cell::get))
}

/// Decided, refused naming the claimed length, and held at most 1 MiB + 16 bytes per input byte
/// at once (what the claims here would make `der` allocate is 8 MiB and 256 MiB).
fn refused_within_bounds(what: &str, input: &[u8], f: impl FnOnce(&[u8]) -> Result<(), String>) {
    let (result, held) = peak(|| f(input));
    let bound = (1 << 20) + 16 * input.len();
    assert!(
        held <= bound,
        "{what}: a {}-byte input held {held} bytes at once (bound {bound})",
        input.len()
    );
    let e = result.expect_err(what);
    assert!(e.contains("a length of"), "{what}: {e}");
}

/// A certificate-shaped SEQUENCE whose serial number INTEGER claims 256 MiB − 1.
const SERIAL_256M: [u8; 12] = [
    0x30, 0x0a, 0x30, 0x08, 0x02, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x01, 0x02,
];

fn fuzz_case() -> Vec<u8> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/x509/declared-length-8m.der");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n").into_bytes()
}

#[test]
fn certificates_claiming_more_than_they_hold_are_refused_without_allocating_it() {
    for (name, der) in [
        ("serial claims 256 MiB", SERIAL_256M.to_vec()),
        ("fuzz case", fuzz_case()),
    ] {
        refused_within_bounds(&format!("{name} (DER)"), &der, |d| {
            x509::load_certificates(d).map(|_| ())
        });
        refused_within_bounds(&format!("{name} (PEM)"), &pem(&der), |d| {
            x509::load_certificates(d).map(|_| ())
        });
        refused_within_bounds(&format!("{name} (Cert::parse)"), &der, |d| {
            x509::Cert::parse(d, "leaf").map(|_| ())
        });
        let none: [Vec<u8>; 0] = [];
        let policy = x509::PathPolicy {
            at: SystemTime::UNIX_EPOCH,
            known_critical: &[],
            crls: &[],
        };
        refused_within_bounds(&format!("{name} (verify_path)"), &der, |d| {
            let p = x509::verify_path(d, "leaf", &none, &none, &policy);
            Err(p.reasons.join("; "))
        });
    }
    // The fuzz case's message names where the claim is.
    let e = x509::load_certificates(&fuzz_case()).unwrap_err();
    assert!(e.contains("a length of 8618883 at byte 129"), "{e}");
}

#[test]
fn a_crl_claiming_more_than_it_holds_is_refused_without_allocating_it() {
    // The real Turin VCEK chain, so the CRLs are read (the path is found first).
    let shared = std::env::var_os("SECLLAMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let vcek = std::fs::read(
        shared.join("vectors/snp-report/virtee-turin-vcek-chain-only/vcek_turin.der"),
    )
    .unwrap();
    let anchors = secllama_verifier::snp::vcek::builtin();
    let crls = [SERIAL_256M.to_vec()];
    let policy = x509::PathPolicy {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        known_critical: &[],
        crls: &crls,
    };
    refused_within_bounds("CRL", &vcek, |d| {
        let p = x509::verify_path(d, "VCEK", &anchors.intermediates, &anchors.roots, &policy);
        assert!(!p.path.is_empty(), "{:?}", p.reasons);
        Err(p.reasons.join("; "))
    });
}

#[test]
fn a_public_key_claiming_more_than_it_holds_is_refused() {
    // SubjectPublicKeyInfo SEQUENCE { AlgorithmIdentifier claiming 256 MiB }.
    let spki = [0x30, 0x08, 0x30, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x06, 0x00];
    refused_within_bounds("SubjectPublicKeyInfo", &spki, |d| {
        secllama_protocol::cose::VerifyingKey::from_spki_der(d)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}
