"""Writes a model's config.toml, the file the server reads to serve a model.

The key set is shared with the server's parser, so it is spelled out here in one place; Python's standard
library reads TOML but cannot write it, hence the small emitter.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional, Sequence

# Defaults every exported model starts from; a model entry point overrides what it needs via ModelSpec.config.
DEFAULT_TABLES: dict[str, dict[str, Any]] = {
    "version_policy": {"latest": 1},
    "dynamic_batching": {
        "max_queue_delay_us": 2000,
        "eager": True,
        "preferred_batch_sizes": [],
        "max_queue_size": 256,
        "timeout_ms": 30000,
    },
    "instance_group": {"count": 1},
    "execution": {
        "intra_op_threads": 0,
        "providers": ["cpu"],
        "provider_policy": "fallback",
        "graph_optimization_level": "all",
    },
}

# Short notes written next to keys whose meaning is not obvious from the name.
COMMENTS = {
    ("input", "dims"): "without the batch axis",
    ("output", "dims"): "without the batch axis",
    ("version_policy", "latest"): "or: all = true   or: specific = [1, 2]",
    ("preprocess", "input"): "the tensor the image recipe feeds (/v1 predict)",
    ("preprocess", "crop_fraction"): "centre square crop of crop_fraction x short side",
    ("preprocess", "size"): "output is size x size",
    ("execution", "intra_op_threads"): "0 = derived from the CPU quota",
    ("dynamic_batching", "eager"): "wait only while more requests are on their way; false = always wait the delay",
    ("dynamic_batching", "preferred_batch_sizes"): "warm-up runs at batch 1 and at each size listed here; large sizes grow the idle memory arena",
}

TORCH_TO_V2 = {
    "torch.float32": "FP32", "torch.float16": "FP16", "torch.bfloat16": "BF16", "torch.float64": "FP64",
    "torch.int64": "INT64", "torch.int32": "INT32", "torch.int16": "INT16", "torch.int8": "INT8",
    "torch.uint8": "UINT8", "torch.bool": "BOOL",
}


def v2_datatype(dtype) -> str:
    try:
        return TORCH_TO_V2[str(dtype)]
    except KeyError:
        raise ValueError(f"no V2 datatype for {dtype}") from None


def _merge(base: dict, override: Mapping[str, Any]) -> dict:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def build_config(
    *,
    max_batch_size: int,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    labels_file: Optional[str],
    preprocess: Optional[Mapping[str, Any]],
    overrides: Mapping[str, Any] = (),
) -> dict:
    """The config as a dict, in the key order it is written."""
    config: dict[str, Any] = {"platform": "onnxruntime_onnx", "max_batch_size": max_batch_size}
    if labels_file is not None:
        config["labels"] = labels_file
    config["input"] = [dict(t) for t in inputs]
    config["output"] = [dict(t) for t in outputs]
    config["version_policy"] = copy.deepcopy(DEFAULT_TABLES["version_policy"])
    if preprocess is not None:
        config["preprocess"] = {"input": inputs[0]["name"], **preprocess}
    for table in ("dynamic_batching", "instance_group", "execution"):
        config[table] = copy.deepcopy(DEFAULT_TABLES[table])
    return _merge(config, dict(overrides))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _pairs(table: str, values: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in values.items():
        line = f"{key} = {_value(value)}"
        note = COMMENTS.get((table, key))
        lines.append(f"{line:<40}# {note}" if note else line)
    return lines


def to_toml(config: Mapping[str, Any], header: str) -> str:
    lines = [f"# {l}" if l else "#" for l in header.splitlines()]
    scalars = {k: v for k, v in config.items() if not isinstance(v, (dict, list)) or
               (isinstance(v, list) and not any(isinstance(x, dict) for x in v))}
    lines += _pairs("", scalars)
    for key, value in config.items():
        if key in scalars:
            continue
        if isinstance(value, list):
            for item in value:
                lines += ["", f"[[{key}]]"] + _pairs(key, item)
        else:
            lines += ["", f"[{key}]"] + _pairs(key, value)
    return "\n".join(lines) + "\n"
