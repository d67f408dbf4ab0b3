#!/usr/bin/env bash
# Prints cargo's real target folder for this workspace (honours CARGO_TARGET_DIR, .cargo/config.toml
# `build.target-dir` and any other way cargo is told), as `cargo metadata` reports it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
