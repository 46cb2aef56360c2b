"""The processes the benchmark measures: the server (started per configuration from a temporary model repository
whose config.toml differs in one setting), the in-process ceiling example, and the CPU bookkeeping that tells how
much of the machine went to the server, to the client, and to everything else running at the same time.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.servers import ort_library  # one definition of where the wheel's library is

ROOT = Path(__file__).resolve().parents[2]
MODEL = "efficientnet_lite0"
REPO = ROOT / "model-repo"
SERVER_BIN = ROOT / "target" / "release" / "oxinfer"
CEILING_BIN = ROOT / "target" / "release" / "examples" / "ceiling"


def build() -> None:
    subprocess.run(["cargo", "build", "--release", "--bin", "oxinfer", "--example", "ceiling", "--example", "loadgen"],
                   cwd=ROOT, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- model repositories -------------------------------------------------------------------------------------------

def set_key(text: str, section: str, key: str, value: str) -> str:
    """`key = value` inside `[section]` of a TOML text: replaced when present, added under the header otherwise."""
    lines = text.splitlines()
    header = next((i for i, l in enumerate(lines) if l.strip() == f"[{section}]"), None)
    if header is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(header + 1, end):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    lines.insert(header + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def variant_repo(changes: dict[tuple[str, str], str]) -> Path:
    """A temporary repository serving the real model with `changes` {(section, key): toml value} applied."""
    src = REPO / MODEL
    root = Path(tempfile.mkdtemp(prefix="oxinfer-bench-"))
    dst = root / MODEL
    dst.mkdir()
    text = (src / "config.toml").read_text()
    for (section, key), value in changes.items():
        text = set_key(text, section, key, value)
    parsed = tomllib.loads(text)
    for (section, key), value in changes.items():
        if parsed[section][key] != tomllib.loads(f"v = {value}")["v"]:
            raise RuntimeError(f"could not set [{section}] {key} = {value}")
    (dst / "config.toml").write_text(text)
    for entry in src.iterdir():
        if entry.name == "config.toml":
            continue
        if entry.is_dir():
            (dst / entry.name).mkdir()
            for f in entry.iterdir():
                (dst / entry.name / f.name).symlink_to(f.resolve())
        else:
            (dst / entry.name).symlink_to(entry.resolve())
    return root


# --- the server ---------------------------------------------------------------------------------------------------

def _get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path
    ready_s: float

    def metrics(self) -> str:
        return _get(self.port, "/metrics")[1].decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The log is only worth keeping when the server failed, and then start_server has shown it.
        self.log.unlink(missing_ok=True)


def start_server(repo: Path, extra: list[str] | None = None, timeout: float = 120.0, binary: Path = SERVER_BIN) -> Server:
    """Starts the server (`binary`, by default this checkout's release build) and returns once /v2/health/ready
    answers 200; `ready_s` is counted from the spawn."""
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"oxinfer-bench-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXINFER_")}
    cmd = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--ort-library", str(ort_library()),
           "--model-repository", str(repo), "--log-level", "warn", *(extra or [])]
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if _get(port, "/v2/health/ready", timeout=1.0)[0] == 200:
                return Server(proc, port, log, time.perf_counter() - t0)
        except OSError:
            pass
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            raise RuntimeError(f"server not ready after {timeout}s")
        time.sleep(0.005)


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            total += float(m.group(2))
            found = True
    return total if found else None


# --- CPU bookkeeping ----------------------------------------------------------------------------------------------

@dataclass
class CpuSnapshot:
    wall: float
    system_busy: float
    server: float
    server_http: float
    client: float


def cpu_snapshot(server_pid: int, client_pid: int) -> CpuSnapshot:
    return CpuSnapshot(time.perf_counter(), _busy(), _process_cpu(server_pid), _threads_cpu(server_pid, "actix"),
                       _process_cpu(client_pid))


def _threads_cpu(pid: int, prefix: str) -> float:
    """CPU seconds of the threads whose name starts with `prefix`: "actix" names the HTTP side (the accept loop
    and the workers that read bodies, parse and answer); every other thread of the server runs inference."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if name.startswith(prefix):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def cpu_split(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
    """Cores used by the server (and its HTTP threads alone), the client and everything else between two snapshots."""
    wall = max(b.wall - a.wall, 1e-9)
    server = (b.server - a.server) / wall
    client = (b.client - a.client) / wall
    busy = (b.system_busy - a.system_busy) / wall
    return {"server_cores": server, "http_cores": (b.server_http - a.server_http) / wall, "client_cores": client,
            "other_cores": max(busy - server - client, 0.0)}


def machine_load() -> dict:
    """Load averages and the busiest processes right now, to judge how quiet the machine was."""
    load1, load5, load15 = os.getloadavg()
    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            procs.append((p, p.cpu_percent(None)))
        except psutil.Error:
            pass
    time.sleep(1.0)
    busy = []
    for p, _ in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= 5.0:
            cmd = " ".join(p.info.get("cmdline") or [p.info.get("name") or "?"])[:100]
            busy.append({"pid": p.info["pid"], "cpu_percent": round(pct, 1), "cmd": cmd})
    busy.sort(key=lambda x: -x["cpu_percent"])
    return {"loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)], "cpus": os.cpu_count(), "busy": busy[:10]}


class Quiet:
    """Waits, before each measurement, until the rest of the machine is idle (< `threshold` busy cores over
    `window` seconds), spending at most `budget` seconds over the whole run. Shared machines have quiet spells;
    measuring inside them is what makes the ceiling and the server comparable."""

    def __init__(self, budget: float, threshold: float = 0.25, window: float = 2.0):
        self.left, self.threshold, self.window = budget, threshold, window
        self.waited = 0.0

    def wait(self) -> float:
        """Returns the busy cores last seen (the measurement starts right after)."""
        if self.left <= 0:
            return math.nan
        while True:
            t0 = time.monotonic()
            busy = sum(psutil.cpu_percent(interval=self.window, percpu=True)) / 100
            spent = time.monotonic() - t0
            if busy < self.threshold:
                return busy
            self.left -= spent
            self.waited += spent
            if self.left <= 0:
                return busy

    def measure(self, fn, on_redo=None) -> dict:
        """Runs `fn()` (a result with `other_cores`) until it ran while the rest of the machine stayed under the
        threshold, or the budget is spent; a spell can end mid-measurement, and then the measurement is redone."""
        attempts = 0
        while True:
            self.wait()
            t0 = time.monotonic()
            result = fn()
            attempts += 1
            if self.left <= 0 or result["other_cores"] < self.threshold:
                result["attempts"] = attempts
                return result
            spent = time.monotonic() - t0
            self.left -= spent
            self.waited += spent
            if on_redo:
                on_redo(result)


# --- the ceiling --------------------------------------------------------------------------------------------------

def ceiling(seconds: float, batches: list[int], tensor: Path, instances: int = 0, threads: int = 0) -> list[dict]:
    """In-process ONNX Runtime on `tensor` (one row of raw FP32, the server's own input) at each batch size."""
    cmd = [str(CEILING_BIN), "--ort-library", str(ort_library()), "--model-dir", str(REPO / MODEL),
           "--seconds", str(seconds), "--batches", ",".join(map(str, batches)), "--tensor", str(tensor)]
    if instances:
        cmd += ["--instances", str(instances)]
    if threads:
        cmd += ["--threads", str(threads)]
    t0, busy0, kids0 = time.perf_counter(), _busy(), _children_cpu()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    wall = time.perf_counter() - t0
    own = (_children_cpu() - kids0) / wall
    # Cores the rest of the machine used meanwhile (this script is idle while it waits).
    other = max((_busy() - busy0) / wall - own, 0.0)
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    for r in rows:
        r.update({"ceiling_cores": round(own, 3), "other_cores": round(other, 3)})
    return rows


def _busy() -> float:
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def preprocessed_tensor(png: Path) -> bytes:
    """The exact FP32 tensor the image endpoint feeds the model for `png`, from the server's own recipe."""
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        subprocess.run([str(SERVER_BIN), "preprocess", "--model-config", str(REPO / MODEL / "config.toml"),
                        "--image", str(png), "--out", f.name], check=True)
        return Path(f.name).read_bytes()


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
