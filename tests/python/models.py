"""Tiny ONNX models written on the fly, so protocol tests can exercise every datatype and a cheap batching model
without shipping binaries: each function writes `<repo>/<name>/config.toml` and `<repo>/<name>/1/model.onnx`."""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

# ONNX Runtime 1.31 runs opset 17 everywhere; Identity has taken every tensor type since opset 14.
OPSET = 17
IR_VERSION = 8

# Protocol datatype → ONNX element type. BF16 is kept apart: ONNX Runtime's CPU Identity may not register it.
DATATYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
BF16 = {"BF16": TensorProto.BFLOAT16}


def _config(max_batch_size: int, tensors: list[tuple[str, str, str, list[int]]]) -> str:
    lines = [
        "# Written by tests/python/models.py for protocol tests.",
        'platform = "onnxruntime_onnx"',
        f"max_batch_size = {max_batch_size}",
        "",
    ]
    for kind, name, datatype, dims in tensors:
        lines += [f"[[{kind}]]", f'name = "{name}"', f'datatype = "{datatype}"', f"dims = {dims}", ""]
    # A short queue delay keeps single-client latency low while still batching concurrent requests.
    lines += ["[dynamic_batching]", "max_queue_delay_us = 100", "", "[instance_group]", "count = 1", ""]
    return "\n".join(lines)


def _write(repo: Path, name: str, graph: onnx.GraphProto, config: str) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="oxinfer-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    folder = Path(repo) / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "1" / "model.onnx")
    (folder / "config.toml").write_text(config)
    return folder


def identity(repo: str | Path, name: str = "identity", width: int = 4, max_batch_size: int = 8) -> Path:
    """FP32 INPUT0 [-1, width] → OUTPUT0, the same values: the cheapest model that still batches."""
    x = helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", width])
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], name, [x], [y])
    config = _config(max_batch_size, [("input", "INPUT0", "FP32", [width]), ("output", "OUTPUT0", "FP32", [width])])
    return _write(repo, name, graph, config)


def all_types(repo: str | Path, name: str = "all_types", datatypes: dict[str, int] | None = None,
              max_batch_size: int = 8) -> Path:
    """One Identity per datatype: IN_<TYPE> [-1, -1] → OUT_<TYPE>, so one request round-trips every type."""
    datatypes = DATATYPES if datatypes is None else datatypes
    nodes, inputs, outputs, tensors = [], [], [], []
    for dt, elem in datatypes.items():
        nodes.append(helper.make_node("Identity", [f"IN_{dt}"], [f"OUT_{dt}"], name=f"identity_{dt.lower()}"))
        inputs.append(helper.make_tensor_value_info(f"IN_{dt}", elem, ["batch", "n"]))
        outputs.append(helper.make_tensor_value_info(f"OUT_{dt}", elem, ["batch", "n"]))
        tensors += [("input", f"IN_{dt}", dt, [-1]), ("output", f"OUT_{dt}", dt, [-1])]
    graph = helper.make_graph(nodes, name, inputs, outputs)
    config = _config(max_batch_size, [t for t in tensors if t[0] == "input"] + [t for t in tensors if t[0] == "output"])
    return _write(repo, name, graph, config)
