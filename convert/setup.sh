#!/usr/bin/env bash
# Prepares model conversion on a fresh Debian 12 machine (as root) and makes sure the demo models exist:
# Debian's torch (PyPI only has multi-GB CUDA builds), the project venv with the conversion and test
# requirements, the exported EfficientNet-Lite0 and its int8 variant. Safe to re-run; quick when done.
# Progress goes to stderr; stdout is only the ONNX Runtime library path, so ORT_LIB="$(convert/setup.sh)" works.
set -euo pipefail
exec 3>&1 1>&2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
REQUIREMENTS=(convert/requirements.txt tests/python/requirements.txt loadtest/requirements.txt)
STAMP="$VENV/.convert-requirements.sha256"
MODEL_REPO="$ROOT/model-repo"

log() { printf 'convert/setup: %s\n' "$*"; }

missing=()
for pkg in python3-torch python3-venv python3-pip; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]} from Debian"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { log "need root (or sudo) to install ${missing[*]}"; exit 1; }
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A fresh image has no package lists; an old list may name files the mirror no longer has.
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x "$PY" ]]; then
    log "creating $VENV (system site-packages: Debian's torch)"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

digest="$(cat "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$digest" ]]; then
    log "installing Python requirements"
    "$PY" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]/#/-r}"
    echo "$digest" >"$STAMP"
fi

# A PyPI torch in the venv would shadow Debian's and cannot run here; refuse rather than fail obscurely later.
torch_path="$("$PY" -c 'import importlib.util as u; print(u.find_spec("torch").origin)')"
case "$torch_path" in
    /usr/lib/python3/dist-packages/*) ;;
    *) log "torch is imported from $torch_path, expected Debian's python3-torch"; exit 1 ;;
esac

if [[ ! -f "$MODEL_REPO/efficientnet_lite0/1/model.onnx" ]]; then
    log "exporting efficientnet_lite0"
    "$PY" -m convert efficientnet_lite0 --repo "$MODEL_REPO" --version 1
fi
if [[ ! -f "$MODEL_REPO/efficientnet_lite0_int8/1/model.onnx" ]]; then
    log "quantizing efficientnet_lite0 to int8"
    "$PY" -m convert.quantize efficientnet_lite0 --repo "$MODEL_REPO" --version 1
fi

ort_lib="$("$PY" -c 'import glob, importlib.util as u, os
base = os.path.dirname(u.find_spec("onnxruntime").origin)
print(next(iter(sorted(glob.glob(os.path.join(base, "capi", "libonnxruntime.so.*")))), ""))')"
[[ -n "$ort_lib" ]] || { log "libonnxruntime.so.* not found in the onnxruntime wheel"; exit 1; }
log "models ready in $MODEL_REPO"
log "ONNX Runtime library: $ort_lib"
echo "$ort_lib" >&3
