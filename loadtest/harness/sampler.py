"""Samples a server's resources once a second while k6 runs.

Memory and CPU are read from the process tree (psutil), so peers with worker processes are measured
like oxinfer; for oxinfer the in-flight and queue gauges of /metrics are sampled too, which is what the
HPA would see.
"""
from __future__ import annotations

import csv
import re
import threading
import time
from pathlib import Path

import psutil
import requests

GAUGES = {"inflight": "oxinfer_inflight_requests", "queue_depth": "oxinfer_queue_depth"}


def _sum_metric(text: str, name: str) -> float | None:
    values = [float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, flags=re.M)]
    return sum(values) if values else None


class Sampler(threading.Thread):
    def __init__(self, pid: int, out: Path, metrics_url: str | None = None, period: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.out, self.metrics_url, self.period = pid, out, metrics_url, period
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)

    def _tree(self):
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def run(self) -> None:
        with open(self.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", "rss_bytes", "cpu_seconds", *GAUGES])
            while not self._halt.is_set():
                row = [f"{time.time():.3f}"]
                try:
                    procs = self._tree()
                    rss = cpu = 0.0
                    for p in procs:
                        try:
                            rss += p.memory_info().rss
                            t = p.cpu_times()
                            cpu += t.user + t.system
                        except psutil.Error:
                            pass
                    row += [int(rss), f"{cpu:.2f}"]
                except psutil.Error:
                    break
                gauges = {}
                if self.metrics_url:
                    try:
                        text = requests.get(self.metrics_url, timeout=2).text
                        gauges = {k: _sum_metric(text, v) for k, v in GAUGES.items()}
                    except requests.RequestException:
                        pass
                row += ["" if gauges.get(k) is None else gauges[k] for k in GAUGES]
                w.writerow(row)
                f.flush()
                self._halt.wait(self.period)
