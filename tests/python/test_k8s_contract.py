"""The Kubernetes manifests against the real server binary.

The manifests make promises about the server that no schema check can verify: that the probe paths answer,
that the ConfigMap holds only keys the server accepts (it refuses unknown ones at start-up, so a wrong key
would crash-loop every pod), that the container port is the one the server listens on, that the HPA's
metric exists, and that the shutdown sequence fits the grace period. Each test renders the production
overlays with `kubectl kustomize` and checks one promise against a running `target/release/oxinfer`.
"""
from __future__ import annotations

import base64
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest
import requests
import yaml

from conftest import ORT_LIB, PHOTOS, ROOT, start_server

if shutil.which("kubectl") is None:
    pytest.skip("kubectl (with its built-in kustomize) is not installed: the overlays cannot be rendered",
                allow_module_level=True)

OVERLAYS = ("production/cpu", "production/gpu")
MODEL = "efficientnet_lite0"
BIN = ROOT / "target" / "release" / "oxinfer"
REPO = ROOT / "model-repo"
ADAPTER_RULES = ROOT / "k8s" / "metrics-adapter" / "prometheus-adapter-config.yaml"


def render(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request) -> dict:
    docs = render(request.param)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    return {"overlay": request.param, "by_kind": by_kind}


def one(objects: dict, kind: str) -> dict:
    found = objects["by_kind"].get(kind, [])
    assert len(found) == 1, f"{objects['overlay']}: expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: dict) -> dict:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "oxinfer")


def config_text(objects: dict) -> str:
    return one(objects, "ConfigMap")["data"]["oxinfer.toml"]


def cpu_count(quantity: str) -> int:
    """What resourceFieldRef limits.cpu with divisor 1 hands the container: the limit rounded up."""
    return math.ceil(int(quantity[:-1]) / 1000) if quantity.endswith("m") else math.ceil(float(quantity))


def pod_env(objects: dict) -> dict[str, str]:
    """The container's env as the kubelet would resolve it (literal values and the CPU limit)."""
    c = container(objects)
    env = {}
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"].get("resourceFieldRef")
        assert ref, f"{item['name']}: only literal values and resourceFieldRef are resolved here"
        resource = ref["resource"].split(".", 1)
        assert resource[1] == "cpu", f"{item['name']}: unexpected resource {ref['resource']}"
        env[item["name"]] = str(cpu_count(c["resources"][resource[0]]["cpu"]))
    return env


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oxinfer.toml"
    path.write_text(text)
    return path


def predict(url: str, name: str = "chelsea.png") -> requests.Response:
    return requests.post(f"{url}/v1/models/{MODEL}:predict", data=(PHOTOS / name).read_bytes(),
                         headers={"Content-Type": "image/png"}, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ probes


def test_probe_paths_answer_on_a_ready_server(objects, server):
    c = container(objects)
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for name, probe in probes.items():
        get = probe["httpGet"]
        assert get["port"] in port_names or get["port"] in port_names.values(), f"{name}: unknown port {get['port']}"
        r = requests.get(server.url + get["path"], timeout=probe.get("timeoutSeconds", 1))
        assert r.status_code == 200, f"{name} {get['path']}: {r.status_code} {r.text}"


def test_readiness_is_not_200_before_the_models_are_loaded(objects, tmp_path):
    """The startup probe must see the server become ready well within its budget, and never early."""
    c = container(objects)
    startup = c["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    with start_server(args=["--config", str(write_config(tmp_path, config_text(objects)))],
                      env=pod_env(objects), wait_ready=False) as s:
        t0 = time.monotonic()
        seen = []
        while time.monotonic() - t0 < budget:
            assert s.proc.poll() is None, f"server exited:\n{s.logs()}"
            try:
                code = requests.get(s.url + "/v2/health/ready", timeout=startup["timeoutSeconds"]).status_code
            except requests.ConnectionError:
                code = "refused"
            except requests.Timeout:
                # The kubelet counts an answer later than timeoutSeconds as a failed probe, like a 503.
                code = "timeout"
            seen.append(code)
            if code == 200:
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        assert seen[-1] == 200, f"not ready within the startup probe's {budget} s: {seen[-5:]}"
        assert set(seen[:-1]) <= {503, "refused", "timeout"}, f"readiness before ready answered {set(seen[:-1])}"
        # A generous margin: a cold node also pulls the image and reads the bucket before this starts.
        assert elapsed < budget / 4, f"ready after {elapsed:.1f} s, too close to the startup budget of {budget} s"
        # Liveness must not depend on the models: it answers as soon as the server answers at all.
        assert requests.get(s.url + c["livenessProbe"]["httpGet"]["path"], timeout=2).status_code == 200


# ------------------------------------------------------------------------------------ config and port


def test_configmap_and_pod_env_are_accepted_by_the_server(objects, tmp_path):
    """Start-up with the ConfigMap's own file and the pod's env proves every key is known to the server."""
    c = container(objects)
    assert c["args"][:2] == ["--config", "/etc/oxinfer/oxinfer.toml"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts.get("/etc/oxinfer") == "config"
    env = pod_env(objects)
    assert all(k.startswith("OXINFER_") for k in env), "the server reads OXINFER_* only"
    # Service links would add OXINFER_SERVICE_HOST, OXINFER_PORT=tcp://... for the Service named oxinfer.
    assert one(objects, "Deployment")["spec"]["template"]["spec"].get("enableServiceLinks") is False
    with start_server(args=["--config", str(write_config(tmp_path, config_text(objects)))], env=env) as s:
        r = predict(s.url)
        assert r.status_code == 200, r.text
        if "OXINFER_HTTP_WORKERS" in env:
            assert f'"workers":{env["OXINFER_HTTP_WORKERS"]}' in s.logs().replace(" ", "") or \
                f"workers={env['OXINFER_HTTP_WORKERS']}" in s.logs(), "HTTP workers do not follow the CPU limit"


def test_container_port_is_the_port_the_server_listens_on(objects, tmp_path):
    """The server is started from the ConfigMap's file with no --port flag, only the port value swapped for a
    free one, to show the file's `port` key is what it binds; the file's value must be the containerPort."""
    text = config_text(objects)
    config = tomllib.loads(text)
    c = container(objects)
    http = next(p for p in c["ports"] if p["name"] == "http")
    assert config["port"] == http["containerPort"] == 8000
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] in ("http", http["containerPort"])
    assert service["spec"]["ports"][0]["port"] == 8000

    port = free_port()
    swapped = re.sub(r"(?m)^port\s*=\s*\d+", f"port = {port}", text)
    assert swapped != text
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXINFER_")}
    env.update(pod_env(objects))
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN), "--config", str(write_config(tmp_path, swapped)),
                                 "--model-repository", str(REPO), "--ort-library", ORT_LIB],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"server exited:\n{log.read_text()}"
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"nothing ready on the configured port:\n{log.read_text()}"
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=40)


# ------------------------------------------------------------------------------------------ autoscaling


def hpa_metric_names(objects: dict) -> list[str]:
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    return [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]


def test_hpa_and_adapter_metric_is_exported_after_an_inference(objects, server):
    names = hpa_metric_names(objects)
    assert names, "the HPA must scale on the per-pod in-flight metric"
    # Managed Prometheus names it prometheus.googleapis.com|<metric>|<kind> in the custom metrics API.
    wanted = set()
    for name in names:
        parts = name.split("|")
        if len(parts) == 3:
            assert parts[0] == "prometheus.googleapis.com"
            wanted.add((parts[1], parts[2]))
        else:
            wanted.add((name, "gauge"))
    rules = yaml.safe_load(yaml.safe_load(ADAPTER_RULES.read_text())["data"]["config.yaml"])["rules"]
    for rule in rules:
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)
        assert re.fullmatch(rule["name"]["matches"], series)
        wanted.add((rule["name"]["as"], "gauge"))
        assert {"namespace", "pod"} <= set(rule["resources"]["overrides"])

    assert predict(server.url).status_code == 200
    text = requests.get(server.url + "/metrics", timeout=10).text
    for metric, kind in sorted(wanted):
        assert re.search(rf"(?m)^# TYPE {re.escape(metric)} {kind}$", text), f"{metric} is not a {kind} in /metrics"
        assert re.search(rf'(?m)^{re.escape(metric)}\{{[^}}]*model="{MODEL}"', text), f"no {metric} series for {MODEL}"


def test_scrape_targets_the_serving_port(objects):
    monitor = one(objects, "PodMonitoring")
    endpoint = monitor["spec"]["endpoints"][0]
    ports = {p["name"] for p in container(objects)["ports"]}
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


# ------------------------------------------------------------------------------------------------ drain


def drain_budget(objects: dict) -> tuple[int, int, int]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    env = pod_env(objects)
    shutdown = int(env.get("OXINFER_SHUTDOWN_TIMEOUT_SECS", tomllib.loads(config_text(objects))["shutdown_timeout_secs"]))
    return pre_stop, shutdown, pod["terminationGracePeriodSeconds"]


def test_prestop_and_drain_fit_the_grace_period(objects):
    pre_stop, shutdown, grace = drain_budget(objects)
    assert pre_stop >= 5, "load balancers need a few seconds to stop sending"
    assert pre_stop + shutdown < grace, f"preStop {pre_stop} s + drain {shutdown} s must stay below {grace} s"


def test_sigterm_drains_in_flight_requests_within_shutdown_timeout(objects, tmp_path):
    """A real server under a slow request: SIGTERM turns readiness off within 0.1 s, the request still completes,
    and the process exits well within shutdown_timeout_secs (so within the pod's grace period)."""
    _, shutdown, _ = drain_budget(objects)
    config = tomllib.loads(config_text(objects))
    images = min(48, config["max_images_per_request"])
    body = {"instances": [{"b64": base64.b64encode((PHOTOS / "chelsea.png").read_bytes()).decode()}] * images}
    result: dict = {}

    with start_server(args=["--config", str(write_config(tmp_path, config_text(objects)))], env=pod_env(objects)) as s:
        def slow_request():
            try:
                r = requests.post(f"{s.url}/v1/models/{MODEL}:predict", json=body, timeout=120)
                result["status"], result["body"] = r.status_code, r.json()
            except Exception as e:  # reported by the assertion below
                result["error"] = repr(e)

        worker = threading.Thread(target=slow_request)
        worker.start()
        # Wait until the server reports the request as in flight (the HPA's own metric).
        deadline = time.monotonic() + 30
        while not re.search(r'(?m)^oxinfer_inflight_requests\{[^}]*\} [1-9]',
                            requests.get(s.url + "/metrics", timeout=5).text):
            assert worker.is_alive(), f"the request finished before SIGTERM could be sent: {result}"
            assert time.monotonic() < deadline, "the request never showed up in oxinfer_inflight_requests"
            time.sleep(0.005)

        t_sig = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        readiness = []  # (seconds after the signal the probe was sent, answer)
        while worker.is_alive() and time.monotonic() - t_sig < shutdown:
            sent = time.monotonic() - t_sig
            try:
                readiness.append((sent, requests.get(s.url + "/v2/health/ready", timeout=2).status_code))
            except requests.ConnectionError:
                readiness.append((sent, "refused"))
            except requests.Timeout:
                readiness.append((sent, "timeout"))
            time.sleep(0.02)
        worker.join(timeout=shutdown + 10)
        # The signal is handled by a task of its own, so a probe sent in the same instant can still be answered
        # before it runs; a kubelet probing every few seconds must see readiness off from 0.1 s on, and for good.
        off = [i for i, (_, answer) in enumerate(readiness) if answer != 200]
        assert off, f"readiness never turned off after SIGTERM: {readiness}"
        late_200 = [(t, a) for i, (t, a) in enumerate(readiness) if a == 200 and (t > 0.1 or i > off[0])]
        assert not late_200, f"readiness answered 200 after SIGTERM: {readiness}"
        assert result.get("status") == 200, f"the in-flight request did not complete: {result}"
        assert len(result["body"]["predictions"]) == images
        s.proc.wait(timeout=shutdown + 5)
        exited = time.monotonic() - t_sig
        assert s.proc.returncode == 0, f"exit code {s.proc.returncode}:\n{s.logs()}"
        assert exited < shutdown, f"drain took {exited:.1f} s, more than shutdown_timeout_secs {shutdown}"
