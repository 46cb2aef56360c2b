"""The monitoring configuration against a real Prometheus scraping a real server.

promtool (monitoring/test.sh) proves the dashboard and alert queries parse; only a live scrape proves they
name series the server really exports, with the labels they filter on. A renamed metric or label would
otherwise leave panels silently empty and alerts silently unable to fire.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import PHOTOS, ROOT

sys.path.insert(0, str(ROOT / "monitoring"))
sys.path.insert(0, str(ROOT))
import dashboard_queries  # noqa: E402
from convert.preprocess import load_recipe, preprocess  # noqa: E402

MODEL = "efficientnet_lite0"
ALERTS = ROOT / "monitoring" / "alerts.yaml"
PHOTO_NAMES = ("chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
TRAFFIC_SECONDS = 6
TRAFFIC_THREADS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen):
        self.url = url
        self.proc = proc

    def query_raw(self, expr: str) -> dict:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        body["http_status"] = r.status_code
        return body

    def query(self, expr: str) -> list:
        body = self.query_raw(expr)
        assert body["status"] == "success", f"{expr}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert result, f"no data for {expr}"
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, ok, timeout: float = 30.0, what: str = "") -> list:
        deadline = time.monotonic() + timeout
        result: list = []
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited"
            result = self.query(expr)
            if ok(result):
                return result
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what or expr}; last result {result}")


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("the prometheus binary is missing: install the Debian package 'prometheus'")
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "oxinfer", "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is valid YAML
    port = _free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{prom.url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still opening its storage
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not become ready")
            time.sleep(0.2)
        prom.wait_for('up{job="oxinfer"} == 1', bool, what="a first successful scrape")
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _v2_bodies() -> tuple[bytes, bytes, dict]:
    recipe = load_recipe(ROOT / "model-repo" / MODEL / "config.toml")
    tensor = preprocess(PHOTOS / "coffee.png", recipe)
    tensor_input = {"name": "input", "shape": list(tensor.shape), "datatype": "FP32"}
    as_json = json.dumps({"inputs": [{**tensor_input, "data": tensor.ravel().tolist()}]}).encode()
    header = json.dumps({
        "inputs": [{**tensor_input, "parameters": {"binary_data_size": tensor.nbytes}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": False}}],
    }).encode()
    binary = header + tensor.astype("<f4").tobytes()
    return as_json, binary, {"Inference-Header-Content-Length": str(len(header))}


def _send_traffic(url: str, seconds: float, threads: int) -> dict:
    """Real traffic of every kind the dashboard shows, including some the server must refuse."""
    photos = [(PHOTOS / n).read_bytes() for n in PHOTO_NAMES]
    corrupt = photos[0][:64]  # a PNG cut short: the server must refuse it (400), counted as bad_request
    v2_json, v2_binary, binary_headers = _v2_bodies()
    wrong_shape = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.0] * 12}]}
    ).encode()
    counts: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        session = requests.Session()
        i = offset
        while time.monotonic() < stop:
            kind = i % 8
            if kind < 4:
                r = session.post(f"{url}/v1/models/{MODEL}:predict", data=photos[kind],
                                 headers={"Content-Type": "image/png"}, timeout=30)
            elif kind == 4:
                r = session.post(f"{url}/v2/models/{MODEL}/infer", data=v2_json,
                                 headers={"Content-Type": "application/json"}, timeout=30)
            elif kind == 5:
                r = session.post(f"{url}/v2/models/{MODEL}/infer", data=v2_binary,
                                 headers={"Content-Type": "application/octet-stream", **binary_headers},
                                 timeout=30)
            elif kind == 6:
                r = session.post(f"{url}/v1/models/{MODEL}:predict", data=corrupt,
                                 headers={"Content-Type": "image/png"}, timeout=30)
            else:
                r = session.post(f"{url}/v2/models/{MODEL}/infer", data=wrong_shape,
                                 headers={"Content-Type": "application/json"}, timeout=30)
            with lock:
                counts[r.status_code] = counts.get(r.status_code, 0) + 1
            i += 1

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return counts


@pytest.fixture(scope="module")
def scraped(server, prometheus):
    """Traffic sent, and every response of it visible in Prometheus."""
    before = prometheus.query(f'sum(oxinfer_requests_total{{job="oxinfer", model="{MODEL}"}})')
    baseline = float(before[0]["value"][1]) if before else 0.0
    counts = _send_traffic(server.url, TRAFFIC_SECONDS, TRAFFIC_THREADS)
    assert counts.get(200, 0) > 0, f"no successful request: {counts}"
    assert not any(code >= 500 for code in counts), f"server errors: {counts}"
    total = sum(counts.values())
    prometheus.wait_for(
        f'sum(oxinfer_requests_total{{job="oxinfer", model="{MODEL}"}}) >= {baseline + total}',
        bool, what=f"{total} requests to show in oxinfer_requests_total",
    )
    time.sleep(2)  # two more scrapes so that every rate window holds samples after the traffic
    return counts


@pytest.mark.parametrize("histogram", [
    "oxinfer_request_duration_seconds",
    "oxinfer_queue_duration_seconds",
    "oxinfer_preprocess_duration_seconds",
    "oxinfer_compute_duration_seconds",
    "oxinfer_batch_size",
])
def test_histogram_has_observations(prometheus, scraped, histogram):
    count = prometheus.value(f'sum(increase({histogram}_count{{job="oxinfer", model="{MODEL}"}}[1m]))')
    assert count > 0
    buckets = prometheus.query(f'{histogram}_bucket{{job="oxinfer", model="{MODEL}", le="+Inf"}}')
    assert buckets, f"{histogram} has no +Inf bucket"


def test_p99_latency_is_a_number(prometheus, scraped):
    p99 = prometheus.value(
        'histogram_quantile(0.99, sum by (le) '
        f'(rate(oxinfer_request_duration_seconds_bucket{{job="oxinfer", model="{MODEL}"}}[1m])))'
    )
    assert math.isfinite(p99) and 0 < p99 < 10


def test_requests_are_labelled_by_endpoint_and_status(prometheus, scraped):
    result = prometheus.query(f'sum by (endpoint, status) (oxinfer_requests_total{{job="oxinfer", model="{MODEL}"}})')
    seen = {(r["metric"].get("endpoint"), r["metric"].get("status")) for r in result}
    assert ("predict", "200") in seen and ("v2_infer", "200") in seen, seen
    assert any(status.startswith("4") for _, status in seen), f"refused requests not counted: {seen}"


def test_hpa_metric_is_exported(prometheus, scraped):
    result = prometheus.query(f'oxinfer_inflight_requests{{job="oxinfer", model="{MODEL}"}}')
    assert len(result) == 1, result
    assert float(result[0]["value"][1]) >= 0


def test_hpa_metric_exists_before_any_traffic(prometheus, scraped):
    """A pod that has not served a model yet must still report 0 in flight for it: with no series at all
    the HPA cannot compute an average, and a new pod would count as unknown load."""
    missing = prometheus.query(
        'count by (model) (oxinfer_model_state{job="oxinfer", state="READY"} == 1)'
        ' unless on (model) oxinfer_inflight_requests{job="oxinfer"}'
    )
    assert not missing, f"READY models without oxinfer_inflight_requests: {[m['metric'] for m in missing]}"


def test_model_is_ready_on_a_known_provider(prometheus, scraped):
    ready = prometheus.query(f'oxinfer_model_state{{job="oxinfer", model="{MODEL}", state="READY"}} == 1')
    assert ready, "no READY version"
    providers = prometheus.query(f'oxinfer_execution_provider{{job="oxinfer", model="{MODEL}"}} == 1')
    assert {r["metric"]["provider"] for r in providers} <= {"cpu", "cuda", "tensorrt"}
    assert providers


DASHBOARD_QUERIES = dashboard_queries.queries()


@pytest.mark.parametrize("item", DASHBOARD_QUERIES, ids=[f"{q['panel']}[{q['ref']}]" for q in DASHBOARD_QUERIES])
def test_dashboard_query(prometheus, scraped, item):
    body = prometheus.query_raw(item["expr"])
    assert body["status"] == "success", f"{item['expr']}: {body.get('errorType')}: {body.get('error')}"
    if item["kube_state_metrics"]:
        return  # documented as empty without kube-state-metrics; parsing is all that can be checked here
    result = body["data"]["result"]
    assert result, f"panel {item['panel']!r} would be empty: {item['expr']}"
    values = [float(r["value"][1]) for r in result] if isinstance(result, list) else [float(result[1])]
    assert any(math.isfinite(v) for v in values), f"panel {item['panel']!r} shows only NaN: {item['expr']}"


def _rules(prometheus) -> list[dict]:
    groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_evaluate(prometheus, scraped):
    expected = len(re.findall(r"^\s*- alert:", ALERTS.read_text(), flags=re.M))
    rules = _rules(prometheus)
    assert len(rules) == expected, f"loaded {len(rules)} rules, the file has {expected}"
    # Every rule has been evaluated since the traffic, by Prometheus itself.
    time.sleep(1.5)
    for rule in _rules(prometheus):
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        body = prometheus.query_raw(rule["query"])
        assert body["status"] == "success", f"{rule['name']}: {body.get('error')}"


def test_alert_rules_name_exported_series(server, prometheus, scraped):
    """A misspelt metric in an alert never fires; compare every oxinfer_* name with the exposition."""
    exposition = requests.get(f"{server.url}/metrics", timeout=10).text
    families = set(re.findall(r"^# TYPE (\w+) ", exposition, flags=re.M))
    for rule in _rules(prometheus):
        for name in set(re.findall(r"\boxinfer_\w+", rule["query"])):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in families or family in families, f"{rule['name']} uses {name}, not exported"


# Alerts whose conditions cannot hold on a healthy server whatever the machine's speed (latency and
# queueing ones depend on how busy the machine running the tests is).
HEALTH_ALERTS = {"OxinferHighErrorRatio", "OxinferModelLoadFailures", "OxinferModelVersionFailed",
                 "OxinferNoReplicasUp", "OxinferModelNotServing"}


def test_health_alerts_stay_silent(prometheus, scraped):
    alerts = requests.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    active = [(a["labels"]["alertname"], a["state"]) for a in alerts if a["labels"]["alertname"] in HEALTH_ALERTS]
    assert not active, active
