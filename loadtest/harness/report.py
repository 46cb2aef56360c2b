"""Reads k6's raw samples and draws the report: throughput and latency over time, and against concurrency.

Everything is computed from the per-request samples (k6's CSV output), not from k6's summary, so the
same code serves one scenario, a concurrency sweep and the comparison of several servers.
"""
from __future__ import annotations

import csv
import gzip
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


@dataclass
class Samples:
    t: np.ndarray            # completion time of each request, seconds since the first sample
    ms: np.ndarray           # http_req_duration
    ok: np.ndarray           # expected response (2xx/3xx)
    scenario: list[str]
    vus: list[tuple[float, float]] = field(default_factory=list)
    dropped: int = 0
    dropped_t: list[float] = field(default_factory=list)  # when arrivals were dropped (open-model scenarios)
    versions: list[tuple[float, str]] = field(default_factory=list)
    t0: float = 0.0          # unix time of the first sample

    def __len__(self) -> int:
        return len(self.ms)


def _tags(extra: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in extra.split("&") if "=" in kv) if extra else {}


def load(path: Path) -> Samples:
    opener = gzip.open if str(path).endswith(".gz") else open
    rows_t, rows_ms, rows_ok, rows_sc, vus, versions, dropped_t = [], [], [], [], [], [], []
    dropped = 0
    with opener(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            name = row["metric_name"]
            ts = float(row["timestamp"]) / 1000.0  # K6_CSV_TIME_FORMAT=unix_milli
            if name == "http_req_duration":
                rows_t.append(ts)
                rows_ms.append(float(row["metric_value"]))
                rows_ok.append(row.get("expected_response") == "true")
                rows_sc.append(row.get("scenario", ""))
            elif name == "vus":
                vus.append((ts, float(row["metric_value"])))
            elif name == "dropped_iterations":
                dropped += int(float(row["metric_value"]))
                dropped_t.append(ts)
            elif name == "served_version":
                versions.append((ts, _tags(row.get("extra_tags", "")).get("version", "?")))
    starts = [x for x in (rows_t[:1] + [v[0] for v in vus[:1]]) if x]
    t0 = min(starts) if starts else 0.0
    return Samples(np.asarray(rows_t) - t0, np.asarray(rows_ms), np.asarray(rows_ok, dtype=bool), rows_sc,
                   [(t - t0, v) for t, v in vus], dropped, [t - t0 for t in dropped_t],
                   [(t - t0, v) for t, v in versions], t0)


def quantiles(ms: np.ndarray) -> dict[str, float]:
    if len(ms) == 0:
        return {k: math.nan for k in ("p50", "p95", "p99", "max", "mean")}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50": p50, "p95": p95, "p99": p99, "max": float(ms.max()), "mean": float(ms.mean())}


def summarize(s: Samples, mask=None, duration: float | None = None) -> dict:
    mask = np.ones(len(s), dtype=bool) if mask is None else mask
    ms, ok, t = s.ms[mask], s.ok[mask], s.t[mask]
    span = duration or (float(t.max() - t.min()) if len(t) > 1 else 1.0)
    return {"requests": int(len(ms)), "errors": int((~ok).sum()), "error_rate": float((~ok).mean()) if len(ms) else 0.0,
            "throughput": float(ok.sum()) / span if span > 0 else math.nan, **quantiles(ms[ok] if ok.any() else ms)}


def per_second(s: Samples, width: float = 1.0) -> dict[str, np.ndarray]:
    if len(s) == 0:
        return {k: np.array([]) for k in ("t", "rps", "err", "p50", "p95", "p99", "vus")}
    # Whole windows only: a last partial second would look like a drop in throughput.
    n = max(1, int(s.t.max() // width))
    edges = np.arange(n) * width
    idx = np.where(s.t < n * width, np.digitize(s.t, edges) - 1, -1)
    out = defaultdict(list)
    vus_t = np.asarray([v[0] for v in s.vus]) if s.vus else np.array([])
    vus_v = np.asarray([v[1] for v in s.vus]) if s.vus else np.array([])
    for i, start in enumerate(edges):
        sel = idx == i
        ms = s.ms[sel & s.ok]
        out["t"].append(start + width / 2)
        out["rps"].append((sel & s.ok).sum() / width)
        out["err"].append((sel & ~s.ok).sum() / width)
        q = quantiles(ms)
        for k in ("p50", "p95", "p99"):
            out[k].append(q[k])
        near = (vus_t >= start) & (vus_t < start + width)
        out["vus"].append(vus_v[near].mean() if near.any() else math.nan)
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def plot_over_time(s: Samples, out_dir: Path, title: str, events: list[tuple[float, str]] = ()) -> list[Path]:
    ps = per_second(s)
    paths = []
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(ps["t"], ps["rps"], label="ok req/s")
    if np.nansum(ps["err"]) > 0:
        ax.plot(ps["t"], ps["err"], label="errors/s", color="tab:red")
    if s.dropped_t:
        counts, _ = np.histogram(s.dropped_t, bins=np.append(ps["t"] - 0.5, ps["t"][-1] + 0.5))
        ax.plot(ps["t"], counts, label="dropped arrivals/s (saturated)", color="tab:orange")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests/s")
    ax.set_ylim(bottom=0)
    if not np.all(np.isnan(ps["vus"])):
        ax2 = ax.twinx()
        ax2.plot(ps["t"], ps["vus"], color="tab:gray", linestyle="--", label="VUs (concurrency)")
        ax2.set_ylabel("VUs")
        ax2.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(ps["vus"]))) * 1.15)
        ax2.legend(loc="upper right")
    for t, label in events:
        ax.axvline(t, color="tab:purple", linestyle=":")
        ax.annotate(label, (t, ax.get_ylim()[1] * 0.95), rotation=90, va="top", fontsize=8)
    ax.legend(loc="upper left")
    ax.set_title(f"{title}: throughput over time")
    paths.append(_save(fig, out_dir / "throughput_over_time.png"))

    fig, ax = plt.subplots(figsize=(9, 4))
    for k in ("p50", "p95", "p99"):
        ax.plot(ps["t"], ps[k], label=k)
    for t, label in events:
        ax.axvline(t, color="tab:purple", linestyle=":")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms), per 1 s window")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"{title}: latency over time")
    paths.append(_save(fig, out_dir / "latency_over_time.png"))
    return paths


def plot_vs_concurrency(s: Samples, out_dir: Path, title: str) -> Path | None:
    """Each 1 s window placed at its mean VU count: how throughput and p99 respond to concurrency."""
    ps = per_second(s)
    good = ~np.isnan(ps["vus"]) & (ps["rps"] > 0)
    if good.sum() < 2:
        return None
    levels = np.round(ps["vus"][good]).astype(int)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.scatter(ps["vus"][good], ps["rps"][good], s=10, alpha=0.5)
    a2.scatter(ps["vus"][good], ps["p99"][good], s=10, alpha=0.5, color="tab:orange")
    uniq = sorted(set(levels))
    if len(uniq) > 1:
        a1.plot(uniq, [np.median(ps["rps"][good][levels == u]) for u in uniq], color="tab:blue")
        a2.plot(uniq, [np.median(ps["p99"][good][levels == u]) for u in uniq], color="tab:orange")
    a1.set_xlabel("concurrent requests (VUs)")
    a1.set_ylabel("requests/s")
    a2.set_xlabel("concurrent requests (VUs)")
    a2.set_ylabel("p99 latency (ms), per 1 s window")
    fig.suptitle(f"{title}: against concurrency")
    return _save(fig, out_dir / "vs_concurrency.png")


def plot_versions(s: Samples, out_dir: Path, events: list[tuple[float, str]]) -> Path | None:
    if not s.versions:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.5))
    by_version = defaultdict(list)
    for t, v in s.versions:
        by_version[v].append(t)
    end = max(t for t, _ in s.versions)
    bins = np.arange(0, end + 1, 1.0)
    for v, ts in sorted(by_version.items()):
        counts, _ = np.histogram(ts, bins=bins)
        ax.plot(bins[:-1] + 0.5, counts, label=f"version {v}")
    for t, label in events:
        ax.axvline(t, color="tab:purple", linestyle=":")
        ax.annotate(label, (t, ax.get_ylim()[1] * 0.95), rotation=90, va="top", fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("responses/s")
    ax.legend()
    ax.set_title("Which version answered")
    return _save(fig, out_dir / "served_version.png")


def plot_resources(resources: Path, t0: float, out_dir: Path, title: str) -> Path | None:
    if not resources.exists():
        return None
    rows = list(csv.DictReader(open(resources)))
    if len(rows) < 2:
        return None
    t = np.asarray([float(r["time"]) - t0 for r in rows])
    rss = np.asarray([float(r["rss_bytes"]) / 2**20 for r in rows])
    cpu = np.asarray([float(r["cpu_seconds"]) for r in rows])
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(t, rss, label="RSS (MiB)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MiB")
    ax2 = ax.twinx()
    ax2.plot(t[1:], np.diff(cpu) / np.maximum(np.diff(t), 1e-3), color="tab:green", alpha=0.6, label="CPU (cores)")
    ax2.set_ylabel("cores")
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    ax.set_title(f"{title}: server memory and CPU")
    return _save(fig, out_dir / "resources.png")


def resource_summary(resources: Path) -> dict:
    if not resources.exists():
        return {}
    rows = list(csv.DictReader(open(resources)))
    if len(rows) < 2:
        return {}
    rss = [float(r["rss_bytes"]) / 2**20 for r in rows]
    span = float(rows[-1]["time"]) - float(rows[0]["time"])
    cpu = (float(rows[-1]["cpu_seconds"]) - float(rows[0]["cpu_seconds"])) / span if span > 0 else math.nan
    inflight = [float(r["inflight"]) for r in rows if r.get("inflight")]
    return {"rss_start_mib": rss[0], "rss_end_mib": rss[-1], "rss_max_mib": max(rss), "cpu_cores": cpu,
            "inflight_max": max(inflight) if inflight else None}


def cpu_seconds_between(resources: Path, start: float, end: float) -> float:
    """CPU time the server's process tree used between two unix times (interpolated between samples).
    Divided by the requests served it gives CPU per request, a figure that other load on the machine
    disturbs far less than throughput."""
    if not resources.exists():
        return math.nan
    rows = list(csv.DictReader(open(resources)))
    if len(rows) < 2:
        return math.nan
    t = np.asarray([float(r["time"]) for r in rows])
    cpu = np.asarray([float(r["cpu_seconds"]) for r in rows])
    return float(np.interp(end, t, cpu) - np.interp(start, t, cpu))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else (f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}")
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


