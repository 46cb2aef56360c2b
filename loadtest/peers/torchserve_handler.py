"""TorchServe handler for the comparison: EfficientNet-Lite0 with the same preprocessing as oxinfer.

Two back ends, chosen by the serialized file in the archive: a `.pth` state dict runs the PyTorch model
(Debian's torch; the model code from efficientnet-lite-pytorch), a `.onnx` file runs the very model file
oxinfer serves, through ONNX Runtime. TorchServe batches requests (batchSize/maxBatchDelay), so a call
gets a list of requests and runs them as one batch, as oxinfer's dynamic batcher does.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from preprocess import load_recipe, preprocess  # shipped with --extra-files

_state: dict = {}


def _initialize(context) -> None:
    model_dir = Path(context.system_properties["model_dir"])
    serialized = model_dir / context.manifest["model"]["serializedFile"]
    threads = int(os.environ.get("PEER_INTRA_OP_THREADS", "1"))
    if serialized.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(serialized), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        _state["run"] = lambda batch: session.run(None, {name: batch})[0]
    else:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        torch.set_num_threads(threads)
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(serialized)).eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(batch)).numpy()

        _state["run"] = run
    _state["recipe"] = load_recipe(model_dir / "config.toml")
    _state["labels"] = (model_dir / "labels.txt").read_text().splitlines()


def _top_k(logits: np.ndarray, k: int = 5) -> list[dict]:
    z = np.exp(logits - logits.max())
    p = z / z.sum()
    labels = _state["labels"]
    return [{"index": int(i), "label": labels[i], "score": float(p[i])} for i in np.argsort(-p)[:k]]


def handle(data, context):
    if not _state:
        _initialize(context)
    if data is None:
        return None
    tensors = []
    for row in data:
        body = row.get("body") or row.get("data")
        tensors.append(preprocess(bytes(body), _state["recipe"]))
    logits = _state["run"](np.concatenate(tensors, axis=0))
    return [{"predictions": _top_k(row)} for row in logits]
