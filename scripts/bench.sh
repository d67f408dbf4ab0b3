#!/usr/bin/env bash
# Runs the benchmarks and their peers in the same run and prints the ratios (>1: secllama is faster):
#  1. sealing (secllama-protocol) vs `openssl speed` AES-256-GCM (64 KiB blocks) and RSA-3072;
#  2. quote appraisal (secllama-verifier, in process) vs `tpm2_checkquote` on the same files (a process
#     per call, as users run it) and vs `openssl speed rsa2048` verify; the quote comes from a swtpm;
#  3. a sealed round trip through bridge and enclave vs plaintext to the runner (small, 10 MiB);
#  4. Ollama's API through the verifying proxy vs straight to the runner (first token, total);
#  5. secllama-runner vs llama.cpp's own server (the xllamacpp wheel) in tokens/s, same GGUF;
#  6. the real model (SmolLM2) through proxy, bridge and enclave vs plaintext to the same runner;
#  7. VM mode (TCG here): boot stages, first verified attestation, and sealed requests through
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
echo "== quote appraisal: a swtpm quote made with tpm2-tools"
tpmdir="$out/tpm"
mkdir -p "$tpmdir"
port=$(python3 -c 'import socket
for _ in range(50):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError: pass')
swtpm socket --tpm2 --tpmstate dir="$tpmdir" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
swtpm_pid=$!
trap 'kill $swtpm_pid 2>/dev/null; rm -rf "$out"' EXIT
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
for _ in $(seq 100); do tpm2_getrandom 1 >/dev/null 2>&1 && break; sleep 0.05; done
# tpm2-tools 5.4 cannot read a values-format PCR file of 8 or more PCRs ("Failed to hash PCR
# values related to quote"), so the quote covers 7.
list="sha256:0,1,2,3,4,5,7"
nonce=5eca11a5eca11a5eca11a5eca11a0001
(
  cd "$tpmdir"
  tpm2_createek -c ek.ctx -G rsa -u ek.pub >/dev/null
  tpm2_flushcontext -t
  tpm2_createak -C ek.ctx -c ak.ctx -G rsa -g sha256 -s rsassa -u ak.pub -f pem -n ak.name >/dev/null
  tpm2_flushcontext -t; tpm2_flushcontext -s
  tpm2_quote -c ak.ctx -l "$list" -q "$nonce" -m q.msg -s q.sig -g sha256 >/dev/null
  tpm2_pcrread "$list" -o q.pcrs >/dev/null
  printf '%s' "$list" > list; printf '%s' "$nonce" > nonce
)
unset TPM2TOOLS_TCTI
cargo build -q --release -p secllama-client
release="$(bash scripts/target-dir.sh)/release"
verify="$release/secllama-verify"
calls=200
time_calls() { # prints mean milliseconds per call of "$@" over $calls runs; every call must succeed
  local start end
  start=$(date +%s%N)
  for _ in $(seq "$calls"); do "$@" >/dev/null 2>&1 || { echo "bench: $1 failed" >&2; exit 1; }; done
  end=$(date +%s%N)
  python3 -c "print(($end - $start) / 1e6 / $calls)"
}
checkquote_ms=$(time_calls tpm2_checkquote -u "$tpmdir/ak.pub" -m "$tpmdir/q.msg" -s "$tpmdir/q.sig" \
  -f "$tpmdir/q.pcrs" -l "$list" -g sha256 -q "$nonce")
cli_ms=$(time_calls "$verify" quote --ak "$tpmdir/ak.pub" --message "$tpmdir/q.msg" --signature "$tpmdir/q.sig" \
  --nonce "$nonce" --pcrs "$tpmdir/q.pcrs" --pcr-list "$list")
SECLLAMA_BENCH_QUOTE_DIR="$tpmdir" cargo bench -q -p secllama-verifier --bench quote -- --output-format bencher 2>/dev/null \
  | tee "$out/quote.txt" | grep 'bench:'
openssl speed -seconds 3 -mr rsa2048 2>/dev/null | grep '^+F2:' > "$out/rsa2048.txt"
python3 - "$out" "$checkquote_ms" "$cli_ms" <<'PY'
import re, sys
d, checkquote_ms, cli_ms = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ns = None
for line in open(f"{d}/quote.txt"):
    m = re.match(r"test appraise_tpm2_quote_files \.\.\. bench:\s+([\d,]+) ns/iter", line)
    if m:
        ns = int(m.group(1).replace(",", ""))
if ns is None:
    sys.exit("bench: no in-process result for appraise_tpm2_quote_files")
ours_ms = ns / 1e6
verify_per_s = float(open(f"{d}/rsa2048.txt").read().strip().split(":")[4])
print()
print(f"{'comparison (same quote files)':66} {'ours':>12} {'peer':>12} {'ratio':>8}")
print(f"{'appraise in process vs tpm2_checkquote (a process per call)':66} {ours_ms:>9.3f} ms {checkquote_ms:>9.3f} ms {checkquote_ms / ours_ms:>7.1f}x")
print(f"{'secllama-verify quote (a process per call) vs tpm2_checkquote':66} {cli_ms:>9.3f} ms {checkquote_ms:>9.3f} ms {checkquote_ms / cli_ms:>7.1f}x")
print(f"{'appraise in process vs openssl speed rsa2048 verify':66} {1e3 / ours_ms:>9.0f} /s {verify_per_s:>9.0f} /s {(1e3 / ours_ms) / verify_per_s:>7.2f}x")
if checkquote_ms / ours_ms < 20:
    sys.exit(f"bench: in-process appraisal is only {checkquote_ms / ours_ms:.1f}x faster than tpm2_checkquote (goal >= 20x)")
PY

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

echo "== VM mode: boot stages, first attestation, sealed requests through vsock vs process mode"
cargo bench -q -p secllama-tests --bench vm_roundtrip | grep -v '^$'
