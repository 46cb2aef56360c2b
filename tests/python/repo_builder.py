"""Temporary model repositories for the swap and reload tests, changed the way an operator would: every
version and model enters or leaves through a hidden staging folder and one rename, so the server never sees a
half-copied file; plus small readers for the server's index, metrics and JSON logs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import requests

from conftest import PHOTOS, ROOT

SOURCE = ROOT / "model-repo" / "efficientnet_lite0"
FP32 = SOURCE / "1" / "model.onnx"
INT8 = ROOT / "model-repo" / "efficientnet_lite0_int8" / "1" / "model.onnx"
CATS = {"tabby", "tiger cat", "Egyptian cat"}
EXPECTED = {"coffee.png": {"espresso"}, "chelsea.png": CATS}
IMAGES = {name: (PHOTOS / name).read_bytes() for name in EXPECTED}
# One intra-op thread and two HTTP workers: the tests share a small machine with other work.
SERVER_ARGS = ["--intra-op-threads", "1", "--http-workers", "2", "--log-format", "json"]


def require_models() -> None:
    for f in (FP32, INT8):
        assert f.is_file(), f"{f} is missing: run scripts/setup.sh (it converts and quantizes the model)"


def config_text(policy: str = "latest = 1", preferred: str | None = None) -> str:
    """The demo model's configuration with another version policy and, optionally, other warm-up batch sizes."""
    text = (SOURCE / "config.toml").read_text()
    text, n = re.subn(r"(?m)^latest = 1\b.*$", policy, text)
    assert n == 1, "the demo config.toml no longer has 'latest = 1' under [version_policy]"
    if preferred is not None:
        text, n = re.subn(r"(?m)^preferred_batch_sizes = .*$", f"preferred_batch_sizes = {preferred}", text)
        assert n == 1
    return text


def _staging(repo: Path) -> Path:
    path = repo / f".staging-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def add_model(repo: Path, name: str, versions: dict[int, Path | bytes], config: str | None = None) -> Path:
    """A whole model folder (config, labels, versions), renamed into place in one step."""
    stage = _staging(repo)
    (stage / "config.toml").write_text(config or config_text())
    shutil.copyfile(SOURCE / "labels.txt", stage / "labels.txt")
    for v, content in versions.items():
        _write_version(stage / str(v), content)
    os.rename(stage, repo / name)
    return repo / name


def _write_version(folder: Path, content: Path | bytes) -> None:
    folder.mkdir()
    if isinstance(content, bytes):
        (folder / "model.onnx").write_bytes(content)
    else:
        shutil.copyfile(content, folder / "model.onnx")


def add_version(repo: Path, model: str, version: int, content: Path | bytes) -> None:
    stage = _staging(repo)
    _write_version(stage / str(version), content)
    os.rename(stage / str(version), repo / model / str(version))
    stage.rmdir()


def remove(repo: Path, *parts: str | int) -> None:
    """Moves a model or version folder out in one rename, then deletes it."""
    stage = _staging(repo)
    os.rename(repo.joinpath(*map(str, parts)), stage / "gone")
    shutil.rmtree(stage)


def mismatched_model() -> bytes:
    """A valid ONNX model whose input ('x', FP32 [-1, 4]) is not the one the configuration declares."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "mismatch", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # old enough for any ONNX Runtime the server may be built against
    onnx.checker.check_model(model)
    return model.SerializeToString()


def predict(session: requests.Session, url: str, model: str, image: str, timeout: float = 60) -> requests.Response:
    return session.post(f"{url}/v1/models/{model}:predict", data=IMAGES[image],
                        headers={"Content-Type": "image/png"}, timeout=timeout)


def index(url: str) -> list[dict]:
    r = requests.post(f"{url}/v2/repository/index", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def index_entry(url: str, model: str, version: int) -> dict | None:
    return next((e for e in index(url) if e["name"] == model and e.get("version") == str(version)), None)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`; 0 when there is none."""
    total = 0.0
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def log_events(server, message: str) -> list[dict]:
    """JSON log events (the servers here log JSON) whose message is `message`."""
    out = []
    for line in server.logs().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("message") == message:
            out.append(event)
    return out
