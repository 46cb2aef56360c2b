#!/usr/bin/env bash
# Everything the server and its tests need on a fresh Debian 12 machine (as root), idempotent and quick when
# already done: Debian packages, the project venv with ONNX Runtime and the converted models (convert/setup.sh),
# and the release binary. Prints the ONNX Runtime library path on stdout as its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { log "Rust (cargo >= 1.92) is required: https://rustup.rs"; exit 1; }

# prometheus: the metrics tests scrape the server with a real Prometheus (and promtool checks the alert rules).
need=()
for pkg in curl ca-certificates prometheus; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >&2
fi

ORT_LIB="$(bash convert/setup.sh)"
mkdir -p .stamps
echo "$ORT_LIB" > .stamps/ort_lib

log "building the server (release)"
cargo build --release --locked >&2
echo "$ORT_LIB"
