#!/usr/bin/env bash
# Runs the benchmarks and their peers in the same run and prints the ratios (>1: secllama is faster):
#  1. sealing (secllama-protocol) vs `openssl speed` AES-256-GCM (64 KiB blocks) and RSA-3072;
#  2. evidence appraisal (scripts/bench-evidence.sh): TPM quotes vs `tpm2_checkquote` and `openssl
#     speed rsa2048`, SEV-SNP reports vs `openssl dgst -verify` and `snpguest verify attestation`;
#  3. a sealed round trip through bridge and enclave vs plaintext to the runner (small, 10 MiB);
#  4. Ollama's API through the verifying proxy vs straight to the runner (first token, total);
#  5. secllama-runner vs llama.cpp's own server (the xllamacpp wheel) in tokens/s, same GGUF;
#  6. the real model (SmolLM2) through proxy, bridge and enclave vs plaintext to the same runner;
#  7. receipt log appends (sealed requests, receipts durable before they are sent) vs the disk's
#     own fdatasync rate in the same run; inclusion/consistency proofs per second vs ct-merkle;
#  8. VM mode (TCG here): boot stages, first verified attestation, and sealed requests through
#     vsock vs the same through process mode's unix socket.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { echo "bench: openssl is required (scripts/setup.sh installs it)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== cargo bench -p secllama-protocol (criterion)"
cargo bench -q -p secllama-protocol --bench seal -- --output-format bencher 2>/dev/null | tee "$out/ours.txt" | grep 'bench:'
echo "== openssl speed (same run)"
openssl speed -seconds 3 -mr -evp aes-256-gcm -bytes 65536 2>/dev/null | grep '^+F:' > "$out/aes.txt"
openssl speed -seconds 3 -mr rsa3072 2>/dev/null | grep '^+F2:' > "$out/rsa.txt"
cat "$out/aes.txt" "$out/rsa.txt"

python3 - "$out" <<'PY'
import re, sys
d = sys.argv[1]
ns = {}
for line in open(f"{d}/ours.txt"):
    m = re.match(r"test (.+?) \.\.\. bench:\s+([\d,]+) ns/iter", line)
    if m:
        ns[m.group(1)] = int(m.group(2).replace(",", ""))
need = ["request_1k/rsa_seal_open", "request_1k/session_seal_open", "rsa3072_oaep_unwrap",
        "stream_64k/seal", "stream_64k/open", "stream_64k/seal_open"]
missing = [n for n in need if n not in ns]
if missing:
    sys.exit(f"bench: missing results for {missing}")
aes_bps = float(open(f"{d}/aes.txt").read().split(":")[3])            # bytes/s at 64 KiB blocks
rsa = open(f"{d}/rsa.txt").read().strip().split(":")
rsa_priv_per_s = float(rsa[3])                                          # private-key ops (sign) per second
stream_bytes = 16 * 64 * 1024
rows = [
    ("RSA-3072 OAEP unwrap (aws-lc-rs) vs openssl rsa3072 private op",
     1e9 / ns["rsa3072_oaep_unwrap"], rsa_priv_per_s, "ops/s"),
    ("stream seal, 64 KiB chunks vs openssl aes-256-gcm 64 KiB",
     stream_bytes / (ns["stream_64k/seal"] / 1e9) / 1e6, aes_bps / 1e6, "MB/s"),
    ("stream open, 64 KiB chunks vs openssl aes-256-gcm 64 KiB",
     stream_bytes / (ns["stream_64k/open"] / 1e9) / 1e6, aes_bps / 1e6, "MB/s"),
    ("stream seal+open (2 AES passes) vs openssl aes-256-gcm (1 pass)",
     stream_bytes / (ns["stream_64k/seal_open"] / 1e9) / 1e6, aes_bps / 1e6, "MB/s"),
    ("1 KiB request seal+open, RSA path vs openssl rsa3072 private op",
     1e9 / ns["request_1k/rsa_seal_open"], rsa_priv_per_s, "req/s"),
]
print()
print(f"{'comparison':66} {'ours':>12} {'openssl':>12} {'ours/openssl':>13}")
for name, ours, peer, unit in rows:
    print(f"{name:66} {ours:>9.1f} {unit:<3}{peer:>9.1f} {unit:<3}{ours / peer:>12.2f}x")
print(f"{'1 KiB request seal+open, session path (no RSA)':66} {1e9 / ns['request_1k/session_seal_open']:>9.1f} req/s"
      f"   = {ns['request_1k/rsa_seal_open'] / ns['request_1k/session_seal_open']:.0f}x the RSA path")
PY

echo
bash scripts/bench-evidence.sh

echo
echo "== sealed round trip through bridge and enclave vs plaintext to the runner (small request, 10 MiB stream)"
cargo bench -q -p secllama-tests --bench sealed_roundtrip | grep -v '^$'
echo
echo "== Ollama API through the verifying proxy vs straight to the runner (time to first token, total)"
cargo bench -q -p secllama-tests --bench proxy_roundtrip | grep -v '^$'
echo
echo "== secllama-runner vs llama.cpp's own server (xllamacpp wheel): same GGUF, prompts, threads"
gguf=$(bash scripts/fetch-model.sh)
cargo build -q --release -p secllama-runner
bench_venv="${SECLLAMA_BENCH_VENV:-$PWD/.venv-bench}"
if [ ! -x "$bench_venv/bin/python" ] || ! "$bench_venv/bin/python" -c 'import xllamacpp' 2>/dev/null; then
  python3 -m venv "$bench_venv"
  "$bench_venv/bin/pip" install -q --disable-pip-version-check xllamacpp==2026.10.11549
fi
"$bench_venv/bin/python" scripts/bench_runner.py "$release/secllama-runner" "$gguf" --threads 1 2>/dev/null
echo
echo "== the real model through proxy, bridge and enclave vs plaintext to the same runner (first token, total)"
SECLLAMA_BENCH_GGUF="$gguf" cargo bench -q -p secllama-tests --bench proxy_roundtrip | grep -v '^$'

echo "== receipt log: appends on the real durability path vs the disk's fdatasync rate (same run, same folder)"
cargo bench -q -p secllama-tests --bench log_append | grep -v '^$'
echo
echo "== receipt log proofs: inclusion and consistency, generated and verified, 2^16 entries, vs ct-merkle"
cargo bench -q -p secllama-protocol --bench rfc9162 -- --output-format bencher 2>/dev/null | tee "$out/proofs.txt" | grep 'bench:'
python3 - "$out/proofs.txt" <<'PY'
import re, sys
ns = {}
for line in open(sys.argv[1]):
    m = re.match(r"test (.+?) \.\.\. bench:\s+([\d,]+) ns/iter", line)
    if m:
        ns[m.group(1)] = int(m.group(2).replace(",", ""))
print(f"{'proofs on a log of 65536 entries':44} {'ours /s':>12} {'ct-merkle /s':>14} {'ours/ct-merkle':>15}")
for kind in ["inclusion", "consistency"]:
    for op in ["prove", "verify"]:
        ours, theirs = ns[f"{kind}/{op}/ours"], ns[f"{kind}/{op}/ct_merkle"]
        print(f"{kind + ' ' + op:44} {1e9 / ours:>12.0f} {1e9 / theirs:>14.0f} {theirs / ours:>14.2f}x")
PY
echo
echo "== VM mode: boot stages, first attestation, sealed requests through vsock vs process mode"
cargo bench -q -p secllama-tests --bench vm_roundtrip | grep -v '^$'
