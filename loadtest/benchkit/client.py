"""What the benchmark sends, and how: request bodies built once up front, one checked request before each sweep, and
the closed loop itself, run by the native load generator (examples/loadgen.rs): N threads, each with one
keep-alive connection, sending the same pre-built request back to back and reading the answer unparsed. On a
2-core machine every cycle the client burns is taken from the server, so the client must be cheap: an
interpreted one spent about 1 ms of CPU per request here, the native one a few tens of microseconds. Its CPU is
measured anyway and reported next to every point.

The shared-memory form (`v2_shm`) puts the tensor in a POSIX shared-memory object once and registers it with each
server it is checked against; its requests are then a few hundred bytes of JSON naming the input and output regions,
as perf_analyzer's `--shared-memory system` sends them.

The single checked request uses http.client rather than requests: requests sends `Accept-Encoding: gzip`, which
makes the server compress the response (a cost real V2 clients do not ask for).
"""
from __future__ import annotations

import atexit
import http.client
import json
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path

MODEL = "efficientnet_lite0"
LOADGEN_BIN = Path(__file__).resolve().parents[2] / "target" / "release" / "examples" / "loadgen"


@dataclass
class Payload:
    protocol: str  # v2_json | v2_binary | v2_shm | image
    path: str
    body: bytes
    headers: dict[str, str]
    images: int = 1
    # Shared-memory regions the requests name, registered with a server before use: name -> (object, byte size).
    regions: dict[str, tuple[shared_memory.SharedMemory, int]] = field(default_factory=dict)


def v2_json(tensor: bytes, shape: list[int]) -> Payload:
    import numpy as np

    values = np.frombuffer(tensor, dtype="<f4").tolist()
    doc = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": values}]}
    return Payload("v2_json", f"/v2/models/{MODEL}/infer", json.dumps(doc).encode(), {"Content-Type": "application/json"})


def v2_binary(tensor: bytes, shape: list[int]) -> Payload:
    doc = {
        "inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "parameters": {"binary_data_size": len(tensor)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    header = json.dumps(doc).encode()
    return Payload(
        "v2_binary",
        f"/v2/models/{MODEL}/infer",
        header + tensor,
        {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
    )


def v2_shm(tensor: bytes, shape: list[int]) -> Payload:
    """Input and output in shared memory; the objects are removed when this process exits."""
    sizes = {"bench_input": len(tensor), "bench_output": 1000 * 4 * shape[0]}
    regions = {}
    for name, size in sizes.items():
        obj = shared_memory.SharedMemory(create=True, size=size)
        atexit.register(obj.unlink)
        atexit.register(obj.close)
        regions[name] = (obj, size)
    regions["bench_input"][0].buf[: len(tensor)] = tensor
    doc = {
        "inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                    "parameters": {"shared_memory_region": "bench_input", "shared_memory_byte_size": sizes["bench_input"]}}],
        "outputs": [{"name": "logits",
                     "parameters": {"shared_memory_region": "bench_output", "shared_memory_byte_size": sizes["bench_output"]}}],
    }
    return Payload("v2_shm", f"/v2/models/{MODEL}/infer", json.dumps(doc).encode(), {"Content-Type": "application/json"},
                   regions=regions)


def register(port: int, p: Payload) -> None:
    """Registers the payload's regions with a (freshly started) server, replacing any of the same name."""
    conn = connect(port)
    try:
        for name, (obj, size) in p.regions.items():
            for path, body in ((f"/v2/systemsharedmemory/region/{name}/unregister", b""),
                               (f"/v2/systemsharedmemory/region/{name}/register",
                                json.dumps({"key": "/" + obj.name.lstrip("/"), "offset": 0, "byte_size": size}).encode())):
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:300]!r}")
    finally:
        conn.close()


def image(png: bytes) -> Payload:
    return Payload("image", f"/v1/models/{MODEL}:predict", png, {"Content-Type": "image/png"})


def default_image() -> Path:
    """scikit-image's chelsea.png, the photo every benchmark sends unless told otherwise."""
    return Path(__import__("skimage").__file__).parent / "data" / "chelsea.png"


def payloads(png: bytes, tensor: bytes) -> dict[str, Payload]:
    """The four request forms, all making the model compute on `tensor` (what the image endpoint makes of `png`)."""
    shape = [1, 3, 224, 224]
    return {"v2_json": v2_json(tensor, shape), "v2_binary": v2_binary(tensor, shape), "v2_shm": v2_shm(tensor, shape),
            "image": image(png)}


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    # http.client sends a bytes body in the same send() as the headers, but the response side of a keep-alive
    # connection must not wait on delayed ACKs either.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def request(conn: http.client.HTTPConnection, p: Payload) -> tuple[int, dict[str, str], bytes]:
    conn.request("POST", p.path, body=p.body, headers=p.headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def check(port: int, p: Payload) -> str:
    """One request, checked for a well-formed answer, so a sweep never measures fast errors. Registers the payload's
    shared-memory regions first."""
    register(port, p)
    conn = connect(port)
    try:
        status, headers, data = request(conn, p)
    finally:
        conn.close()
    if status != 200:
        raise RuntimeError(f"{p.protocol}: HTTP {status}: {data[:300]!r}")
    if p.protocol == "v2_binary":
        n = int(headers.get("inference-header-content-length", "-1"))
        if n < 0 or len(data) - n != 1000 * 4:
            raise RuntimeError(f"v2_binary: expected 4000 raw output bytes, got {len(data) - n}")
        return "logits: 4000 raw bytes"
    doc = json.loads(data)
    if p.protocol == "v2_shm":
        import numpy as np

        out = doc["outputs"][0]
        logits = np.frombuffer(bytes(p.regions["bench_output"][0].buf[:4000]), dtype="<f4")
        if "data" in out or out["shape"] != [1, 1000] or not np.isfinite(logits).all():
            raise RuntimeError(f"v2_shm: unexpected answer {out}")
        return f"logits in shared memory, top-1 index {int(logits.argmax())}"
    if p.protocol == "v2_json":
        shape = doc["outputs"][0]["shape"]
        if shape != [1, 1000]:
            raise RuntimeError(f"v2_json: output shape {shape}")
        return "logits [1, 1000]"
    top = doc["predictions"][0][0]
    return f"top-1 {top}"


class Load:
    """The load generator running `concurrency` connections: `wait("window-start")` returns when its measured
    window opens, `wait("window-end")` when it closes, and `result()` gives its summary of the responses that
    completed inside the window (count, errors, latency percentiles)."""

    def __init__(self, port: int, p: Payload, concurrency: int, warmup: float, duration: float):
        self._body = tempfile.NamedTemporaryFile(prefix="oxinfer-bench-", suffix=".body")
        self._body.write(p.body)
        self._body.flush()
        cmd = [str(LOADGEN_BIN), "--addr", f"127.0.0.1:{port}", "--path", p.path, "--body", self._body.name,
               "--concurrency", str(concurrency), "--warmup", str(warmup), "--duration", str(duration)]
        for k, v in p.headers.items():
            cmd += ["--header", f"{k}: {v}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def wait(self, line: str) -> None:
        got = self.proc.stdout.readline().strip()
        if got != line:
            self.proc.kill()
            raise RuntimeError(f"load generator: expected {line!r}, got {got!r} (exit {self.proc.wait()})")

    def result(self) -> dict:
        # Read through the text buffer, which may already hold the summary line along with "window-end"
        # (communicate() with a timeout would read the pipe beneath it and miss that line).
        out = self.proc.stdout.read()
        self.proc.wait(timeout=180)
        self._body.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator exited with {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])
