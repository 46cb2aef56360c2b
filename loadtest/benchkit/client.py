"""Closed-loop HTTP load: N threads, each with one keep-alive connection, sending the same pre-built request back
to back. Bodies are encoded once up front and responses are read but not parsed, so the client's CPU per request
is a few hundred microseconds of socket calls; it is measured anyway and reported next to every point, because on
a 2-core machine every cycle the client burns is taken from the server.

http.client rather than requests: requests adds its own per-request cost and sends `Accept-Encoding: gzip`, which
makes the server compress every response (a cost real V2 clients do not ask for).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field

MODEL = "efficientnet_lite0"


@dataclass
class Payload:
    protocol: str  # v2_json | v2_binary | image
    path: str
    body: bytes
    headers: dict[str, str]
    images: int = 1


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


def image(png: bytes) -> Payload:
    return Payload("image", f"/v1/models/{MODEL}:predict", png, {"Content-Type": "image/png"})


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
    """One request, checked for a well-formed answer, so a sweep never measures fast errors."""
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
    if p.protocol == "v2_json":
        shape = doc["outputs"][0]["shape"]
        if shape != [1, 1000]:
            raise RuntimeError(f"v2_json: output shape {shape}")
        return "logits [1, 1000]"
    top = doc["predictions"][0][0]
    return f"top-1 {top}"


@dataclass
class Sample:
    start: float
    end: float
    ok: bool


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _worker(port: int, p: Payload, begin: float, stop: float, out: LoadResult, lock: threading.Lock) -> None:
    local: list[Sample] = []
    errors: list[str] = []
    conn = None
    while True:
        now = time.perf_counter()
        if now < begin:
            time.sleep(begin - now)
            continue
        if now >= stop:
            break
        try:
            if conn is None:
                conn = connect(port)
            t0 = time.perf_counter()
            status, _, data = request(conn, p)
            t1 = time.perf_counter()
            local.append(Sample(t0, t1, status == 200))
            if status != 200 and len(errors) < 5:
                errors.append(f"HTTP {status}: {data[:200]!r}")
        except (OSError, http.client.HTTPException) as e:
            local.append(Sample(time.perf_counter(), time.perf_counter(), False))
            if len(errors) < 5:
                errors.append(repr(e))
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        out.samples.extend(local)
        out.errors.extend(errors)


class Load:
    """Starts `concurrency` senders at `begin` (perf_counter time) that stop issuing at `stop`; `join()` waits for
    the last responses."""

    def __init__(self, port: int, p: Payload, concurrency: int, begin: float, stop: float):
        self.result = LoadResult()
        lock = threading.Lock()
        self.threads = [
            threading.Thread(target=_worker, args=(port, p, begin, stop, self.result, lock), daemon=True)
            for _ in range(concurrency)
        ]
        for t in self.threads:
            t.start()

    def join(self) -> LoadResult:
        for t in self.threads:
            t.join()
        return self.result
