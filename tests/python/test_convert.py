"""The converted models compute what PyTorch computes, and the exporter works for any model entry point.

Uses the models convert/setup.sh generated in model-repo/, real photos with known content, and a toy entry
point written into a temporary folder (converted through the same command line as the demo model).
"""

import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from conftest import PHOTOS, ROOT

sys.path.insert(0, str(ROOT))
from convert import parity  # noqa: E402
from convert.models import load_spec  # noqa: E402
from convert.preprocess import preprocess  # noqa: E402

REPO = ROOT / "model-repo"
FP32 = REPO / "efficientnet_lite0"
INT8 = REPO / "efficientnet_lite0_int8"
CATS = {"tabby", "tiger cat", "Egyptian cat"}
EXPECTED = {
    "chelsea.png": CATS,
    "coffee.png": {"espresso"},
    "motorcycle_left.png": {"moped", "motor scooter"},
}
CONFIG_KEYS = {"platform", "max_batch_size", "labels", "input", "output", "version_policy", "preprocess",
               "dynamic_batching", "instance_group", "execution"}


def require(path):
    if not path.is_file():
        pytest.fail(f"{path} is missing: run convert/setup.sh first")
    return path


@pytest.fixture(scope="module")
def spec():
    return load_spec("efficientnet_lite0")


@pytest.fixture(scope="module")
def torch_model(spec):
    import torch

    torch.set_num_threads(2)
    return spec.build()


@pytest.fixture(scope="module")
def photo_batch(spec):
    return np.concatenate([preprocess(PHOTOS / name, spec.preprocess) for name in EXPECTED])


def top1_labels(logits, labels):
    return [labels[i] for i in logits.argmax(axis=1)]


def test_fp32_model_matches_pytorch_on_photos_and_random_batches(spec, torch_model, photo_batch):
    sess = parity.session(require(FP32 / "1" / "model.onnx"))
    names = list(EXPECTED)
    photos = parity.compare("photos", names, parity.run_torch(torch_model, photo_batch),
                            parity.run_ort(sess, spec, photo_batch))
    random_input = spec.example_input(5).numpy()
    random = parity.compare("random", [str(i) for i in range(5)], parity.run_torch(torch_model, random_input),
                            parity.run_ort(sess, spec, random_input))
    assert parity.report([random, photos], spec.labels, parity.DEFAULT_ATOL)
    assert photos.max_abs <= parity.DEFAULT_ATOL and random.max_abs <= parity.DEFAULT_ATOL
    assert photos.top1_agree == len(names) and random.top1_agree == 5
    for (name, ref, cand, _), expected in zip(photos.details, EXPECTED.values()):
        assert spec.labels[cand] in expected, f"{name}: onnxruntime says {spec.labels[cand]}"


def test_int8_model_keeps_the_classes(spec, photo_batch):
    fp32 = parity.run_ort(parity.session(require(FP32 / "1" / "model.onnx")), spec, photo_batch)
    int8 = parity.run_ort(parity.session(require(INT8 / "1" / "model.onnx")), spec, photo_batch)
    diff = np.abs(fp32 - int8)
    print(f"int8 vs fp32 logits: max-abs {diff.max():.3f}, mean-abs {diff.mean():.4f}; "
          f"int8 top-1 {top1_labels(int8, spec.labels)}")
    for label, expected in zip(top1_labels(int8, spec.labels), EXPECTED.values()):
        assert label in expected
    assert diff.mean() < 1.0


@pytest.mark.parametrize("model_dir", [FP32, INT8], ids=["fp32", "int8"])
def test_config_and_labels_are_what_the_server_reads(spec, model_dir):
    with open(require(model_dir / "config.toml"), "rb") as f:
        config = tomllib.load(f)
    assert set(config) == CONFIG_KEYS
    assert config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 32
    assert config["input"] == [{"name": "input", "datatype": "FP32", "dims": [3, 224, 224]}]
    assert config["output"] == [{"name": "logits", "datatype": "FP32", "dims": [1000]}]
    assert config["version_policy"] == {"latest": 1}
    assert config["preprocess"] == {"input": "input", **spec.preprocess}
    assert config["execution"]["providers"] == ["cpu"]
    labels = (model_dir / config["labels"]).read_text().splitlines()
    assert len(labels) == 1000
    assert (labels[0], labels[281], labels[282], labels[967], labels[999]) == (
        "tench", "tabby", "tiger cat", "espresso", "toilet tissue")
    sess = parity.session(require(model_dir / "1" / "model.onnx"))
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.shape[1:], out.name, out.shape[1:]) == ("input", [3, 224, 224], "logits", [1000])
    assert isinstance(inp.shape[0], str) and isinstance(out.shape[0], str), "batch axis must be dynamic"


TOY_ENTRY_POINT = '''
"""A toy classifier: proves the exporter needs nothing specific to EfficientNet."""
import torch
from convert.spec import ModelSpec


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        y = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return y * SCALE


def build():
    torch.manual_seed(0)
    return Toy().eval()


def spec():
    return ModelSpec(
        name="toy",
        build=build,
        example_input=lambda batch: torch.randn(batch, 3, 32, 32),
        input_name="pixels",
        output_name="scores",
        max_batch_size=4,
        labels=[f"class {i}" for i in range(10)],
        preprocess={"color": "BGR", "crop_fraction": 1.0, "size": 32, "interpolation": "bilinear",
                    "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "layout": "NCHW"},
        config={"dynamic_batching": {"max_queue_size": 8}},
    )
'''


def run_convert(entry, repo, version=2):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "convert", str(entry), "--repo", str(repo),
                           "--version", str(version), "--threads", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    print(proc.stdout, proc.stderr)
    return proc


def test_a_toy_entry_point_converts_through_the_same_exporter(tmp_path):
    entry = tmp_path / "toy.py"
    entry.write_text(TOY_ENTRY_POINT.replace("SCALE", "1.0"))
    repo = tmp_path / "repo"
    proc = run_convert(entry, repo)
    assert proc.returncode == 0
    assert "top-1 agreement 4/4 -> ok" in proc.stdout  # the photo check ran with the toy's own recipe

    with open(repo / "toy" / "config.toml", "rb") as f:
        config = tomllib.load(f)
    assert config["max_batch_size"] == 4
    assert config["input"] == [{"name": "pixels", "datatype": "FP32", "dims": [3, 32, 32]}]
    assert config["output"] == [{"name": "scores", "datatype": "FP32", "dims": [10]}]
    assert config["preprocess"]["input"] == "pixels" and config["preprocess"]["color"] == "BGR"
    assert config["dynamic_batching"]["max_queue_size"] == 8
    assert config["dynamic_batching"]["preferred_batch_sizes"] == []
    assert (repo / "toy" / "labels.txt").read_text().splitlines()[9] == "class 9"

    sess = parity.session(repo / "toy" / "2" / "model.onnx")
    assert sess.run(None, {"pixels": np.zeros((3, 3, 32, 32), np.float32)})[0].shape == (3, 10)


def test_a_model_that_breaks_parity_is_not_published(tmp_path):
    # The batch size is read as a Python value while tracing, so the graph keeps the batch-1 branch:
    # PyTorch and ONNX Runtime then disagree on larger batches, which the parity check must catch.
    entry = tmp_path / "toy_broken.py"
    entry.write_text(TOY_ENTRY_POINT.replace("y * SCALE", "y * (1.0 if x.shape[0] == 1 else 2.0)"))
    repo = tmp_path / "repo"
    proc = run_convert(entry, repo)
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "differs from PyTorch" in proc.stderr
    assert not (repo / "toy" / "2" / "model.onnx").exists()
    assert not (repo / "toy" / "config.toml").exists()


def test_an_unknown_model_is_a_usage_error(tmp_path):
    proc = run_convert("no_such_model", tmp_path)
    assert proc.returncode == 2 and "unknown model" in proc.stderr
