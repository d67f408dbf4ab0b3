#!/usr/bin/env bash
# The main job. Today: set up the machine, build, and check real third-party COSE_Sign1 vectors with
# `secllama-verify cose`. The end-to-end demo (launch an enclave, send a sealed prompt, verify the
# receipt) arrives with the enclave issue and will replace the second half of this script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cargo build -q --release -p secllama-verifier
verify="$root/target/release/secllama-verify"
vectors="${SECLLAMA_SHARED:-$root/../shared}/vectors/cose"
[ -d "$vectors" ] || { echo "demo: $vectors not found (set SECLLAMA_SHARED)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$vectors/go-cose/sign1-verify-0001.json" "$tmp" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
open(f"{sys.argv[2]}/key.jwk", "w").write(json.dumps(v["key"]))
open(f"{sys.argv[2]}/sign1.hex", "w").write(v["sign1::verify"]["taggedCOSESign1"]["cborHex"])
PY
echo "== secllama-verify cose on veraison/go-cose sign1-verify-0001 (ES256)"
"$verify" cose --key "$tmp/key.jwk" --in "$tmp/sign1.hex" --format text
echo "== the same object with its last signature byte flipped (must be INVALID, exit 1)"
python3 -c "import sys; h=open(sys.argv[1]).read().strip(); open(sys.argv[1],'w').write(h[:-2]+format(int(h[-2:],16)^1,'02x'))" "$tmp/sign1.hex"
set +e; "$verify" cose --key "$tmp/key.jwk" --in "$tmp/sign1.hex" --format text; rc=$?; set -e
if [ "$rc" -ne 1 ]; then echo "demo: tampered object gave exit $rc, expected 1"; exit 1; fi
echo "demo: tampered object rejected (exit 1) as expected"
