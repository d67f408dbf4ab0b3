#!/usr/bin/env bash
# Runs every secllama check: setup (idempotent), formatting, clippy, and every test (one release build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
export SECLLAMA_VENV="${SECLLAMA_VENV:-$root/.venv}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
# llama-cpp-sys-2's build script runs again under clippy in any profile: a second C++ build of
# llama.cpp (a few minutes on 2 cores), the price of linting the runner.
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== supply-chain checks"
bash scripts/check-deps.sh
echo "== cargo test (release)"
# Every binary first: the end-to-end tests run the launcher, the agent and the verifier as processes
# (cargo test alone builds only the binaries of packages that have integration tests).
cargo build --workspace --release --bins
# The verifier as users run it (statically linked, scripts/build-verify.sh): the tests run it.
SECLLAMA_VERIFY_BIN=$(bash scripts/build-verify.sh)
export SECLLAMA_VERIFY_BIN
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --release 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
[ "$status" -eq 0 ] || exit "$status"
# The fuzz smoke (docs/fuzzing.md): every target 10 s, one job; any finding fails the run.
echo "== fuzz smoke (scripts/fuzz.sh all 10)"
bash scripts/fuzz.sh all 10
