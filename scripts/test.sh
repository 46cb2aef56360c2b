#!/usr/bin/env bash
# The test command: set up, then Rust unit tests, the end-to-end pytest suite against the real server and model
# (tritonclient, Prometheus, preprocessing parity, Kubernetes contract), and the offline infrastructure and alert
# rule checks. Exits non-zero on the first failing stage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh >/dev/null

echo "== cargo test"
cargo test --release --locked

echo "== pytest"
.venv/bin/python -m pytest -q tests/python

for check in scripts/validate-infra.sh monitoring/test.sh; do
    if [[ -f "$check" ]]; then
        echo "== $check"
        bash "$check"
    fi
done
echo "== all checks passed"
