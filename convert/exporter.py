"""Turns a ModelSpec into a served model: <repo>/<name>/<version>/model.onnx, config.toml and labels.txt.

The ONNX file is only moved into place once it passed the checker and the parity check, so a server
polling the repository never sees a broken or half-written version.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import onnx
import torch

from . import parity, photos
from .config import build_config, to_toml, v2_datatype
from .spec import ModelSpec


class ParityError(RuntimeError):
    pass


def export_onnx(spec: ModelSpec, model: torch.nn.Module, path: Path) -> None:
    example = spec.example_input(1)
    batch_axis = {0: "batch"}
    # torch 1.13 warns for every strided Slice it leaves unfolded; harmless, and it buries the parity report.
    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
    with torch.no_grad():
        torch.onnx.export(
            model,
            example,
            str(path),
            opset_version=spec.opset,
            input_names=[spec.input_name],
            output_names=[spec.output_name],
            dynamic_axes={spec.input_name: batch_axis, spec.output_name: batch_axis},
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path), load_external_data=False).graph
    for value in (graph.input[0], graph.output[0]):
        first = value.type.tensor_type.shape.dim[0]
        if first.dim_param != "batch":
            raise RuntimeError(f"{value.name}: batch axis is not dynamic after export")


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def model_config(spec: ModelSpec, model: torch.nn.Module) -> dict:
    example = spec.example_input(1)
    with torch.no_grad():
        output = model(example)
    tensor = lambda name, t: {"name": name, "datatype": v2_datatype(t.dtype), "dims": list(t.shape[1:])}
    return build_config(
        max_batch_size=spec.max_batch_size,
        inputs=[tensor(spec.input_name, example)],
        outputs=[tensor(spec.output_name, output)],
        labels_file="labels.txt" if spec.labels is not None else None,
        preprocess=spec.preprocess,
        overrides=spec.config,
    )


def convert(spec: ModelSpec, repo: Path, version: int, atol: float = parity.DEFAULT_ATOL,
            photo_names: Optional[Sequence[str]] = None, entry_point: Optional[str] = None) -> Path:
    """Export, check and publish one version; returns the model.onnx path. Raises ParityError on a mismatch."""
    if version < 1:
        raise ValueError("versions are positive integers")
    photo_names = photos.PARITY_PHOTOS if photo_names is None else photo_names
    model_dir = Path(repo) / spec.name
    version_dir = model_dir / str(version)

    started = time.monotonic()
    model = spec.build()
    if model.training:
        raise ValueError(f"{spec.name}: build() must return the model in eval mode")
    created = [d for d in (model_dir, version_dir) if not d.exists()]
    version_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=version_dir, prefix=".model.", suffix=".onnx", delete=False) as f:
        tmp_path = Path(f.name)
    try:
        export_onnx(spec, model, tmp_path)
        size_mb = tmp_path.stat().st_size / 1e6
        print(f"exported {spec.name} (opset {spec.opset}, {size_mb:.1f} MB) in {time.monotonic() - started:.1f} s")
        results = parity.check(spec, model, parity.session(tmp_path), photo_names)
        if not parity.report(results, spec.labels, atol):
            raise ParityError(f"{spec.name}: ONNX Runtime output differs from PyTorch beyond tolerance")

        # Config and labels first: a server polling the repository may pick the version up as soon as
        # model.onnx appears.
        source = entry_point or spec.name
        header = (f"Serving configuration of {spec.name}, written by `python -m convert {source}`.\n"
                  "Keys are read by the server; see convert/README.md.")
        write_text(model_dir / "config.toml", to_toml(model_config(spec, model), header))
        if spec.labels is not None:
            write_text(model_dir / "labels.txt", "\n".join(spec.labels) + "\n")
        final = version_dir / "model.onnx"
        # mkstemp creates 0600 files; servers often run as another user than the converter.
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, final)
    except BaseException:
        # Leave no empty folders behind: the server would list an empty version as one that fails to load.
        tmp_path.unlink(missing_ok=True)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    print(f"wrote {final} and {model_dir / 'config.toml'}")
    return final
