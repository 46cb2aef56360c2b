"""Static int8 quantization of an exported image model, published as a separate model in the repository.

`python -m convert.quantize efficientnet_lite0 --repo model-repo --version 1` reads
<repo>/<model>/<version>/model.onnx and writes <repo>/<model>_int8/<version>/model.onnx with a copy of the
model's config.toml and labels.txt (same tensors: the int8 graph still takes and returns float32).

QDQ format: int8 weights per output channel, uint8 activations calibrated (min/max) on real photos run
through the model's own preprocessing. Weights use 7 bits (reduce_range): x86 CPUs without VNNI multiply
uint8 x int8 pairs into saturating 16-bit sums, and full-range weights overflow them (measured here: both
less accurate and no faster than int8 x int8). The first and the last weighted layers stay float: they carry
the input's and the logits' fine detail and cost little. Static quantization, not dynamic: dynamic
quantization makes this kind of CNN much slower on CPU. Exit status 1 when the int8 model changes the top-1
class of a parity photo (nothing is written then).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from . import parity, photos
from .preprocess import preprocess_rgb, to_rgb

# A photo the fp32 model classifies with at least this probability; below it top-1 flips on tiny changes.
CONFIDENT = 0.3


def calibration_images(names: Sequence[str]) -> Iterator[Image.Image]:
    """Each photo as it is, mirrored, and as a tighter crop, so ranges are not fitted to a few framings."""
    for name in names:
        image = to_rgb(Image.open(photos.photo(name)))
        yield image
        yield ImageOps.mirror(image)
        w, h = image.size
        yield image.crop((w // 8, h // 8, w - w // 8, h - h // 8))


class PhotoReader:
    """onnxruntime.quantization CalibrationDataReader over preprocessed photos (duck-typed: get_next/rewind)."""

    def __init__(self, input_name: str, recipe: dict, names: Sequence[str]):
        self.batches = [{input_name: preprocess_rgb(img, recipe)} for img in calibration_images(names)]
        self.position = 0

    def get_next(self):
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self):
        self.position = 0


def end_layers(model: Path) -> list[str]:
    """Names of the first and the last node that carry weights (Conv, Gemm, MatMul)."""
    import onnx

    weighted = [n.name for n in onnx.load(str(model)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return sorted({weighted[0], weighted[-1]}) if weighted else []


def quantize(source: Path, target: Path, input_name: str, recipe: dict, names: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds batch norms and infers shapes first, as ONNX Runtime recommends before static quantization.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        reader = PhotoReader(input_name, recipe, names)
        quantize_static(
            str(prepared),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=end_layers(prepared),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    os.chmod(target, 0o644)


def throughput(model: Path, input_name: str, batch: int, seconds: float, threads: int) -> tuple[float, float]:
    """Images per wall-clock second, and per CPU second of this process (robust to other load on the machine)."""
    sess = parity.session(model, threads)
    data = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for _ in range(3):
        sess.run(None, {input_name: data})
    runs, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        sess.run(None, {input_name: data})
        runs += 1
    images = runs * batch
    return images / (time.perf_counter() - started), images / max(time.process_time() - cpu_started, 1e-9)


def copy_model_files(source_dir: Path, target_dir: Path, model: str) -> None:
    text = (source_dir / "config.toml").read_text()
    body = "".join(l for l in text.splitlines(keepends=True) if not l.startswith("#")).lstrip("\n")
    header = (f"# Serving configuration of {target_dir.name}: {model} with int8 weights and activations,\n"
              f"# written by `python -m convert.quantize {model}`. Keys are read by the server; see convert/README.md.\n")
    (target_dir / "config.toml").write_text(header + body)
    labels = source_dir / "labels.txt"
    if labels.exists():
        (target_dir / "labels.txt").write_text(labels.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="name of an exported image model in the repository")
    parser.add_argument("--repo", type=Path, default=Path("model-repo"))
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--suffix", default="_int8", help="appended to the model name for the int8 model")
    parser.add_argument("--bench-seconds", type=float, default=1.0,
                        help="time per throughput measurement (3 rounds each); 0 skips the benchmark")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads when benchmarking")
    args = parser.parse_args(argv)
    logging.getLogger("root").setLevel(logging.WARNING)

    source_dir = args.repo / args.model
    source = source_dir / str(args.version) / "model.onnx"
    if not source.is_file():
        print(f"error: {source} not found; export the model first (python -m convert {args.model})", file=sys.stderr)
        return 2
    with open(source_dir / "config.toml", "rb") as f:
        config = tomllib.load(f)
    recipe = config.get("preprocess")
    if recipe is None:
        print(f"error: {args.model} has no [preprocess] recipe to calibrate with", file=sys.stderr)
        return 2
    input_name = recipe["input"]
    output_name = config["output"][0]["name"]
    labels_path = source_dir / "labels.txt"
    labels = labels_path.read_text().splitlines() if labels_path.exists() else None

    target_dir = args.repo / (args.model + args.suffix)
    version_dir = target_dir / str(args.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    tmp_target = version_dir / ".model.int8.onnx"

    started = time.monotonic()
    quantize(source, tmp_target, input_name, recipe, photos.CALIBRATION_PHOTOS)
    print(f"quantized {source} in {time.monotonic() - started:.1f} s "
          f"({source.stat().st_size / 1e6:.1f} MB -> {tmp_target.stat().st_size / 1e6:.1f} MB), "
          f"calibrated on {len(photos.CALIBRATION_PHOTOS)} photos x 3 views")

    fp32, int8 = parity.session(source), parity.session(tmp_target)
    names = list(photos.CALIBRATION_PHOTOS)
    batch = np.concatenate([preprocess_rgb(to_rgb(Image.open(photos.photo(n))), recipe) for n in names])
    run = lambda s: s.run([output_name], {input_name: batch})[0]
    result = parity.compare("int8 vs fp32", names, run(fp32), run(int8))
    agree_parity = sum(1 for n, r, c, _ in result.details if n in photos.PARITY_PHOTOS and r == c)
    confident = [(r, c) for _, r, c, p in result.details if p >= CONFIDENT]
    print(f"int8 vs fp32 on {result.rows} photos: top-1 agreement {result.top1_agree}/{result.rows} "
          f"({sum(r == c for r, c in confident)}/{len(confident)} where fp32 p >= {CONFIDENT}), "
          f"logit max-abs diff {result.max_abs:.3f}, mean-abs {result.mean_abs:.4f}")
    for photo, ref, cand, prob in result.details:
        label = (lambda i: f"{i} {labels[i]}") if labels else str
        mark = "" if ref == cand else "   <- differs"
        print(f"    {photo}: fp32 {label(ref)} (p={prob:.3f}), int8 {label(cand)}{mark}")

    if args.bench_seconds > 0:
        for b in (1, 8):
            # Interleaved rounds, best of each: other work on the machine then skews both sides alike.
            a = q = (0.0, 0.0)
            for _ in range(3):
                a = max(a, throughput(source, input_name, b, args.bench_seconds, args.threads))
                q = max(q, throughput(tmp_target, input_name, b, args.bench_seconds, args.threads))
            print(f"throughput batch {b}, {args.threads} thread(s): fp32 {a[0]:.1f} img/s, int8 {q[0]:.1f} img/s "
                  f"(x{q[0] / a[0]:.2f}); per CPU second: fp32 {a[1]:.1f}, int8 {q[1]:.1f} (x{q[1] / a[1]:.2f})")

    if agree_parity < len(photos.PARITY_PHOTOS):
        tmp_target.unlink()
        print("error: int8 changed the top-1 class of a parity photo; model not written", file=sys.stderr)
        return 1
    os.replace(tmp_target, version_dir / "model.onnx")
    copy_model_files(source_dir, target_dir, args.model)
    print(f"wrote {version_dir / 'model.onnx'} and {target_dir / 'config.toml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
