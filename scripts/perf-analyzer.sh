#!/usr/bin/env bash
# Triton's perf_analyzer against a running server: proof that the server speaks the protocol as Triton's own load
# tool expects, and the throughput/latency table per concurrency. perf_analyzer ships only inside tritonclient
# wheels 2.41-2.60, and those after 2.51 need a newer glibc than Debian 12's, so it gets its own venv (.venv-pa)
# pinned to 2.51.0; it links libcudart even on CPU, hence the CUDA runtime wheel and LD_LIBRARY_PATH.
#
#   scripts/perf-analyzer.sh install                       idempotent install into .venv-pa
#   scripts/perf-analyzer.sh sweep MODEL [HOST:PORT]       concurrency sweep, binary then JSON tensors
#   scripts/perf-analyzer.sh run ARGS...                   perf_analyzer ARGS... with the right library path
#
# Sweep settings (environment): PA_RANGE (default 1:16), PA_WINDOW_MS (default 2000), PA_FORMATS (default
# "binary json"), PA_OUT (CSV and log folder, default target/perf-analyzer), PA_ARGS (extra perf_analyzer flags;
# on a busy machine "-s 20 -r 20" lets high concurrencies stabilise).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PA_VENV:-$ROOT/.venv-pa}"
TRITONCLIENT_VERSION="2.51.0"
CUDA_RUNTIME_VERSION="12.9.79"
PA="$VENV/bin/perf_analyzer"

cudart_dir() {
    "$VENV/bin/python" - <<'EOF'
import nvidia.cuda_runtime, os
print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))
EOF
}

installed() {
    [[ -x "$PA" ]] && "$VENV/bin/python" -c "import nvidia.cuda_runtime" 2>/dev/null \
        && /sbin/ldconfig -p | grep -q 'libb64\.so\.0d'
}

install() {
    if installed; then
        return 0
    fi
    if ! /sbin/ldconfig -p | grep -q 'libb64\.so\.0d'; then
        if [[ $(id -u) -ne 0 ]]; then
            echo "perf-analyzer: libb64-0d is missing and installing it needs root" >&2
            return 1
        fi
        # An apt list refresh only when the package is unknown keeps reruns offline.
        apt-cache show libb64-0d >/dev/null 2>&1 || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        /usr/bin/python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "tritonclient[http]==$TRITONCLIENT_VERSION" "nvidia-cuda-runtime-cu12==$CUDA_RUNTIME_VERSION"
    installed
}

run() {
    install
    local lib
    lib="$(cudart_dir)"
    LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PA" "$@"
}

sweep() {
    local model="${1:?usage: perf-analyzer.sh sweep MODEL [HOST:PORT]}"
    local url="${2:-127.0.0.1:8000}"
    local out="${PA_OUT:-$ROOT/target/perf-analyzer}"
    mkdir -p "$out"
    local fmt rc=0
    for fmt in ${PA_FORMATS:-binary json}; do
        echo "== $model, $fmt tensors, concurrency ${PA_RANGE:-1:16}"
        rm -f "$out/$model-$fmt.csv"
        # perf_analyzer stops the sweep at the first concurrency it cannot stabilise; the levels measured before
        # are still worth the table, so the failure is reported at the end instead of aborting here.
        # shellcheck disable=SC2086  # PA_ARGS is a list of flags
        run -m "$model" -u "$url" -i http \
            --concurrency-range "${PA_RANGE:-1:16}" \
            --input-tensor-format "$fmt" --output-tensor-format "$fmt" \
            -p "${PA_WINDOW_MS:-2000}" -f "$out/$model-$fmt.csv" ${PA_ARGS:-} >"$out/$model-$fmt.log" 2>&1 || {
            rc=$?
            echo "perf_analyzer exited $rc; see $out/$model-$fmt.log" >&2
            grep -E 'Failed|error' "$out/$model-$fmt.log" | head -3 >&2 || true
        }
        if [[ -s "$out/$model-$fmt.csv" ]]; then
            table "$out/$model-$fmt.csv"
        fi
    done
    return "$rc"
}

# The CSV as an aligned table: concurrency, throughput and client-side latency percentiles in milliseconds.
table() {
    "$VENV/bin/python" - "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rows.sort(key=lambda r: int(r["Concurrency"]))
print(f"{'conc':>4} {'infer/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'avg ms':>8}")
for r in rows:
    avg = sum(int(r[k]) for k in ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                                  "Server Compute Infer", "Server Compute Output", "Client Recv") if k in r and r[k])
    print(f"{r['Concurrency']:>4} {float(r['Inferences/Second']):>9.1f} {int(r['p50 latency'])/1000:>8.2f} "
          f"{int(r['p90 latency'])/1000:>8.2f} {int(r['p99 latency'])/1000:>8.2f} {avg/1000:>8.2f}")
EOF
}

case "${1:-}" in
    install) install ;;
    sweep) shift; sweep "$@" ;;
    run) shift; run "$@" ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
