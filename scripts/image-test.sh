#!/usr/bin/env bash
# Builds the CPU image and classifies a photo through the running container, so the image is tested the way it
# runs in the cluster: non-root, read-only root file system, ONNX Runtime taken from the wheel, models mounted at
# /models. Needs no Docker engine (buildah/podman, vfs storage, chroot isolation, runc) and no registry for base
# images: stand-ins made with debootstrap are tagged with the base names the Dockerfile uses.
# The binary is compiled outside (target/release/oxinfer, target cpu-prebuilt) because compiling inside the
# container would need a Rust image and about five minutes of two cores on every change.
# Usage: scripts/image-test.sh            (run from anywhere; env PORT, IMAGE and KEEP=1 adjust it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-localhost/oxinfer:image-test}
PORT=${PORT:-18080}
NAME=oxinfer-image-test-$$
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Limits the container runtime can honour inside this kind of sandbox; the defaults (unlimited) are refused.
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
BUILDAH=(buildah --storage-driver vfs)
PODMAN=(podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend file)

log() { printf '[image-test] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

install_tools() {
    local missing=()
    for tool in buildah podman debootstrap runc curl; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || fail "missing ${missing[*]}; install them or run as root"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        buildah podman debootstrap runc curl uidmap >/dev/null
}

find_photo() {
    local py=/usr/bin/python3
    [ -x "$ROOT/.venv/bin/python" ] && py=$ROOT/.venv/bin/python
    "$py" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png"))' \
        2>/dev/null || true
}

# debian:bookworm-slim stand-in: debootstrap's minbase is what the slim image is made of (apt, bash, coreutils);
# like the official slim build it drops documentation, manuals and translations, so sizes measured here are close
# to those of the real image.
make_bases() {
    if ! "${PODMAN[@]}" image exists docker.io/library/debian:bookworm-slim; then
        local rootfs
        rootfs=$(mktemp -d /var/tmp/oxinfer-rootfs.XXXXXX)
        log "debootstrap --variant=minbase bookworm (a few minutes, once)"
        debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
            "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/groff/*
        find "$rootfs"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
        # mktemp made the folder 0700, and it becomes the image's / : non-root users could not reach anything.
        chmod 0755 "$rootfs"
        tar -C "$rootfs" -c . | "${PODMAN[@]}" import --quiet --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim >/dev/null
        rm -rf "$rootfs"
    fi
    # The wheel-fetching stage only needs python3 and pip; the interpreter version does not matter because only
    # the C library is taken out of the wheel.
    if ! "${PODMAN[@]}" image exists docker.io/library/python:3.12-slim-bookworm; then
        log "making the python base stand-in"
        local ctr
        ctr=$("${BUILDAH[@]}" from --pull=never "${ULIMITS[@]}" docker.io/library/debian:bookworm-slim)
        "${BUILDAH[@]}" run --isolation chroot "$ctr" -- sh -c \
            'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
        "${BUILDAH[@]}" commit --quiet --rm "$ctr" docker.io/library/python:3.12-slim-bookworm >/dev/null
    fi
}

build_image() {
    # The host's CA bundle is lent to the build so that pip trusts whatever TLS inspection the host network uses.
    log "building $IMAGE (target cpu-prebuilt)"
    # The previous build's top layer would otherwise stay behind untagged (vfs stores every layer in full).
    "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
    "${BUILDAH[@]}" bud --pull=never --isolation chroot --format docker --layers "${ULIMITS[@]}" \
        --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        --target cpu-prebuilt -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >&2
}

cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then
        "${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
    fi
}

run_and_classify() {
    local photo=$1 url="http://127.0.0.1:$PORT"
    trap cleanup EXIT
    # Host networking: port publishing needs netfilter, which this kind of sandbox does not allow. Podman's
    # HEALTHCHECK timers need systemd, so the timer is off and the check is run once by hand below. The settings
    # that would come from the Kubernetes manifests are given the same way here (env), read-only root included.
    "${PODMAN[@]}" run -d --name "$NAME" --network host "${ULIMITS[@]}" \
        --read-only --tmpfs /tmp --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges \
        --health-interval disable -v "$ROOT/model-repo:/models:ro" \
        -e OXINFER_HOST=127.0.0.1 -e OXINFER_PORT="$PORT" -e OXINFER_LOG_FORMAT=json \
        "$IMAGE" > /dev/null 2> >(grep -v 'systemd connection' >&2)
    local ready=0
    for _ in $(seq 1 120); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready" || true)" = 200 ]; then
            ready=1
            break
        fi
        if [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$NAME")" != true ]; then
            "${PODMAN[@]}" logs "$NAME" >&2 || true
            fail "the container exited before it was ready"
        fi
        sleep 1
    done
    [ $ready = 1 ] || { "${PODMAN[@]}" logs "$NAME" >&2; fail "not ready after 120 s"; }
    "${PODMAN[@]}" healthcheck run "$NAME" >/dev/null || fail "the image's HEALTHCHECK reports unhealthy while ready"
    log "ready, HEALTHCHECK healthy; classifying $(basename "$photo")"
    local answer
    answer=$(curl -sS --fail-with-body -H 'Content-Type: image/png' --data-binary "@$photo" \
        "$url/v1/models/efficientnet_lite0:predict") || fail "predict: $answer"
    # The first label in document order is the top-1 class. ImageNet's domestic cats are 281-285.
    ANSWER=$answer /usr/bin/python3 - <<'EOF' || fail "no cat first in: $answer"
import json, os, sys

def labels(node):
    if isinstance(node, dict):
        for key in ("label", "class_name", "name"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            yield from labels(value)
    elif isinstance(node, list):
        for value in node:
            yield from labels(value)

first = next(labels(json.loads(os.environ["ANSWER"])), "")
cats = ("tabby", "tiger cat", "persian cat", "siamese cat", "egyptian cat")
print(f"[image-test] top-1: {first}", file=sys.stderr)
sys.exit(0 if any(c in first.lower() for c in cats) else 1)
EOF
}

main() {
    install_tools
    [ -x "$ROOT/target/release/oxinfer" ] || fail "target/release/oxinfer is missing: run cargo build --release first"
    compgen -G "$ROOT/model-repo/*/config.toml" >/dev/null || fail "model-repo/ has no model: run the conversion first"
    local photo
    photo=$(find_photo)
    [ -f "$photo" ] || fail "chelsea.png not found: install scikit-image into .venv (scripts/setup.sh)"
    make_bases
    build_image
    local bytes
    bytes=$("${PODMAN[@]}" image inspect -f '{{.Size}}' "$IMAGE")
    run_and_classify "$photo"
    log "image $IMAGE: $((bytes / 1000000)) MB uncompressed"
    echo "image-test: 1 passed, 0 failed"
}

main "$@"
