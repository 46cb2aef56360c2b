#!/usr/bin/env bash
# Installs what the peers comparison needs (loadtest/run.py peers): Java 17 for TorchServe, Debian's
# torch, and two venvs next to the project venv. Idempotent; not part of the test command.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/loadtest/peers"

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
/usr/bin/python3 -c "import torch" 2>/dev/null || need+=(python3-torch)
/usr/bin/python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root to install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need[@]}"
fi

# Debian's interpreter, with system site-packages so that Debian's torch is importable.
[ -x "$root/.venv-peers/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$root/.venv-peers"
"$root/.venv-peers/bin/pip" install -q -r "$here/requirements.txt"

[ -x "$root/.venv-mlserver/bin/python" ] || /usr/bin/python3 -m venv "$root/.venv-mlserver"
"$root/.venv-mlserver/bin/pip" install -q -r "$here/requirements-mlserver.txt"
echo "peers ready: .venv-peers (FastAPI, TorchServe), .venv-mlserver (MLServer)"
