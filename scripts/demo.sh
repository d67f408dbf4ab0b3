#!/usr/bin/env bash
# The main job, as far as it exists today (the end-to-end enclave demo arrives with the enclave
# issue): set the machine up, build, then
#   1. predict a launch from its artifacts and write the reference manifest (secllama measure launch);
#   2. extend those events into a fresh swtpm with tpm2-tools, quote them, and check the quote in pure
#      Rust (secllama-verify quote) — then show that a wrong nonce is refused;
#   3. replay a real third-party event log (secllama-verify eventlog);
#   4. compute an SEV-SNP launch digest (secllama measure snp) and compare it with its vector;
#   5. check a third-party COSE_Sign1, then the same object tampered (secllama-verify cose).
# Everything it starts (swtpm) is stopped at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cargo build -q --release -p secllama-verifier -p secllama-host
verify="$root/target/release/secllama-verify"
secllama="$root/target/release/secllama"
shared="${SECLLAMA_SHARED:-$root/../shared}"
[ -d "$shared/vectors" ] || { echo "demo: $shared/vectors not found (set SECLLAMA_SHARED)"; exit 1; }
work=$(mktemp -d)
swtpm_pid=""
cleanup() { [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "1. secllama measure launch: events, PCRs and a reference manifest from the artifacts"
mkdir -p "$work/enclave"
printf 'demo agent' > "$work/enclave/agent"; printf 'demo runner' > "$work/enclave/runner"
printf 'demo model weights' > "$work/enclave/model.gguf"
printf '{"dataset":[{"id":"q1","prompt":"What is 2+2?"}],"models":["tiny"],"max_prompt_bytes":64,"max_num_predict":16}' > "$work/enclave/policy.json"
printf 'listener = "unix:/run/secllama.sock"\n' > "$work/enclave/config.toml"
cat > "$work/enclave/launch.toml" <<'TOML'
[launch]
agent = "agent"
runner = "runner"
model = ["model.gguf"]
policy = "policy.json"
config = "config.toml"
TOML
"$secllama" measure launch --config "$work/enclave/launch.toml" --manifest "$work/manifest.toml" | head -12
pcr15=$("$secllama" measure launch --config "$work/enclave/launch.toml" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pcrs"]["sha256"]["15"])')

step "2. a swtpm: extend the predicted events, quote, verify in pure Rust"
port=$(python3 -c 'import socket
for _ in range(50):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError: pass')
mkdir -p "$work/tpm"
swtpm socket --tpm2 --tpmstate dir="$work/tpm" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
swtpm_pid=$!
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
for _ in $(seq 100); do tpm2_getrandom 1 >/dev/null 2>&1 && break; sleep 0.05; done
"$secllama" measure launch --config "$work/enclave/launch.toml" --format json | python3 -c '
import json, sys, subprocess
for e in json.load(sys.stdin)["events"]:
    subprocess.run(["tpm2_pcrextend", "%d:sha256=%s" % (e["pcr"], e["digests"]["sha256"])], check=True)
    print("extended PCR %d with %s (%s)" % (e["pcr"], e["digests"]["sha256"][:16] + "...", e["description"]))'
(
  cd "$work/tpm"
  tpm2_createek -c ek.ctx -G rsa -u ek.pub >/dev/null; tpm2_flushcontext -t
  tpm2_createak -C ek.ctx -c ak.ctx -G rsa -g sha256 -s rsassa -u ak.pub -f pem -n ak.name >/dev/null
  tpm2_flushcontext -t; tpm2_flushcontext -s
  tpm2_quote -c ak.ctx -l sha256:15 -q 5eca11a0decafbad5eca11a0decafbad -m q.msg -s q.sig -g sha256 >/dev/null
)
printf '{"sha256": {"15": "%s"}}' "$pcr15" > "$work/predicted.json"
echo "PCR 15 predicted by secllama measure launch: $pcr15"
"$verify" quote --ak "$work/tpm/ak.pub" --message "$work/tpm/q.msg" --signature "$work/tpm/q.sig" \
  --nonce 5eca11a0decafbad5eca11a0decafbad --pcr-values "$work/predicted.json" --format text
set +e
"$verify" quote --ak "$work/tpm/ak.pub" --message "$work/tpm/q.msg" --signature "$work/tpm/q.sig" \
  --nonce 00000000000000000000000000000000 --pcr-values "$work/predicted.json" --format text >/dev/null
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "demo: a quote checked against another nonce gave exit $rc, expected 1"; exit 1; }
echo "the same quote against another nonce: refused (exit 1), as it must be"
unset TPM2TOOLS_TCTI

step "3. secllama-verify eventlog: a real GCE event log, replayed"
"$verify" eventlog "$shared/vectors/eventlog/ubuntu2104-gce-nodbx/eventlog.bin" --format text | sed -n '1,6p;/replayed PCRs/,/sha1:14 /p'

step "4. secllama measure snp: SEV-SNP launch digest (vector snp-cmdline-gf21)"
touch "$work/empty"
digest=$("$secllama" measure snp --ovmf "$shared/vectors/snp-measure/inputs/ovmf_AmdSev_suffix.bin" --vcpus 1 \
  --vcpu-type EPYC-v4 --kernel "$work/empty" --initrd "$work/empty" --append "console=ttyS0 loglevel=7" --guest-features 0x21)
expected=803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977
echo "ours:     $digest"; echo "expected: $expected"
[ "$digest" = "$expected" ] || { echo "demo: SNP launch digest differs"; exit 1; }

step "5. secllama-verify cose: veraison/go-cose sign1-verify-0001 (ES256), then tampered"
python3 - "$shared/vectors/cose/go-cose/sign1-verify-0001.json" "$work" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
open(f"{sys.argv[2]}/key.jwk", "w").write(json.dumps(v["key"]))
h = v["sign1::verify"]["taggedCOSESign1"]["cborHex"]
open(f"{sys.argv[2]}/sign1.hex", "w").write(h)
open(f"{sys.argv[2]}/tampered.hex", "w").write(h[:-2] + format(int(h[-2:], 16) ^ 1, "02x"))
PY
"$verify" cose --key "$work/key.jwk" --in "$work/sign1.hex" --format text
set +e; "$verify" cose --key "$work/key.jwk" --in "$work/tampered.hex" --format text; rc=$?; set -e
[ "$rc" -eq 1 ] || { echo "demo: tampered object gave exit $rc, expected 1"; exit 1; }
echo "demo: done (tampered object rejected with exit 1, as it must be)"
