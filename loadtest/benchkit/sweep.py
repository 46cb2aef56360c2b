"""One measured point: a fixed concurrency against a running server for a fixed time, with a warm-up that is not
counted, while the main thread samples the server's resident memory and CPU split. Only responses completed inside
the window count, so the first requests (connection set-up) and the last (cut off at the end) do not skew it.
"""
from __future__ import annotations

import math
import time

from . import client, proc


def point(server: proc.Server, payload: client.Payload, concurrency: int, warmup: float, duration: float) -> dict:
    labels = {"model": client.MODEL}
    load = client.Load(server.port, payload, concurrency, warmup, duration)
    load.wait("window-start")
    before_metrics = server.metrics()
    cpu0 = proc.cpu_snapshot(server.proc.pid, load.proc.pid)
    stop = time.perf_counter() + duration
    rss_max = 0.0
    while time.perf_counter() < stop - 0.05:
        rss = proc.metric(server.metrics(), "process_resident_memory_bytes") or 0.0
        rss_max = max(rss_max, rss)
        time.sleep(min(0.5, max(stop - time.perf_counter() - 0.05, 0)))
    load.wait("window-end")
    cpu1 = proc.cpu_snapshot(server.proc.pid, load.proc.pid)
    after_metrics = server.metrics()
    result = load.result()
    window = result["window_s"]
    requests = result["requests"]

    def delta(name: str) -> float:
        return (proc.metric(after_metrics, name, labels) or 0.0) - (proc.metric(before_metrics, name, labels) or 0.0)

    def mean_ms(histogram: str) -> float:
        n = delta(f"{histogram}_count")
        return delta(f"{histogram}_sum") / n * 1e3 if n else math.nan

    def ms(key: str) -> float:
        v = result.get(key)
        return math.nan if v is None else v

    batches = delta("oxinfer_batch_size_count")
    cpu = proc.cpu_split(cpu0, cpu1)

    def ms_per_request(cores: float) -> float:
        return cores * window * 1e3 / max(requests + result["errors"], 1)

    return {
        "protocol": payload.protocol,
        "concurrency": concurrency,
        "requests": requests,
        "errors": result["errors"],
        "images_per_s": requests * payload.images / window,
        "p50_ms": ms("p50_ms"),
        "p95_ms": ms("p95_ms"),
        "p99_ms": ms("p99_ms"),
        "mean_ms": ms("mean_ms"),
        "mean_batch": delta("oxinfer_batch_size_sum") / batches if batches else math.nan,
        # Where the time went, from the server's own histograms (means): handler entry to response (body read
        # included), waiting in the queue, and one ONNX Runtime run of a batch (stacking included).
        "server_ms": mean_ms("oxinfer_request_duration_seconds"),
        "queue_ms": mean_ms("oxinfer_queue_duration_seconds"),
        "compute_ms": mean_ms("oxinfer_compute_duration_seconds"),
        "rss_max_mb": rss_max / 2**20,
        **{k: round(v, 3) for k, v in cpu.items()},
        "client_cpu_ms_per_req": ms_per_request(cpu["client_cores"]),
        "server_cpu_ms_per_img": cpu["server_cores"] * window * 1e3 / max(requests * payload.images, 1),
        "http_cpu_ms_per_req": ms_per_request(cpu["http_cores"]),
        "error_samples": (result["failures"] + [f"HTTP {k}" for k in result["statuses"] if k != "200"])[:3],
    }
