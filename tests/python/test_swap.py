"""Model repository changes under live traffic, against the real server and the real model.

Hot swaps are only worth having if no client ever notices them: while eight clients classify photos without
pause, a second version is added, the first removed, and two broken versions (corrupt bytes, wrong inputs) are
dropped in, in poll mode and again in explicit mode. Every answer must succeed with the right label, the
answering version must move from 1 to 2 once and never back, the model must stay ready throughout, and the
broken versions must be reported with their reasons. Latency percentiles in steady state and around the swaps
are printed for the record, not asserted. Version policies, models appearing and disappearing in poll mode,
coalesced load calls and unloading are checked here too.
"""
from __future__ import annotations

import http.client
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import requests

from conftest import PHOTOS, ROOT, start_server
from repo_builder import (EXPECTED, FP32, INT8, SERVER_ARGS, add_model, add_version, config_text, index,
                          index_entry, log_events, metric, mismatched_model, predict, remove, require_models)

MODEL = "m"
POLL = ["--model-control-mode", "poll", "--poll-interval-secs", "1", "--poll-settle-ms", "300"]
EXPLICIT = ["--model-control-mode", "explicit"]
CLIENTS = 8
# Each client pauses between requests so that the server is busy but not saturated: latencies then show the
# cost of a swap rather than the length of a queue.
THINK_S = 0.1
STEADY_HEAD_S = 6.0
MIN_TRAFFIC_S = 22.0
# Requests starting this long after a change was applied still count as "during the swap": they may have
# queued behind the load's CPU burst.
AFTERGLOW_S = 0.5
RELOADED = "repository change detected, reloading"


@pytest.fixture(autouse=True)
def _models():
    require_models()


@dataclass
class Sample:
    start: float
    end: float
    image: str
    status: int
    version: str | None
    label: str | None
    error: str | None


class Traffic:
    """Clients classifying photos in a loop, and a probe that the model stays ready, until stopped."""

    def __init__(self, url: str):
        self.url = url
        self.samples: list[Sample] = []
        self.probes: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self._probe, daemon=True))
        self.started = 0.0

    def __enter__(self):
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)

    def _client(self, i: int) -> None:
        session = requests.Session()
        names = sorted(EXPECTED)
        while not self.stop.is_set():
            name = names[i % len(names)]
            i += 1
            start = time.monotonic()
            try:
                r = predict(session, self.url, MODEL, name)
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                top = (body.get("predictions") or [[{}]])[0][0].get("label") if r.status_code == 200 else None
                sample = Sample(start, time.monotonic(), name, r.status_code, body.get("model_version"), top,
                                None if r.status_code == 200 else r.text[:200])
            except requests.RequestException as e:
                sample = Sample(start, time.monotonic(), name, 0, None, None, repr(e)[:200])
            self.samples.append(sample)
            self.stop.wait(THINK_S)

    def _probe(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                model = session.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=10).status_code
                server = session.get(f"{self.url}/v2/health/ready", timeout=10).status_code
            except requests.RequestException:
                model = server = 0
            self.probes.append((time.monotonic(), model, server))
            self.stop.wait(0.05)


def wait_until(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def served_version(url: str) -> str | None:
    r = requests.get(f"{url}/v2/models/{MODEL}", timeout=10)
    return r.json()["parameters"]["version"] if r.status_code == 200 else None


def failed_entry(url: str, version: int) -> dict | None:
    e = index_entry(url, MODEL, version)
    return e if e and e["reason"].startswith("load failed") else None


def percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "no requests"
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  (n={len(latencies)})"


def make_repo(tmp_path, policy: str = "latest = 1", versions=None):
    repo = tmp_path / "repo"
    repo.mkdir()
    add_model(repo, MODEL, versions or {1: FP32}, config_text(policy))
    return repo


@pytest.mark.parametrize("mode", ["poll", "explicit"])
def test_hot_swaps_never_fail_a_request(tmp_path, capsys, mode):
    repo = make_repo(tmp_path)
    with start_server([*SERVER_ARGS, *(POLL if mode == "poll" else EXPLICIT)], repo=repo) as server:
        url = server.url

        def load(expect: int) -> requests.Response:
            r = requests.post(f"{url}/v2/repository/models/{MODEL}/load", timeout=120)
            assert r.status_code == expect, r.text
            return r

        def poll_reloaded(before: int):
            return lambda: len(log_events(server, RELOADED)) > before

        windows: dict[str, tuple[float, float]] = {}

        def change(name: str, action, applied):
            t0 = time.monotonic()
            action()
            result = applied()
            windows[name] = (t0, time.monotonic())
            return result

        with Traffic(url) as traffic:
            time.sleep(STEADY_HEAD_S)
            if mode == "explicit":
                change("add v2", lambda: add_version(repo, MODEL, 2, INT8), lambda: load(200))
                change("remove v1", lambda: remove(repo, MODEL, 1), lambda: load(200))
                r3 = change("corrupt v3", lambda: add_version(repo, MODEL, 3, np.random.default_rng(3).bytes(4096)),
                            lambda: load(400))
                r4 = change("mismatched v4", lambda: add_version(repo, MODEL, 4, mismatched_model()), lambda: load(400))
                assert "version 3" in r3.json()["error"], r3.text
                assert "version 4" in r4.json()["error"] and "'input'" in r4.json()["error"], r4.text
            else:
                change("add v2", lambda: add_version(repo, MODEL, 2, INT8),
                       lambda: wait_until("version 2 to serve", lambda: served_version(url) == "2"))
                before = len(log_events(server, RELOADED))
                change("remove v1", lambda: remove(repo, MODEL, 1),
                       lambda: wait_until("the removal to be seen", poll_reloaded(before)))
                change("corrupt v3", lambda: add_version(repo, MODEL, 3, np.random.default_rng(3).bytes(4096)),
                       lambda: wait_until("version 3 to fail", lambda: failed_entry(url, 3)))
                change("mismatched v4", lambda: add_version(repo, MODEL, 4, mismatched_model()),
                       lambda: wait_until("version 4 to fail", lambda: failed_entry(url, 4)))
            remaining = MIN_TRAFFIC_S - (time.monotonic() - traffic.started)
            time.sleep(max(remaining, 3.0))
        samples, probes = traffic.samples, traffic.probes

        assert len(samples) >= 100, f"only {len(samples)} requests were made"
        failed = [s for s in samples if s.status != 200]
        assert not failed, f"{len(failed)} of {len(samples)} requests failed, e.g. {failed[:3]}"
        wrong = [s for s in samples if s.label not in EXPECTED[s.image]]
        assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:3]}"

        # Version 1 answers until version 2 is published, then version 2 only: once any client has had an answer
        # from version 2, no request that starts later may be answered by version 1.
        assert {s.version for s in samples} == {"1", "2"}
        v2_started, v2_applied = windows["add v2"]
        assert all(s.version == "1" for s in samples if s.end < v2_started)
        assert all(s.version == "2" for s in samples if s.start > v2_applied)
        first_v2_answer = min(s.end for s in samples if s.version == "2")
        went_back = [s for s in samples if s.version == "1" and s.start > first_v2_answer]
        assert not went_back, f"version 1 answered after version 2 had: {went_back[:3]}"

        not_ready = [p for p in probes if p[1] != 200 or p[2] != 200]
        assert len(probes) > 50 and not not_ready, f"readiness dropped: {not_ready[:5]}"

        entries = {e.get("version"): e for e in index(url) if e["name"] == MODEL}
        assert entries["2"]["state"] == "READY", entries
        assert entries["1"]["state"] == "UNAVAILABLE", entries
        for v in ("3", "4"):
            assert entries[v]["state"] == "UNAVAILABLE" and entries[v]["reason"].startswith("load failed: "), entries
        assert "Protobuf parsing failed" in entries["3"]["reason"], entries["3"]
        assert "'input'" in entries["4"]["reason"] and "x" in entries["4"]["reason"], entries["4"]
        assert metric(url, "oxinfer_model_load_failures_total", model=MODEL) == 2
        for v in ("3", "4"):
            assert metric(url, "oxinfer_model_state", model=MODEL, version=v, state="FAILED") == 1
        assert metric(url, "oxinfer_model_state", model=MODEL, version="2", state="READY") == 1
        assert served_version(url) == "2"

    in_swap = [any(a <= s.start <= b + AFTERGLOW_S for a, b in windows.values()) for s in samples]
    during = [s for s, swap in zip(samples, in_swap) if swap]
    steady = [s for s, swap in zip(samples, in_swap) if not swap]
    took = ", ".join(f"{name} {b - a:.1f} s" for name, (a, b) in windows.items())
    with capsys.disabled():
        print(f"\n[{mode}] {len(samples)} requests from {CLIENTS} clients over "
              f"{max(s.end for s in samples) - min(s.start for s in samples):.0f} s, none failed")
        for v, model in (("1", "fp32"), ("2", "int8")):
            print(f"[{mode}] steady, v{v} ({model}) : {percentiles([s.end - s.start for s in steady if s.version == v])}")
        print(f"[{mode}] during swaps     : {percentiles([s.end - s.start for s in during])}")
        print(f"[{mode}] change applied in: {took}")


def v2_infer(url: str, version: str | None, image: str) -> tuple[str, str]:
    """The answering version and top-1 label of a V2 infer call, with the reference preprocessing."""
    sys.path.insert(0, str(ROOT))
    from convert.preprocess import load_recipe, preprocess

    recipe = load_recipe(ROOT / "model-repo" / "efficientnet_lite0" / "config.toml")
    tensor = preprocess(PHOTOS / image, recipe).astype(np.float32)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(tensor.shape),
                        "data": tensor.flatten().tolist()}]}
    path = f"/versions/{version}" if version else ""
    r = requests.post(f"{url}/v2/models/{MODEL}{path}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    labels = (ROOT / "model-repo" / "efficientnet_lite0" / "labels.txt").read_text().splitlines()
    return out["model_version"], labels[int(np.argmax(out["outputs"][0]["data"]))]


def test_version_policy_latest_two_serves_both(tmp_path):
    repo = make_repo(tmp_path, "latest = 2", {1: FP32, 2: INT8})
    with start_server(SERVER_ARGS, repo=repo) as server:
        url = server.url
        meta = requests.get(f"{url}/v2/models/{MODEL}", timeout=10).json()
        assert meta["versions"] == ["1", "2"], meta
        assert predict(requests, url, MODEL, "coffee.png").json()["model_version"] == "2"
        for version in ("1", "2"):
            assert v2_infer(url, version, "coffee.png") == (version, "espresso")
            assert requests.get(f"{url}/v2/models/{MODEL}/versions/{version}/ready", timeout=10).status_code == 200
        assert v2_infer(url, None, "chelsea.png")[0] == "2"
        r = requests.post(f"{url}/v2/models/{MODEL}/versions/9/infer", json={"inputs": []}, timeout=10)
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "version 9 of model 'm' is not loaded (ready: 1, 2)"
        r = requests.get(f"{url}/v2/models/{MODEL}/versions/9", timeout=10)
        assert r.status_code == 404 and "version 9" in r.json()["error"], r.text
        ready = {e["version"] for e in index(url) if e["state"] == "READY"}
        assert ready == {"1", "2"}


def test_restart_with_a_broken_newest_version_serves_the_previous_one(tmp_path):
    """latest = 1 picks version 3 on disk; it is corrupt, so a fresh start serves version 2 instead of nothing."""
    repo = make_repo(tmp_path, "latest = 1", {2: INT8, 3: b"not an onnx model"})
    with start_server(SERVER_ARGS, repo=repo) as server:
        r = predict(requests, server.url, MODEL, "coffee.png")
        assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
        assert r.json()["predictions"][0][0]["label"] == "espresso"
        entry = index_entry(server.url, MODEL, 3)
        assert entry and entry["state"] == "UNAVAILABLE" and "load failed" in entry["reason"], entry


def test_readiness_waits_for_the_start_up_load(tmp_path):
    """The HTTP server answers while models load; readiness must not pass before the repository was even read."""
    repo = make_repo(tmp_path)
    with start_server(SERVER_ARGS, repo=repo, wait_ready=False) as server:
        session, deadline = requests.Session(), time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ready = session.get(f"{server.url}/v2/health/ready", timeout=5).status_code
            except requests.ConnectionError:
                continue
            if ready == 200:
                assert session.get(f"{server.url}/v2/models/{MODEL}/ready", timeout=5).status_code == 200
                break
        else:
            raise AssertionError("the server did not become ready")


def test_poll_adds_and_removes_models(tmp_path):
    repo = make_repo(tmp_path)
    with start_server([*SERVER_ARGS, *POLL], repo=repo) as server:
        url = server.url
        add_model(repo, "n", {1: INT8})
        wait_until("model n to serve", lambda: requests.get(f"{url}/v2/models/n/ready", timeout=10).status_code == 200)
        r = predict(requests, url, "n", "chelsea.png")
        assert r.status_code == 200 and r.json()["predictions"][0][0]["label"] in EXPECTED["chelsea.png"], r.text

        # A new model that cannot load is reported, and does not take the server's readiness down with it.
        add_model(repo, "broken", {1: b"not an onnx model"})
        wait_until("model broken to fail", lambda: (e := index_entry(url, "broken", 1)) and "load failed" in e["reason"])
        assert requests.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        assert requests.get(f"{url}/v2/models/broken/ready", timeout=10).status_code in (400, 404)

        remove(repo, "n")
        wait_until("model n to be gone", lambda: requests.get(f"{url}/v2/models/n/ready", timeout=10).status_code != 200)
        # A model that left the repository is forgotten: not a 503 that invites retries.
        r = predict(requests, url, "n", "chelsea.png")
        assert r.status_code == 404 and "not found" in r.json()["error"], r.text
        assert requests.get(f"{url}/v2/models/n/ready", timeout=10).status_code == 404
        assert not [e for e in index(url) if e["name"] == "n"]
        assert requests.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        assert predict(requests, url, MODEL, "coffee.png").json()["model_version"] == "1"


def test_poll_waits_for_a_slow_copy_to_finish(tmp_path):
    """A version written in place, slowly (pauses shorter than the settle time), is loaded once and complete."""
    repo = make_repo(tmp_path)
    with start_server([*SERVER_ARGS, *POLL], repo=repo) as server:
        url = server.url
        data = INT8.read_bytes()
        (repo / MODEL / "2").mkdir()
        chunk = len(data) // 30 + 1
        with open(repo / MODEL / "2" / "model.onnx", "wb") as f:
            for i in range(0, len(data), chunk):
                f.write(data[i:i + chunk])
                f.flush()
                time.sleep(0.05)  # well under the 300 ms settle time, even on a busy machine
        wait_until("version 2 to serve", lambda: served_version(url) == "2")
        assert metric(url, "oxinfer_model_load_failures_total", model=MODEL) == 0
        loads = [e for e in log_events(server, "version loaded and warmed") if e.get("version") == 2]
        assert len(loads) == 1, loads


def test_explicit_loads_coalesce_and_unload(tmp_path):
    repo = make_repo(tmp_path)
    with start_server([*SERVER_ARGS, *EXPLICIT], repo=repo) as server:
        url = server.url
        add_version(repo, MODEL, 2, INT8)
        builds_before = metric(url, "oxinfer_model_load_duration_seconds_count", model=MODEL)
        barrier = threading.Barrier(5)
        statuses: list[int] = []

        def call():
            barrier.wait()
            statuses.append(requests.post(f"{url}/v2/repository/models/{MODEL}/load", timeout=120).status_code)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 5
        assert metric(url, "oxinfer_model_load_duration_seconds_count", model=MODEL) == builds_before + 1
        loads = [e for e in log_events(server, "version loaded and warmed") if e.get("version") == 2]
        assert len(loads) == 1, loads
        assert predict(requests, url, MODEL, "coffee.png").json()["model_version"] == "2"

        r = requests.post(f"{url}/v2/repository/models/{MODEL}/unload", timeout=60)
        assert r.status_code == 200, r.text
        assert requests.get(f"{url}/v2/models/{MODEL}/ready", timeout=10).status_code in (400, 404)
        assert predict(requests, url, MODEL, "coffee.png").status_code in (404, 503)
        entries = [e for e in index(url) if e["name"] == MODEL]
        assert entries and all(e["state"] == "UNAVAILABLE" for e in entries), entries
        assert index(url) and not [e for e in index(url) if e["state"] == "READY"]
        r = requests.post(f"{url}/v2/repository/index", json={"ready": True}, timeout=10)
        assert r.json() == []

        assert requests.post(f"{url}/v2/repository/models/{MODEL}/load", timeout=120).status_code == 200
        assert requests.get(f"{url}/v2/models/{MODEL}/ready", timeout=10).status_code == 200
        r = predict(requests, url, MODEL, "chelsea.png")
        assert r.json()["model_version"] == "2" and r.json()["predictions"][0][0]["label"] in EXPECTED["chelsea.png"]

        # Model names come from URLs; an encoded '..' or '/' must not reach outside the repository, here the
        # temporary folder holding it, which has a valid model of its own.
        add_model(tmp_path, "outside", {1: INT8})
        for name in ("%2E%2E", "..%2Frepo%2Fm", "..%2Foutside"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", f"/v2/repository/models/{name}/load")
            r = conn.getresponse()
            assert r.status == 404, (name, r.status, r.read())
            conn.close()
        assert {e["name"] for e in index(url)} == {MODEL}
