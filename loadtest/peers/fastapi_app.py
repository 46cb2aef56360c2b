"""Peer for comparison: the usual Python way to serve the same ONNX model (FastAPI + ONNX Runtime + Pillow).

Same model file, same preprocessing recipe (convert/preprocess.py), same routes as oxinfer for the
image and V2 endpoints, so the k6 scripts run unchanged against it. Run under gunicorn with uvicorn
workers: one process per core, one intra-op thread each, which is how such services are usually sized.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

ROOT = Path(os.environ.get("OXINFER_ROOT", Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(ROOT))
from convert.preprocess import load_recipe, preprocess  # noqa: E402

MODEL = os.environ.get("PEER_MODEL", "efficientnet_lite0")
MODEL_DIR = Path(os.environ.get("PEER_MODEL_DIR", ROOT / "model-repo" / MODEL))
VERSION = os.environ.get("PEER_MODEL_VERSION", "1")

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("PEER_INTRA_OP_THREADS", "1"))
options.inter_op_num_threads = 1
session = ort.InferenceSession(str(MODEL_DIR / VERSION / "model.onnx"), options, providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0].name
RECIPE = load_recipe(MODEL_DIR / "config.toml")
LABELS = (MODEL_DIR / "labels.txt").read_text().splitlines()

app = FastAPI()


def _top_k(logits: np.ndarray, k: int = 5) -> list[dict]:
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    idx = np.argsort(-p)[:k]
    return [{"index": int(i), "label": LABELS[i] if i < len(LABELS) else str(i), "score": float(p[i])} for i in idx]


@app.get("/v2/health/ready")
def ready() -> Response:
    return Response(status_code=200)


# The work runs in Starlette's thread pool (ONNX Runtime releases the GIL), keeping the event loop free.
@app.post("/v1/models/{model}:predict")
async def predict(model: str, request: Request):
    body = await request.body()
    if model != MODEL:
        return JSONResponse({"error": f"unknown model {model}"}, status_code=404)
    return await _in_thread(_predict, body)


def _predict(body: bytes):
    try:
        tensor = preprocess(body, RECIPE)
    except Exception as e:  # Pillow raises many kinds for bad images
        return JSONResponse({"error": f"bad image: {e}"}, status_code=400)
    logits = session.run(None, {INPUT: tensor})[0][0]
    return {"model_name": MODEL, "model_version": VERSION, "predictions": _top_k(logits)}


@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request):
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    return await _in_thread(_infer, body, header_length)


def _infer(body: bytes, header_length: str | None):
    # JSON or binary inputs; outputs always come back as JSON (enough for the load scripts' checks).
    length = int(header_length) if header_length else len(body)
    header = json.loads(body[:length])
    spec = header["inputs"][0]
    if "data" in spec:
        tensor = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
    else:
        size = int(spec["parameters"]["binary_data_size"])
        tensor = np.frombuffer(body[length:length + size], dtype="<f4").reshape(spec["shape"])
    logits = session.run(None, {INPUT: tensor})[0]
    out = {"name": "logits", "shape": list(logits.shape), "datatype": "FP32", "data": logits.ravel().tolist()}
    return {"model_name": MODEL, "model_version": VERSION, "outputs": [out]}


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
