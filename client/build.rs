//! Links `secllama-verify` as a position-dependent executable: its code is position-independent
//! anyway, but a PIE's ~13 000 relative relocations are applied at every start, which is most of
//! a short command's run time (`scripts/bench-evidence.sh` times `secllama-verify quote` against
//! `tpm2_checkquote`, a process per call). Address-space layout randomisation of the executable
//! itself is given up for this tool, which holds no secrets and serves nothing.
//! `scripts/build-verify.sh` relinks it statically as well (what the demo, tests and benchmark run).
fn main() {
    println!("cargo:rustc-link-arg-bin=secllama-verify=-no-pie");
}
