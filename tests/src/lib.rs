//! # secllama-tests — tests that cross crates or talk to peers we did not write
//!
//! The tests live in `tests/tests/`: interop with pycose and Python `cryptography` (from the venv
//! that `scripts/setup.sh` creates). Later issues add the per-test swtpm harness and QEMU tests here.
