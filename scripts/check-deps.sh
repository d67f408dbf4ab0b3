#!/usr/bin/env bash
# Dependency rules that the design promises and that cargo cannot express by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
if cargo tree --workspace -i serde_cbor >/dev/null 2>&1; then
  echo "check-deps: serde_cbor (unmaintained) is in the dependency graph"; fail=1
fi
for crate in secllama-protocol secllama-verifier secllama-measurements; do
  if cargo tree -p "$crate" 2>/dev/null | grep -qE 'tss-esapi|tss2'; then
    echo "check-deps: $crate depends on a TPM library"; fail=1
  fi
done
# The appraisal library is pure: no async runtime, no HTTP, no sockets in its dependency tree, so
# others can embed it (the client crate holds those).
pure=$(cargo tree -p secllama-verifier -e normal --prefix none 2>/dev/null \
  | grep -oE '^(tokio|hyper|hyper-util|mio|socket2|reqwest|tokio-vsock) ' | sort -u || true)
if [ -n "$pure" ]; then
  echo "check-deps: secllama-verifier (the appraisal library) depends on I/O crates: $pure"; fail=1
fi
# The rsa crate may only see public keys: no private-key type may appear outside test code.
hits=$(git ls-files '*.rs' | grep -vE '(^|/)(tests|benches)/' \
  | xargs grep -nE 'RsaPrivateKey|rsa::pkcs1::DecodeRsaPrivateKey|rsa::pkcs8::DecodePrivateKey|rsa::Pkcs1v15Sign::.*sign|BlindedSigningKey' || true)
if [ -n "$hits" ]; then
  echo "check-deps: the rsa crate is used with a private key:"; echo "$hits"; fail=1
fi
# Every declared dependency is used (cargo-machete, built by scripts/setup.sh).
machete="$(pwd)/.cache/tools/bin/cargo-machete"
[ -x "$machete" ] || machete=$(command -v cargo-machete || true)
if [ -z "$machete" ]; then
  echo "check-deps: cargo-machete is missing (scripts/setup.sh builds it)"; fail=1
elif ! out=$("$machete" 2>&1); then
  echo "check-deps: unused dependencies:"; echo "$out" | sed -n '/found the following/,/^$/p'; fail=1
fi
[ $fail -eq 0 ] && echo "check-deps: ok (no serde_cbor; no TPM library in protocol/verifier/measurements; verifier without I/O crates; rsa public-key only; no unused dependency)"
exit $fail
