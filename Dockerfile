# Container images of the oxinfer server. One file with several targets, so that the CPU and GPU images share the
# compile step and differ only in their runtime base and in the ONNX Runtime libraries they carry:
#   cpu (default, last stage)  Debian slim + the `onnxruntime` wheel's library; models mounted at /models
#   demo                       cpu + model-repo/ baked in at /models (a self-contained image, no bucket needed)
#   gpu                        CUDA 13 + cuDNN 9 runtime + `onnxruntime-gpu` (CUDA and TensorRT providers) + TensorRT
#   cpu-prebuilt               cpu with a binary compiled outside the build (target/release/oxinfer, same glibc as
#                              bookworm), for hosts where compiling inside a container is too slow
# Base images are build arguments so that a registry mirror (or a locally made stand-in) replaces them without edits.
# The ONNX Runtime versions follow convert/requirements.txt: the server is built against the 1.31 C API (api-31).
# checkov:skip=CKV_DOCKER_7:every FROM names a build argument whose default has a version tag; checkov does not expand ARG

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG PYTHON_IMAGE=docker.io/library/python:3.12-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG CUDA_IMAGE=docker.io/nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------------------------
# Compile. `ort` uses load-dynamic, so nothing is downloaded at build time except crates (Cargo.lock, --locked).
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
# Cache mounts keep the crate downloads and the target folder between builds; the binary is copied out of the
# cached target folder because cache mounts are not part of the stage's file system.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/oxinfer /oxinfer

# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime comes from the PyPI wheels (the same builds the Python tooling uses), not from a tarball: the
# library is taken out of the wheel and the Python bindings are left behind. The unversioned link lets the
# configuration name one path whatever the version.
FROM ${PYTHON_IMAGE} AS ort-cpu
ARG ORT_VERSION=1.31.1
WORKDIR /wheels
RUN python3 -m pip download --no-deps --only-binary=:all: --dest /wheels "onnxruntime==${ORT_VERSION}" \
    && python3 -m zipfile -e "/wheels/onnxruntime-${ORT_VERSION}-"*.whl /wheels/x \
    && mkdir -p /opt/onnxruntime \
    && cp /wheels/x/onnxruntime/capi/libonnxruntime*.so* /opt/onnxruntime/ \
    && ln -s "libonnxruntime.so.${ORT_VERSION}" /opt/onnxruntime/libonnxruntime.so \
    && rm -rf /wheels/*

FROM ${PYTHON_IMAGE} AS ort-gpu
ARG ORT_VERSION=1.31.1
# ORT 1.31's TensorRT provider links libnvinfer.so.10 and libnvonnxparser.so.10 (TensorRT 10, CUDA 13 build).
# On PyPI the TensorRT package is only a stub that fetches the wheel from NVIDIA's index, so it is taken from
# there directly.
ARG TENSORRT_VERSION=10.16.1.11
ARG NVIDIA_INDEX=https://pypi.nvidia.com
WORKDIR /wheels
RUN python3 -m pip download --no-deps --only-binary=:all: --dest /wheels "onnxruntime-gpu==${ORT_VERSION}" \
    && python3 -m pip download --no-deps --only-binary=:all: --dest /wheels --index-url "${NVIDIA_INDEX}" \
        "tensorrt-cu13-libs==${TENSORRT_VERSION}" \
    && for w in /wheels/*.whl; do python3 -m zipfile -e "$w" /wheels/x; done \
    && mkdir -p /opt/onnxruntime /opt/tensorrt \
    && cp /wheels/x/onnxruntime/capi/libonnxruntime*.so* /opt/onnxruntime/ \
    && cp /wheels/x/tensorrt_libs/lib*.so* /opt/tensorrt/ \
    && ln -s "libonnxruntime.so.${ORT_VERSION}" /opt/onnxruntime/libonnxruntime.so \
    && rm -rf /wheels/*

# ---------------------------------------------------------------------------------------------------------------
# Everything of the CPU image except the binary. The process writes nothing, so the root file system can be
# read-only; /models is an empty mount point (a volume, a bucket mount, or the demo target's copy).
FROM ${RUNTIME_IMAGE} AS cpu-base
COPY --from=ort-cpu /opt/onnxruntime/ /opt/onnxruntime/
RUN groupadd --gid 10001 oxinfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oxinfer \
    && mkdir -p /models
ENV OXINFER_ORT_LIBRARY=/opt/onnxruntime/libonnxruntime.so \
    OXINFER_MODEL_REPOSITORY=/models
EXPOSE 8000
USER 10001:10001
# For plain docker/podman runs; Kubernetes uses its own probes. Bash's /dev/tcp avoids shipping an HTTP client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${OXINFER_PORT:-8000} && printf 'GET /v2/health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/oxinfer"]

# ---------------------------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
COPY --from=ort-gpu /opt/onnxruntime/ /opt/onnxruntime/
COPY --from=ort-gpu /opt/tensorrt/ /opt/tensorrt/
COPY --from=build /oxinfer /usr/local/bin/oxinfer
RUN groupadd --gid 10001 oxinfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oxinfer \
    && mkdir -p /models
# ONNX Runtime finds its provider libraries next to itself; TensorRT and the node's driver (mounted by GKE under
# /usr/local/nvidia) are found through the loader path.
ENV OXINFER_ORT_LIBRARY=/opt/onnxruntime/libonnxruntime.so \
    OXINFER_MODEL_REPOSITORY=/models \
    LD_LIBRARY_PATH=/opt/onnxruntime:/opt/tensorrt:/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
EXPOSE 8000
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${OXINFER_PORT:-8000} && printf 'GET /v2/health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/oxinfer"]

# ---------------------------------------------------------------------------------------------------------------
FROM cpu-base AS cpu-prebuilt
COPY target/release/oxinfer /usr/local/bin/oxinfer

FROM cpu-base AS demo
COPY --from=build /oxinfer /usr/local/bin/oxinfer
COPY model-repo/ /models/

# Last, so that a build without --target gives the production CPU image.
FROM cpu-base AS cpu
COPY --from=build /oxinfer /usr/local/bin/oxinfer
