#!/usr/bin/env bash
# Evidence appraisal, side by side with peers in the same run (ratios > 1: secllama is faster):
#  1. a TPM quote made by tpm2-tools on a swtpm: appraisal in process (secllama-verifier) and
#     `secllama-verify quote` as a process (the static build users run, and the same code linked
#     dynamically), vs `tpm2_checkquote` (a process per call, as users run it) and `openssl speed
#     rsa2048` verify; fails below 100x in process or 5x as a process;
#  2. a real SEV-SNP report (virtee/sev's Milan report, shared vectors): appraisal in process
#     (signature + VCEK -> ASK -> ARK chain) and `secllama-verify snp` as a process, vs `openssl
#     dgst -sha384 -verify` of the same report body under the same VCEK key (a process per call;
#     signature only) and `openssl speed ecdsap384`, and vs snpguest's `verify attestation` +
#     `verify certs` (same report and certificates; installed from crates.io into .cache/tools on
#     first use, skipped with a note if that fails).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
shared="${SECLLAMA_SHARED:-$(pwd)/../shared}"
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
# The verifier as users run it (statically linked: scripts/build-verify.sh), and cargo's dynamically
# linked build of the same code beside it, to show what the static link saves at every start.
verify=$(bash scripts/build-verify.sh)
cargo build -q --release -p secllama-client
dynamic="$(bash scripts/target-dir.sh)/release/secllama-verify"
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
quote_args=(quote --ak "$tpmdir/ak.pub" --message "$tpmdir/q.msg" --signature "$tpmdir/q.sig"
  --nonce "$nonce" --pcrs "$tpmdir/q.pcrs" --pcr-list "$list")
cli_ms=$(time_calls "$verify" "${quote_args[@]}")
dynamic_ms=$(time_calls "$dynamic" "${quote_args[@]}")
true_ms=$(time_calls /bin/true)
SECLLAMA_BENCH_QUOTE_DIR="$tpmdir" cargo bench -q -p secllama-verifier --bench quote -- --output-format bencher 2>/dev/null \
  | tee "$out/quote.txt" | grep 'bench:'
openssl speed -seconds 3 -mr rsa2048 2>/dev/null | grep '^+F2:' > "$out/rsa2048.txt"
python3 - "$out" "$checkquote_ms" "$cli_ms" "$dynamic_ms" "$true_ms" <<'PY'
import re, sys
d, checkquote_ms, cli_ms, dynamic_ms, true_ms = sys.argv[1], *map(float, sys.argv[2:6])
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
print(f"{'  the same code dynamically linked (plain cargo build)':66} {dynamic_ms:>9.3f} ms {checkquote_ms:>9.3f} ms {checkquote_ms / dynamic_ms:>7.1f}x")
print(f"{'  (/bin/true, a process per call, for scale)':66} {true_ms:>9.3f} ms")
print(f"{'appraise in process vs openssl speed rsa2048 verify':66} {1e3 / ours_ms:>9.0f} /s {verify_per_s:>9.0f} /s {(1e3 / ours_ms) / verify_per_s:>7.2f}x")
if checkquote_ms / ours_ms < 100:
    sys.exit(f"bench: in-process appraisal is only {checkquote_ms / ours_ms:.1f}x faster than tpm2_checkquote (goal >= 100x)")
if checkquote_ms / cli_ms < 5:
    sys.exit(f"bench: secllama-verify quote is only {checkquote_ms / cli_ms:.1f}x faster than tpm2_checkquote (goal >= 5x)")
PY


echo
echo "== SEV-SNP report appraisal: virtee/sev's Milan report and VCEK (shared vectors)"
case="$shared/vectors/snp-report/virtee-milan-v2"
[ -f "$case/report.bin" ] || { echo "bench: $case not found (set SECLLAMA_SHARED)"; exit 1; }
# The peer's inputs: the signed body (bytes 0x000-0x29F), the signature as DER (r and s are 72-byte
# little-endian at 0x2A0 and 0x2E8), the VCEK's public key as PEM.
python3 - "$case/report.bin" "$out" <<'PY'
import sys
r = open(sys.argv[1], "rb").read(); d = sys.argv[2]
open(f"{d}/body.bin", "wb").write(r[:0x2A0])
def der_int(le):
    b = bytes(reversed(le[:48])).lstrip(b"\0") or b"\0"
    if b[0] & 0x80: b = b"\0" + b
    return b"\x02" + bytes([len(b)]) + b
seq = der_int(r[0x2A0:0x2E8]) + der_int(r[0x2E8:0x330])
open(f"{d}/sig.der", "wb").write(b"\x30" + bytes([len(seq)]) + seq)
PY
openssl x509 -inform der -in "$case/vcek_milan.der" -pubkey -noout > "$out/vcek.pub.pem"
openssl dgst -sha384 -verify "$out/vcek.pub.pem" -signature "$out/sig.der" "$out/body.bin" >/dev/null
at=2026-01-01T00:00:00Z
snp_cli_ms=$(time_calls "$verify" snp --report "$case/report.bin" --vcek "$case/vcek_milan.der" --at "$at")
openssl_dgst_ms=$(time_calls openssl dgst -sha384 -verify "$out/vcek.pub.pem" -signature "$out/sig.der" "$out/body.bin")
cargo bench -q -p secllama-verifier --bench snp -- --output-format bencher 2>/dev/null | tee "$out/snp.txt" | grep 'bench:'
openssl speed -seconds 3 -mr ecdsap384 2>/dev/null | grep '^+F4:' > "$out/p384.txt" || true
snpguest_ms=""
snpguest=$(command -v snpguest || true)
if [ -z "$snpguest" ]; then
  snpguest=.cache/tools/snpguest/bin/snpguest
  if [ ! -x "$snpguest" ]; then
    echo "installing snpguest from crates.io into .cache/tools/snpguest (once; several minutes)"
    cargo install -q snpguest --locked --root .cache/tools/snpguest >/dev/null 2>&1 || snpguest=""
  fi
  [ -x "${snpguest:-/nonexistent}" ] || snpguest=""
fi
if [ -n "$snpguest" ]; then
  mkdir -p "$out/certs"
  cp "$case/vcek_milan.der" "$out/certs/vcek.der"
  # snpguest's folder layout: ark.pem and ask.pem beside the VCEK.
  openssl crl2pkcs7 -nocrl -certfile "$case/cert_chain_milan.pem" | openssl pkcs7 -print_certs \
    | awk '/BEGIN/{n++} {print > ("'"$out"'/certs/c" n ".pem")}'
  mv "$out/certs/c1.pem" "$out/certs/ask.pem"; mv "$out/certs/c2.pem" "$out/certs/ark.pem"
  # A version-2 report does not say Milan or Genoa: snpguest needs -p. Our appraisal checks the
  # report signature, TCB and chain in one call; snpguest splits them into `verify attestation`
  # (signature, TCB) and `verify certs` (chain): both are timed and added.
  if "$snpguest" verify attestation -p milan "$out/certs" "$case/report.bin" >/dev/null 2>&1 \
    && "$snpguest" verify certs "$out/certs" >/dev/null 2>&1; then
    sg_att=$(time_calls "$snpguest" verify attestation -p milan "$out/certs" "$case/report.bin")
    sg_certs=$(time_calls "$snpguest" verify certs "$out/certs")
    snpguest_ms=$(python3 -c "print($sg_att + $sg_certs)")
  else
    echo "note: snpguest refused the inputs here:"
    "$snpguest" verify attestation -p milan "$out/certs" "$case/report.bin" 2>&1 | head -3 || true
  fi
else
  echo "note: snpguest did not install (cargo install snpguest): that comparison is skipped"
fi
python3 - "$out" "$snp_cli_ms" "$openssl_dgst_ms" "$snpguest_ms" <<'PY'
import re, sys
d, cli_ms, dgst_ms, sg = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ns = None
for line in open(f"{d}/snp.txt"):
    m = re.match(r"test appraise SNP report \(signature \+ chain\) \.\.\. bench:\s+([\d,]+) ns/iter", line)
    if m:
        ns = int(m.group(1).replace(",", ""))
if ns is None:
    sys.exit("bench: no in-process SNP result")
ours_ms = ns / 1e6
print()
print(f"{'comparison (same report and VCEK)':66} {'ours':>12} {'peer':>12} {'ratio':>8}")
print(f"{'SNP appraisal in process (sig + chain) vs openssl dgst -verify (sig)':66} {ours_ms:>9.3f} ms {dgst_ms:>9.3f} ms {dgst_ms / ours_ms:>7.1f}x")
print(f"{'secllama-verify snp (process) vs openssl dgst -verify (process)':66} {cli_ms:>9.3f} ms {dgst_ms:>9.3f} ms {dgst_ms / cli_ms:>7.1f}x")
p384 = open(f"{d}/p384.txt").read().strip()
if p384:
    verify_per_s = float(p384.split(":")[4])
    print(f"{'SNP appraisals/s in process vs openssl speed ecdsap384 verify/s':66} {1e3 / ours_ms:>9.0f} /s {verify_per_s:>9.0f} /s {(1e3 / ours_ms) / verify_per_s:>7.2f}x")
if sg:
    sg = float(sg)
    print(f"{'secllama-verify snp (process) vs snpguest verify attestation + certs':66} {cli_ms:>9.3f} ms {sg:>9.3f} ms {sg / cli_ms:>7.1f}x")
PY
