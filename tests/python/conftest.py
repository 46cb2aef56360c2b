"""Shared fixtures: the real server binary with the real model repository on a free port.

Every integration test talks to a real process over HTTP, as a client would; nothing is mocked.
"""
from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("OXINFER_BIN", ROOT / "target" / "release" / "oxinfer"))
REPO = ROOT / "model-repo"


def _find_photos() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _find_ort() -> str:
    import onnxruntime

    libs = sorted(glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so.*")))
    if not libs:
        raise RuntimeError("libonnxruntime.so.* not found in the onnxruntime wheel")
    return libs[-1]


PHOTOS = _find_photos()
ORT_LIB = _find_ort()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def start_server(args=(), env: dict | None = None, repo: str | Path | None = None, wait_ready: bool = True,
                 timeout: float = 60.0):
    """Starts the binary and yields a `Server`; stops it (SIGTERM, then kill) on exit."""
    if not BIN.exists():
        raise RuntimeError(f"{BIN} is missing: build it with `cargo build --release`")
    port = free_port()
    log = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"oxinfer-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OXINFER_")}
    full_env.update({"OXINFER_LOG_LEVEL": "info"})
    full_env.update(env or {})
    cmd = [str(BIN), "--host", "127.0.0.1", "--port", str(port), "--ort-library", ORT_LIB,
           "--model-repository", str(repo or REPO), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = Server(url=f"http://127.0.0.1:{port}", port=port, proc=proc, log=log)
    try:
        if wait_ready:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{server.logs()}")
                try:
                    if requests.get(server.url + "/v2/health/ready", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(f"server not ready after {timeout}s:\n{server.logs()}")
                time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def server():
    with start_server() as s:
        yield s


def photo(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def corrupt_jpeg() -> bytes:
    """A real JPEG cut short: the header parses, the scan data ends early."""
    data = photo("rocket.jpg")
    return data[: len(data) // 3]


def photo_tensor(name: str, model: str = "efficientnet_lite0"):
    """What the image endpoint feeds `model` for one of the test photos: [1, 3, H, W] FP32, by convert/'s recipe."""
    import numpy as np
    from convert.preprocess import load_recipe, preprocess

    recipe = load_recipe(REPO / model / "config.toml")
    return preprocess(PHOTOS / name, recipe).astype(np.float32)


@pytest.fixture(scope="session")
def batch():
    """coffee.png and chelsea.png as a [2, 3, 224, 224] batch."""
    import numpy as np

    return np.concatenate([photo_tensor("coffee.png"), photo_tensor("chelsea.png")])


@pytest.fixture(scope="session")
def reference(batch):
    """The logits ONNX Runtime computes in-process for `batch`, to compare the server's with."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(REPO / "efficientnet_lite0" / "1" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": batch})[0]
