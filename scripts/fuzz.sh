#!/usr/bin/env bash
# scripts/fuzz.sh [TARGET[,TARGET…]|all] [SECONDS] [RUNS]: builds the fuzz targets (fuzz/,
# cargo-fuzz, libFuzzer; on stable Rust: `cargo fuzz build -s none`, debug assertions and overflow
# checks on) and runs each for SECONDS (default 60) with one job — or until it ran RUNS inputs,
# whichever comes first (the long run: `scripts/fuzz.sh all 1800 10000000`) — then prints per target: inputs run, inputs/s, corpus
# size and coverage (libFuzzer's cov/ft). Seeds: fuzz/seeds/TARGET (kept minimal in the repository),
# the matching files of ../shared/vectors, and valid inputs the project's own code produces
# (protocol/examples/fuzz_seeds.rs: documents, receipts, logs, sealed requests and answers,
# policy and proxy requests); the growing corpus is fuzz/corpus/TARGET (not in git). Every input
# must also be decided within bounds of time and memory that scale with its length
# (fuzz/src/lib.rs). Any crash, timeout (10 s per input), memory beyond 2 GiB or leak fails the run; the input
# is kept in fuzz/artifacts/TARGET and the run says how to replay it (docs/fuzzing.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
export PATH="$root/.cache/tools/bin:$PATH"
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing (scripts/setup.sh builds it)"; exit 1; }
which=${1:-all}
secs=${2:-60}
runs=${3:--1}
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^secllama-fuzz$')
if [ "$which" != all ]; then
  for t in ${which//,/ }; do
    echo "$targets" | grep -qx "$t" || { echo "fuzz: no target $t; targets: $(echo $targets)"; exit 2; }
  done
  targets=${which//,/ }
fi
shared="${SECLLAMA_SHARED:-$root/../shared}/vectors"
echo "fuzz: building $(echo "$targets" | wc -w) target(s) (cargo fuzz build -s none -O)"
mkdir -p artifacts corpus
# The bounds every target decides its inputs under must themselves catch what they promise.
cargo test -q -p secllama-fuzz-bounds >artifacts/bounds-test.log 2>&1 || { tail -30 artifacts/bounds-test.log; exit 1; }
cargo fuzz build -s none -O >artifacts/build.log 2>&1 || { tail -30 artifacts/build.log; exit 1; }
(cd "$root" && cargo run --release -q -p secllama-protocol --example fuzz_seeds -- fuzz/corpus) \
  >artifacts/seeds.log 2>&1 || { tail -30 artifacts/seeds.log; exit 1; }
seed() { # target -> extra seed folders from the shared vectors
  case "$1" in
    cose|cbor|attestation|receipt_log) echo "$shared/cose" ;;
    eventlog) echo "$shared/eventlog" ;;
    nitro) echo "$shared/nitro" ;;
    snp_report) echo "$shared/snp-report" ;;
    ovmf) echo "$shared/snp-measure/inputs" ;;
    tpm_*) echo "$shared/tpm-quote" ;;
    x509) echo "$shared/snp-report $shared/nitro/aws-root" ;;
    *) ;;
  esac
}
fail=0
printf '%-12s %12s %10s %8s %8s %10s %10s  %s\n' target inputs "inputs/s" seconds corpus cov ft result
for t in $targets; do
  corpus="corpus/$t"; mkdir -p "$corpus" "artifacts/$t"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  for d in $(seed "$t"); do
    [ -d "$d" ] && find "$d" -type f -size -64k ! -name '*.md' ! -name '*.json' -exec cp -n {} "$corpus"/ \; 2>/dev/null || true
  done
  # One log per run (two runs of the script at once do not mix), copied to last-run.log after.
  log="artifacts/$t/run-$$.log"
  started=$(date +%s)
  set +e
  cargo fuzz run -s none -O "$t" "$corpus" -- -max_total_time="$secs" -runs="$runs" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - started ))
  cp "$log" "artifacts/$t/last-run.log"
  ran=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  done_line=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 || true)
  cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$done_line" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  size=$(find "$corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (exit $rc)"; fail=1; fi
  printf '%-12s %12s %10s %8s %8s %10s %10s  %s\n' "$t" "${ran:-?}" "${speed:-?}" "$took" "$size" "${cov:-?}" "${ft:-?}" "$result"
  if [ $rc -ne 0 ]; then
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|timeout|out-of-memory' "$log" | head -8 | sed 's/^/    /'
    echo "    replay: (cd fuzz && cargo fuzz run -s none -O $t artifacts/$t/<the file above>)"
  fi
  rm -f "$log"
done
exit $fail
