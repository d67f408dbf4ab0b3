#!/usr/bin/env bash
# Builds the secllama-verify that users run: the same code as cargo's build, linked statically
# (glibc, position-dependent, `-C target-feature=+crt-static -C relocation-model=static`) and
# copied to <target>/release/static/secllama-verify, whose path it prints.
#
# Why: a `secllama-verify quote` or `snp` is mostly process start-up, and loading libc, libm and
# libgcc_s at every start costs more than the appraisal (`perf stat`: 181 page faults and 2.15 ms
# of CPU dynamic, 113 and 1.35 ms static; scripts/bench-evidence.sh compares both with
# tpm2_checkquote). Cargo cannot give one binary of a workspace its own target features, so the
# static link is a `cargo rustc` relink (no dependency is rebuilt) kept at its own path: the next
# `cargo build` relinks the target folder's release/secllama-verify dynamically, the static copy stays.
# Host names still resolve (glibc loads its NSS modules at run time, from the glibc the binary was
# linked against: build it on the machine that runs it, as every script here does).
set -euo pipefail
cd "$(dirname "$0")/.."
release="$(bash scripts/target-dir.sh)/release"
cargo rustc -q --release -p secllama-client --bin secllama-verify -- \
  -C target-feature=+crt-static -C relocation-model=static
if readelf -lW "$release/secllama-verify" | grep -q 'INTERP\|DYNAMIC'; then
  echo "build-verify: $release/secllama-verify is dynamically linked; expected a static executable" >&2
  exit 1
fi
mkdir -p "$release/static"
cp "$release/secllama-verify" "$release/static/secllama-verify.tmp"
mv "$release/static/secllama-verify.tmp" "$release/static/secllama-verify"
echo "$release/static/secllama-verify"
