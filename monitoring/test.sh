#!/usr/bin/env bash
# Offline checks of the monitoring configuration: alert rules parse and behave as their unit tests say,
# and every dashboard query is valid PromQL. Installs promtool (Debian's prometheus package) when missing,
# so that it runs on a fresh Debian 12 as root. Queries against a live server are in
# tests/python/test_prometheus.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "promtool is missing: install the Debian package 'prometheus'" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get may hold the lock (parallel setup steps): wait for it rather than fail.
  apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
  apt_get install -y --no-install-recommends prometheus \
    || { apt_get update && apt_get install -y --no-install-recommends prometheus; }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$here"
promtool check config prometheus.yml
promtool check rules alerts.yaml
promtool test rules alerts_test.yaml

python3 dashboard_queries.py --rules-file "$work/dashboard-queries.yaml" >/dev/null
promtool check rules "$work/dashboard-queries.yaml"
echo "monitoring: all checks passed"
