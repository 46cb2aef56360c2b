"""Checks that an exported ONNX graph computes what the PyTorch model computes.

Run on random inputs (covers every output, batch > 1 proves the dynamic batch axis) and on real photos
preprocessed exactly as the server will (a classifier must keep its top-1 class on each photo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnxruntime as ort
import torch

from . import photos
from .preprocess import preprocess
from .spec import ModelSpec

# Largest accepted |torch - onnxruntime| on any output value; float32 kernels differ in summation order only.
DEFAULT_ATOL = 1e-3


@dataclass
class ParityResult:
    case: str
    max_abs: float
    mean_abs: float
    top1_agree: int
    rows: int
    # Per row: (name, torch top-1 index, onnxruntime top-1 index, torch top-1 probability).
    details: list = field(default_factory=list)

    def ok(self, atol: float) -> bool:
        return self.max_abs <= atol and self.top1_agree == self.rows


def session(model_path: Path | str, threads: Optional[int] = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Stay polite on small machines: conversion runs next to builds.
    options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def compare(case: str, names: Sequence[str], reference: np.ndarray, candidate: np.ndarray) -> ParityResult:
    reference = reference.reshape(reference.shape[0], -1).astype(np.float64)
    candidate = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    diff = np.abs(reference - candidate)
    ref_top = reference.argmax(axis=1)
    cand_top = candidate.argmax(axis=1)
    prob = softmax(reference).max(axis=1)
    details = [(n, int(r), int(c), float(p)) for n, r, c, p in zip(names, ref_top, cand_top, prob)]
    return ParityResult(case, float(diff.max()), float(diff.mean()), int((ref_top == cand_top).sum()),
                        len(names), details)


def run_torch(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


def run_ort(sess: ort.InferenceSession, spec: ModelSpec, batch: np.ndarray) -> np.ndarray:
    return sess.run([spec.output_name], {spec.input_name: batch})[0]


def photo_batch(spec: ModelSpec, names: Sequence[str]) -> np.ndarray:
    return np.concatenate([preprocess(photos.photo(n), spec.preprocess) for n in names])


def check(spec: ModelSpec, model: torch.nn.Module, sess: ort.InferenceSession,
          photo_names: Sequence[str] = photos.PARITY_PHOTOS, random_batch: int = 3,
          seed: int = 0) -> list[ParityResult]:
    results = []
    torch.manual_seed(seed)
    random_input = spec.example_input(random_batch).numpy()
    names = [f"random[{i}]" for i in range(random_batch)]
    results.append(compare(f"random batch of {random_batch}", names, run_torch(model, random_input),
                           run_ort(sess, spec, random_input)))
    if spec.preprocess is not None and photo_names:
        batch = photo_batch(spec, photo_names)
        results.append(compare(f"{len(photo_names)} photos", photo_names, run_torch(model, batch),
                               run_ort(sess, spec, batch)))
    return results


def report(results: Sequence[ParityResult], labels: Optional[Sequence[str]], atol: float) -> bool:
    def name(i: int) -> str:
        return f"{i} {labels[i]}" if labels else str(i)

    ok = True
    for r in results:
        verdict = "ok" if r.ok(atol) else "FAIL"
        ok &= r.ok(atol)
        print(f"parity {r.case}: max-abs diff {r.max_abs:.3e} (tolerance {atol:.0e}), mean-abs {r.mean_abs:.3e}, "
              f"top-1 agreement {r.top1_agree}/{r.rows} -> {verdict}")
        if not r.case.startswith("random"):
            for photo, ref, cand, prob in r.details:
                print(f"    {photo}: torch {name(ref)} (p={prob:.3f}), onnxruntime {name(cand)}")
    return ok
