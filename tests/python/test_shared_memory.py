"""Triton's system shared memory extension, driven by tritonclient's own shared-memory helpers: a client on the same
host writes the input tensor into a POSIX shared-memory object, registers it, and gets the logits written into a
second one. Values are checked against ONNX Runtime run in-process; misuse must earn a 4xx with a JSON error and
never take the server down."""
from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from conftest import start_server
from test_tritonclient import CAT_CLASSES, ESPRESSO, MODEL, host


@pytest.fixture
def regions(server, batch, reference):
    """An input region holding the batch and an empty output region, registered; unregistered and removed after."""
    client = httpclient.InferenceServerClient(host(server), network_timeout=120)
    tag = uuid.uuid4().hex[:8]
    keys = {"in": f"/oxinfer-in-{tag}", "out": f"/oxinfer-out-{tag}"}
    h_in = shm.create_shared_memory_region(f"in-{tag}", keys["in"], batch.nbytes)
    h_out = shm.create_shared_memory_region(f"out-{tag}", keys["out"], reference.nbytes)
    shm.set_shared_memory_region(h_in, [batch])
    client.register_system_shared_memory(f"in-{tag}", keys["in"], batch.nbytes)
    client.register_system_shared_memory(f"out-{tag}", keys["out"], reference.nbytes)
    try:
        yield client, tag, keys, h_out
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(h_in)
        shm.destroy_shared_memory_region(h_out)
        client.close()


def shm_request(tag: str, in_bytes: int, out_bytes: int, offset: int = 0) -> dict:
    return {"inputs": [{"name": "input", "shape": [2, 3, 224, 224], "datatype": "FP32",
                        "parameters": {"shared_memory_region": f"in-{tag}", "shared_memory_byte_size": in_bytes,
                                       "shared_memory_offset": offset}}],
            "outputs": [{"name": "logits", "parameters": {"shared_memory_region": f"out-{tag}",
                                                          "shared_memory_byte_size": out_bytes}}]}


def test_round_trip_through_shared_memory(regions, batch, reference, server):
    client, tag, keys, h_out = regions
    assert "system_shared_memory" in client.get_server_metadata()["extensions"]
    status = {r["name"]: r for r in client.get_system_shared_memory_status()}
    assert status[f"in-{tag}"] == {"name": f"in-{tag}", "key": keys["in"], "offset": 0, "byte_size": batch.nbytes}
    assert client.get_system_shared_memory_status(f"out-{tag}")[0]["byte_size"] == reference.nbytes

    i = httpclient.InferInput("input", list(batch.shape), "FP32")
    i.set_shared_memory(f"in-{tag}", batch.nbytes)
    o = httpclient.InferRequestedOutput("logits")
    o.set_shared_memory(f"out-{tag}", reference.nbytes)
    result = client.infer(MODEL, [i], outputs=[o])
    # The output travels in shared memory only: its header carries neither data nor parameters, as Triton's.
    assert result.get_output("logits") == {"name": "logits", "datatype": "FP32", "shape": [2, 1000]}
    logits = shm.get_contents_as_numpy(h_out, np.float32, [2, 1000])
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    assert logits[0].argmax() == ESPRESSO and logits[1].argmax() in CAT_CLASSES

    # An input from shared memory with the output in the body, as binary data.
    o = httpclient.InferRequestedOutput("logits", binary_data=True)
    got = client.infer(MODEL, [i], outputs=[o]).as_numpy("logits")
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
    assert requests.get(f"{server.url}/v2/models/{MODEL}/stats", timeout=10).status_code == 200


def test_misuse_is_a_client_error(regions, batch, reference, server):
    client, tag, keys, _ = regions
    url = server.url
    cases = [
        # (method, path, body, status, words in the error)
        ("post", f"/v2/systemsharedmemory/region/in-{tag}/register", {"key": keys["in"], "byte_size": 4}, 400,
         "already registered"),
        ("post", "/v2/systemsharedmemory/region/absent/register", {"key": "/oxinfer-absent-key", "byte_size": 4}, 404,
         "no shared memory object has the key '/oxinfer-absent-key'"),
        ("post", "/v2/systemsharedmemory/region/bad/register", {"key": "/a/b", "byte_size": 4}, 404,
         "not a valid POSIX shared memory name"),
        ("post", "/v2/systemsharedmemory/region/big/register", {"key": keys["in"], "byte_size": batch.nbytes + 1},
         400, "fewer than offset 0"),
        ("post", "/v2/systemsharedmemory/region/nokey/register", {"byte_size": 4}, 400, "register body must be"),
        ("get", "/v2/systemsharedmemory/region/absent/status", None, 404, "unable to find"),
        ("post", f"/v2/models/{MODEL}/infer", shm_request(tag, batch.nbytes - 4, reference.nbytes), 400,
         "shared memory data has"),
        ("post", f"/v2/models/{MODEL}/infer", shm_request(tag, batch.nbytes, reference.nbytes, offset=4), 400,
         "is outside shared memory region"),
        ("post", f"/v2/models/{MODEL}/infer", shm_request(tag, batch.nbytes, reference.nbytes - 4), 400,
         "do not fit in the 7996 bytes"),
        ("post", "/v2/cudasharedmemory/region/gpu/register", {"raw_handle": {"b64": ""}, "device_id": 0,
                                                              "byte_size": 4}, 400, "CUDA shared memory is not supported"),
        ("get", "/v2/cudasharedmemory/region/gpu/status", None, 404, "unable to find cuda shared memory region"),
    ]
    for method, path, body, status, words in cases:
        r = requests.request(method, url + path, json=body, timeout=30)
        assert r.status_code == status and words in r.json()["error"], (path, r.status_code, r.text)
    assert requests.get(f"{url}/v2/cudasharedmemory/status", timeout=10).json() == []
    assert requests.post(f"{url}/v2/cudasharedmemory/unregister", timeout=10).status_code == 200
    with pytest.raises(InferenceServerException, match="already registered"):
        client.register_system_shared_memory(f"out-{tag}", keys["out"], 8)

    # The client shrinks its object behind the server's back: a 400, not a SIGBUS.
    os.truncate(f"/dev/shm/{keys['in'].lstrip('/')}", 100)
    r = requests.post(f"{url}/v2/models/{MODEL}/infer", json=shm_request(tag, batch.nbytes, reference.nbytes),
                      timeout=30)
    assert r.status_code == 400 and "holds 100 bytes" in r.json()["error"], r.text
    assert server.proc.poll() is None
    # Unregistering an unknown region succeeds, as in Triton; the one named is gone afterwards.
    client.unregister_system_shared_memory("never-registered")
    client.unregister_system_shared_memory(f"in-{tag}")
    assert f"in-{tag}" not in {r["name"] for r in client.get_system_shared_memory_status()}


def test_switched_off(batch):
    with start_server(["--system-shared-memory", "false"]) as s:
        meta = requests.get(f"{s.url}/v2", timeout=10).json()
        assert "system_shared_memory" not in meta["extensions"]
        r = requests.post(f"{s.url}/v2/systemsharedmemory/region/x/register", json={"key": "/x", "byte_size": 4},
                          timeout=10)
        assert r.status_code == 400 and "disabled" in r.json()["error"]
        r = requests.post(f"{s.url}/v2/models/{MODEL}/infer", json=shm_request("x", batch.nbytes, 8000), timeout=10)
        assert r.status_code == 400 and "disabled" in r.json()["error"]


def test_shrinking_during_requests_is_survived(server, batch):
    """A client that truncates its objects while requests read the input and write the output: the requests get
    200 or 400, and the server lives (reads and writes go through the descriptor, so there is no SIGBUS to take)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    client = httpclient.InferenceServerClient(host(server), network_timeout=120)
    tag = uuid.uuid4().hex[:8]
    row = batch[:1]
    h_in = shm.create_shared_memory_region(f"in-{tag}", f"/oxinfer-in-{tag}", row.nbytes)
    h_out = shm.create_shared_memory_region(f"out-{tag}", f"/oxinfer-out-{tag}", 4000)
    shm.set_shared_memory_region(h_in, [row])
    client.register_system_shared_memory(f"in-{tag}", f"/oxinfer-in-{tag}", row.nbytes)
    client.register_system_shared_memory(f"out-{tag}", f"/oxinfer-out-{tag}", 4000)
    body = shm_request(tag, row.nbytes, 4000)
    body["inputs"][0]["shape"] = [1, 3, 224, 224]
    stop = threading.Event()

    def shrink() -> None:
        fds = [os.open(f"/dev/shm/oxinfer-{side}-{tag}", os.O_RDWR) for side in ("in", "out")]
        sizes = [row.nbytes, 4000]
        while not stop.is_set():
            for fd, size in zip(fds, sizes):
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)
        for fd in fds:
            os.close(fd)

    def infer(_) -> int:
        r = requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
        assert r.status_code == 200 or (r.status_code == 400 and "shared memory" in r.json()["error"]), r.text
        return r.status_code

    shrinker = threading.Thread(target=shrink)
    shrinker.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(infer, range(200)))
    finally:
        stop.set()
        shrinker.join()
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(h_in)
        shm.destroy_shared_memory_region(h_out)
        client.close()
    assert server.proc.poll() is None, "the server died"
    assert set(codes) <= {200, 400} and 400 in codes, codes
