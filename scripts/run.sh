#!/usr/bin/env bash
# The main job: set up (first run only does real work), then serve the real model on port 8000.
# Extra arguments go to the server, e.g. scripts/run.sh --model-control-mode poll
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ORT_LIB="$(bash scripts/setup.sh | tail -n 1)"
PORT="${OXINFER_PORT:-8000}"
PHOTO="$(.venv/bin/python -c 'import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png"))')"

./target/release/oxinfer --port "$PORT" --model-repository model-repo --ort-library "$ORT_LIB" "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 1 600); do
    if curl -fs -o /dev/null "localhost:$PORT/v2/health/ready"; then
        cat <<MSG

oxinfer is ready on port $PORT. Try:
  curl -s --data-binary @$PHOTO -H 'Content-Type: image/png' localhost:$PORT/v1/models/efficientnet_lite0:predict
  curl -s localhost:$PORT/v2/models/efficientnet_lite0
  curl -s localhost:$PORT/metrics | grep oxinfer_requests_total

MSG
        break
    fi
    kill -0 $pid 2>/dev/null || { echo "server exited" >&2; exit 1; }
    sleep 0.1
done
wait $pid
