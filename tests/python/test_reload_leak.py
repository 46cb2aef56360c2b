"""Fifty explicit reloads of a changing version must not leak what the retired versions held.

Each reload builds a new ONNX Runtime session and retires the old one, whose memory and threads are freed only
when its last request finishes. A reference kept anywhere (a snapshot, a scheduler, a metric) would leak a whole
session per reload, which only a long-running server would reveal. The resident set size before and after is
printed for the record; the assertions are sanity bounds an unfreed session per reload would break, not targets.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from conftest import start_server
from repo_builder import (EXPECTED, FP32, INT8, SERVER_ARGS, add_model, config_text, metric, predict,
                          require_models)

MODEL = "m"
RELOADS = 50
WARM_RELOADS = 2
# An fp32 session of this model takes roughly 60 MB; keeping every retired one would grow by gigabytes.
RSS_GROWTH_BOUND = 400 * 2**20


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def swap_content(repo: Path) -> None:
    """Exchanges the served version folder with the spare one (fp32 <-> int8); explicit mode loads nothing yet."""
    live, spare, moving = repo / MODEL / "1", repo / ".spare" / "1", repo / ".moving"
    os.rename(live, moving)
    os.rename(spare, live)
    os.rename(moving, spare)


def test_reloads_free_retired_versions(tmp_path, capsys):
    require_models()
    repo = tmp_path / "repo"
    repo.mkdir()
    # Warm-up at batch 1 only: the reloads, not the warm-ups, are what this test is about.
    add_model(repo, MODEL, {1: FP32}, config_text(preferred="[]"))
    add_model(repo, ".spare", {1: INT8})
    with start_server([*SERVER_ARGS, "--model-control-mode", "explicit"], repo=repo) as server:
        url, session = server.url, requests.Session()
        rss, fds, threads = [], [], []

        def reload_and_serve():
            swap_content(repo)
            r = session.post(f"{url}/v2/repository/models/{MODEL}/load", timeout=120)
            assert r.status_code == 200, r.text
            for image, labels in EXPECTED.items():
                r = predict(session, url, MODEL, image)
                assert r.status_code == 200 and r.json()["predictions"][0][0]["label"] in labels, r.text

        def measure():
            time.sleep(0.5)  # retired versions' instance threads exit once their queues close
            rss.append(metric(url, "process_resident_memory_bytes"))
            fds.append(metric(url, "process_open_fds"))
            threads.append(threads_of(server.proc.pid))

        for _ in range(WARM_RELOADS):
            reload_and_serve()
        measure()
        started = time.monotonic()
        for i in range(1, RELOADS + 1):
            reload_and_serve()
            if i % 10 == 0:
                measure()
        took = time.monotonic() - started

        loads = metric(url, "oxinfer_model_load_duration_seconds_count", model=MODEL)
        assert loads == 1 + WARM_RELOADS + RELOADS, loads
        assert metric(url, "oxinfer_model_load_failures_total", model=MODEL) == 0

    mib = [f"{r / 2**20:.0f}" for r in rss]
    with capsys.disabled():
        print(f"\n[reload] {RELOADS} reloads in {took:.0f} s; RSS MiB after warm-up and every 10 reloads: {', '.join(mib)}")
        print(f"[reload] RSS before {rss[0] / 2**20:.0f} MiB, after {rss[-1] / 2**20:.0f} MiB "
              f"({(rss[-1] - rss[0]) / 2**20:+.0f} MiB); open fds {fds[0]:.0f} -> {fds[-1]:.0f}; "
              f"threads {threads[0]} -> {threads[-1]}")
    assert rss[-1] - rss[0] < RSS_GROWTH_BOUND, mib
    assert threads[-1] <= threads[0] + 4, threads
    assert fds[-1] <= fds[0] + 16, fds
