#!/usr/bin/env bash
# Sets up a fresh Debian machine for secllama: system packages (TPM, QEMU, OVMF, openssl, the
# llama.cpp build tools), the Python venv of test peers (pycose, cryptography, cbor2, ollama, openai,
# langchain-ollama), the JavaScript peers (ollama-js) and
# the demo model (scripts/fetch-model.sh, checked by sha256). Idempotent and quiet when done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${SECLLAMA_VENV:-$root/.venv}"

# cmake and libclang-dev build llama.cpp (llama-cpp-sys-2, for secllama-runner).
apt_pkgs=(swtpm swtpm-tools tpm2-tools libtss2-dev qemu-system-x86 ovmf openssl pkg-config python3-venv
          cmake libclang-dev curl cpio cryptsetup-bin squashfs-tools)
# Node runs the JavaScript client peers (ollama-js); Debian's nodejs/npm unless a node is present.
command -v node >/dev/null || apt_pkgs+=(nodejs)
command -v npm >/dev/null || apt_pkgs+=(npm)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python peers: implementations we did not write, used by the interop tests.
# cbor2 6 decodes arrays as tuples, which pycose 1.1 does not accept: stay on 5.x.
py_reqs=(pycose==1.1.0 cryptography==50.0.2 cbor2==5.9.0 sev-snp-measure==0.0.13 ollama==0.6.3
         openai==3.57.0 langchain-ollama==1.1.0)
stamp="$venv/.secllama-reqs"
want="${py_reqs[*]}"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating Python venv at $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${py_reqs[@]}"
  echo "$want" > "$stamp"
fi

# JavaScript peers (the official ollama-js client), pinned, into .cache/js.
js_dir="${SECLLAMA_JS:-$root/.cache/js}"
js_reqs=(ollama@0.6.4)
if [ "$(cat "$js_dir/.secllama-reqs" 2>/dev/null)" != "${js_reqs[*]}" ]; then
  echo "setup: installing the JavaScript peers into $js_dir"
  mkdir -p "$js_dir"
  npm install --prefix "$js_dir" --no-audit --no-fund --silent "${js_reqs[@]}" >/dev/null
  echo "${js_reqs[*]}" > "$js_dir/.secllama-reqs"
fi

# VM mode (docs/vm.md): the pinned guest kernel, unpacked into .cache/kernel/<release>/, and the
# vhost-user vsock backend (vhost-device-vsock, pinned, built from crates.io) into .cache/tools/.
kernel_release=6.1.0-57-amd64
kernel_dir="$root/.cache/kernel/$kernel_release"
if [ ! -f "$kernel_dir/boot/vmlinuz-$kernel_release" ]; then
  echo "setup: fetching the guest kernel linux-image-$kernel_release"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q "linux-image-$kernel_release" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  deb=$(ls "$tmp"/linux-image-"$kernel_release"_*.deb)
  mkdir -p "$kernel_dir.tmp"
  dpkg-deb -x "$deb" "$kernel_dir.tmp"
  rm -rf "$kernel_dir" && mv "$kernel_dir.tmp" "$kernel_dir" && rm -rf "$tmp"
fi
fuzz_version=0.13.2
if ! "$root/.cache/tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $fuzz_version"; then
  echo "setup: building cargo-fuzz $fuzz_version (the fuzz smoke of scripts/test.sh; about 2 minutes)"
  cargo install -q --locked cargo-fuzz --version "$fuzz_version" --root "$root/.cache/tools"
fi
machete_version=0.9.2
if ! "$root/.cache/tools/bin/cargo-machete" --version 2>/dev/null | grep -qx "\(cargo-machete \)\?$machete_version"; then
  echo "setup: building cargo-machete $machete_version (unused-dependency check; about 4 minutes)"
  cargo install -q --locked cargo-machete --version "$machete_version" --root "$root/.cache/tools"
fi
vhost_version=0.3.0
if [ "$("$root/.cache/tools/bin/vhost-device-vsock" --version 2>/dev/null)" != "vhost-device-vsock $vhost_version" ]; then
  echo "setup: building vhost-device-vsock $vhost_version (about 3 minutes)"
  cargo install -q --locked vhost-device-vsock --version "$vhost_version" --root "$root/.cache/tools"
fi

# The real model (SmolLM2-135M-Instruct Q4_1 GGUF), fetched once into .cache/ and checked.
bash "$root/scripts/fetch-model.sh" >/dev/null
