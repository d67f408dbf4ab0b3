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
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test (release)"
cargo test --workspace --release
echo "== supply-chain checks"
bash scripts/check-deps.sh
