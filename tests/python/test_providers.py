"""Execution providers on a CPU-only machine: a GPU provider that cannot be registered is reported, not hidden.
Under `fallback` the model loads on CPU and says so; under `strict` the load fails with the reason."""
from __future__ import annotations

import os
import shutil

import requests

from conftest import ROOT, photo, start_server

SRC = ROOT / "model-repo" / "efficientnet_lite0"


def make_repo(tmp_path, providers: str, policy: str):
    dst = tmp_path / "repo" / "m"
    (dst / "1").mkdir(parents=True)
    os.link(SRC / "1" / "model.onnx", dst / "1" / "model.onnx")
    shutil.copy(SRC / "labels.txt", dst / "labels.txt")
    text = (SRC / "config.toml").read_text()
    text = text.replace('providers = ["cpu"]', f"providers = {providers}").replace(
        'provider_policy = "fallback"', f'provider_policy = "{policy}"')
    assert f"providers = {providers}" in text
    (dst / "config.toml").write_text(text)
    return tmp_path / "repo"


def test_fallback_reports_cpu(tmp_path):
    repo = make_repo(tmp_path, '["tensorrt", { name = "cuda", device_id = 0, memory_limit_bytes = 1073741824 }, "cpu"]', "fallback")
    with start_server(repo=repo) as s:
        meta = requests.get(f"{s.url}/v2/models/m").json()
        assert meta["parameters"]["execution_provider"] == "cpu"
        config = requests.get(f"{s.url}/v2/models/m/config").json()
        assert config["instance_group"][0]["kind"] == "KIND_CPU"
        r = requests.post(f"{s.url}/v1/models/m:predict", data=photo("coffee.png"), headers={"Content-Type": "image/png"})
        assert r.json()["predictions"][0][0]["label"] == "espresso"
        metrics = requests.get(f"{s.url}/metrics").text
        assert 'oxinfer_execution_provider{model="m",version="1",provider="cpu"} 1' in metrics
        assert 'oxinfer_execution_provider{model="m",version="1",provider="cuda"} 0' in metrics
        assert "execution provider unavailable" in s.logs()


def test_strict_fails_the_load_with_the_reason(tmp_path):
    repo = make_repo(tmp_path, '["cuda", "cpu"]', "strict")
    with start_server(["--model-control-mode", "explicit"], repo=repo, wait_ready=False) as s:
        for _ in range(200):
            try:
                if requests.get(s.url + "/v2/health/live", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            import time
            time.sleep(0.05)
        index = requests.post(f"{s.url}/v2/repository/index").json()
        entry = next(e for e in index if e["name"] == "m" and e.get("version") == "1")
        assert entry["state"] == "UNAVAILABLE" and "execution provider cuda could not be used" in entry["reason"], entry
        assert requests.get(f"{s.url}/v2/health/ready").status_code == 503
        r = requests.post(f"{s.url}/v2/repository/models/m/load")
        assert r.status_code == 400 and "cuda" in r.json()["error"]
