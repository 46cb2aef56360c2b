"""Triton's own Python clients (tritonclient.http and its asyncio twin) against the real server and model: if these
pass unmodified, the server speaks the Open Inference Protocol with Triton's extensions as clients expect.
Values are checked against ONNX Runtime run in-process on the same model file, not just for shape."""
from __future__ import annotations

import asyncio
import gzip
import time
import zlib

import ml_dtypes
import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

import models
from conftest import start_server

MODEL = "efficientnet_lite0"
ESPRESSO = 967
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def host(server) -> str:
    return server.url.removeprefix("http://")


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(host(server), network_timeout=120)
    yield c
    c.close()


def image_input(tensor: np.ndarray, binary: bool) -> httpclient.InferInput:
    i = httpclient.InferInput("input", list(tensor.shape), "FP32")
    i.set_data_from_numpy(tensor, binary_data=binary)
    return i


# --- metadata, config, health -----------------------------------------------------------------------------------

def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no_such_model")
    meta = client.get_server_metadata()
    assert meta["name"] == "oxinfer" and isinstance(meta["version"], str)
    for ext in ("binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics"):
        assert ext in meta["extensions"]


@pytest.mark.parametrize("version", ["", "1"])
def test_model_metadata(client, version):
    meta = client.get_model_metadata(MODEL, version)
    assert meta["name"] == MODEL and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]


def test_model_config(client):
    config = client.get_model_config(MODEL)
    assert config["name"] == MODEL and config["max_batch_size"] == 32
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [1000]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert client.get_model_config(MODEL, "1") == config


# --- inference --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
def test_infer_every_tensor_format(client, batch, reference, binary_in, binary_out):
    result = client.infer(MODEL, [image_input(batch, binary_in)],
                          outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary_out)])
    logits = result.as_numpy("logits")
    assert logits.dtype == np.float32 and logits.shape == (2, 1000)
    assert logits[0].argmax() == ESPRESSO and logits[1].argmax() in CAT_CLASSES
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-3)
    out = result.get_output("logits")
    assert out["shape"] == [2, 1000] and out["datatype"] == "FP32"
    if binary_out:
        assert out["parameters"] == {"binary_data_size": 8000} and "data" not in out
    else:
        assert len(out["data"]) == 2000 and "parameters" not in out
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"


@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
def test_outputs_omitted_come_back_binary(client, batch, reference, binary_in):
    result = client.infer(MODEL, [image_input(batch[:1], binary_in)], request_id="req-42")
    assert result.get_output("logits")["parameters"] == {"binary_data_size": 4000}
    np.testing.assert_allclose(result.as_numpy("logits"), reference[:1], rtol=1e-4, atol=1e-3)
    assert result.get_response()["id"] == "req-42"


def test_explicit_version_and_parameters(client, batch):
    result = client.infer(MODEL, [image_input(batch[:1], True)], model_version="1",
                          parameters={"custom": "ignored", "flag": True})
    assert result.as_numpy("logits")[0].argmax() == ESPRESSO


@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
def test_classification(client, batch, reference, binary_out):
    out = httpclient.InferRequestedOutput("logits", binary_data=binary_out, class_count=3)
    result = client.infer(MODEL, [image_input(batch, True)], outputs=[out])
    classes = result.as_numpy("logits")
    assert classes.shape == (2, 3) and result.get_output("logits")["datatype"] == "BYTES"
    rows = [[(c.decode() if isinstance(c, bytes) else c).split(":") for c in row] for row in classes]
    score, index, label = rows[0][0]
    assert (int(index), label) == (ESPRESSO, "espresso")
    assert float(score) == pytest.approx(float(reference[0, ESPRESSO]), rel=1e-4)
    assert int(rows[1][0][1]) in CAT_CLASSES
    for row, ref in zip(rows, reference):
        assert [int(i) for _, i, _ in row] == list(np.argsort(-ref)[:3])
        scores = [float(s) for s, _, _ in row]
        assert scores == sorted(scores, reverse=True)


def test_sync_client_async_infer(server, batch):
    """The gevent pool sends several requests at once on separate connections."""
    with httpclient.InferenceServerClient(host(server), concurrency=4, network_timeout=120) as c:
        pending = [c.async_infer(MODEL, [image_input(batch[i % 2:i % 2 + 1], True)]) for i in range(8)]
        tops = [p.get_result().as_numpy("logits")[0].argmax() for p in pending]
    assert tops[0::2] == [ESPRESSO] * 4 and all(t in CAT_CLASSES for t in tops[1::2])


# --- compression ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_alg", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_alg", [None, "gzip", "deflate"])
def test_compression(client, batch, reference, request_alg, response_alg):
    result = client.infer(MODEL, [image_input(batch[:1], True)],
                          request_compression_algorithm=request_alg, response_compression_algorithm=response_alg)
    np.testing.assert_allclose(result.as_numpy("logits"), reference[:1], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("alg,decompress", [("gzip", gzip.decompress), ("deflate", zlib.decompress)])
def test_response_is_really_compressed(server, batch, alg, decompress):
    """tritonclient copes with an uncompressed answer too, so check the wire: the body the client unpacks."""
    body = httpclient.InferenceServerClient.generate_request_body(
        [image_input(batch[:1], True)], outputs=[httpclient.InferRequestedOutput("logits", binary_data=True)])
    payload, json_len = body
    r = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=payload, stream=True, timeout=60,
                      headers={"Inference-Header-Content-Length": str(json_len), "Accept-Encoding": alg})
    assert r.status_code == 200 and r.headers["Content-Encoding"] == alg
    raw = decompress(r.raw.read())
    header_len = int(r.headers["Inference-Header-Content-Length"])
    assert len(raw) == header_len + 4000


# --- statistics -------------------------------------------------------------------------------------------------

def _stat(client, **kw) -> dict:
    stats = client.get_inference_statistics(MODEL, **kw)["model_stats"]
    assert len(stats) == 1
    return stats[0]


def test_statistics_count_inference(client, batch):
    before = _stat(client)
    assert before["name"] == MODEL and before["version"] == "1" and before["version"].isdigit()
    for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss"):
        assert set(before["inference_stats"][key]) == {"count", "ns"}
    client.infer(MODEL, [image_input(batch, True)])
    client.infer(MODEL, [image_input(batch[:1], False)])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [image_input(batch[:1, :, :100], True)])
    after = _stat(client, model_version="1")
    assert after["inference_count"] - before["inference_count"] == 3  # rows, not requests
    assert after["execution_count"] - before["execution_count"] == 2
    succ, fail, queue = (after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
                         for k in ("success", "fail", "queue"))
    assert (succ, fail, queue) == (2, 1, 2)
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert after["last_inference"] >= before["last_inference"] and after["last_inference"] > 1.6e12
    everything = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} >= {(MODEL, "1")}


# --- errors -----------------------------------------------------------------------------------------------------

def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_errors_carry_status_and_message(client, batch):
    e = _error(lambda: client.infer("no_such_model", [image_input(batch[:1], True)]))
    assert e.status() == "404" and "no_such_model" in e.message() and "not found" in e.message()
    e = _error(lambda: client.get_model_metadata("no_such_model"))
    assert e.status() == "404" and "no_such_model" in e.message()
    e = _error(lambda: client.infer(MODEL, [image_input(batch[:1], True)], model_version="9"))
    assert e.status() == "404" and "version 9" in e.message()

    e = _error(lambda: client.infer(MODEL, [image_input(batch[:1, :, :, :200], True)]))
    assert e.status() == "400" and "shape [1, 3, 224, 200] does not match the model's [-1, 3, 224, 224]" in e.message()

    ints = httpclient.InferInput("input", [1, 3, 224, 224], "INT32")
    ints.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.int32))
    e = _error(lambda: client.infer(MODEL, [ints]))
    assert e.status() == "400" and "datatype INT32 does not match the model's FP32" in e.message()

    e = _error(lambda: client.infer(MODEL, [image_input(batch[:1], True)],
                                    outputs=[httpclient.InferRequestedOutput("probabilities")]))
    assert e.status() == "400" and "unexpected output 'probabilities'" in e.message()

    big = np.zeros((33, 3, 224, 224), np.float32)
    e = _error(lambda: client.infer(MODEL, [image_input(big, True)]))
    assert e.status() == "400" and "batch size 33 is outside 1..=32" in e.message()

    e = _error(lambda: client.load_model(MODEL))
    assert e.status() == "400" and "not allowed" in e.message()
    assert client.is_server_live() and client.is_model_ready(MODEL)


# --- asyncio client ---------------------------------------------------------------------------------------------

def test_asyncio_client_infer(server, batch, reference):
    async def main():
        async with aioclient.InferenceServerClient(host(server)) as c:
            assert await c.is_server_live() and await c.is_server_ready() and await c.is_model_ready(MODEL)

            def request(i, binary_in, binary_out, **kw):
                inp = aioclient.InferInput("input", [1, 3, 224, 224], "FP32")
                inp.set_data_from_numpy(batch[i % 2:i % 2 + 1], binary_data=binary_in)
                out = aioclient.InferRequestedOutput("logits", binary_data=binary_out)
                return c.infer(MODEL, [inp], outputs=[out], **kw)

            results = await asyncio.gather(*(request(i, i % 3 == 0, i % 4 == 0) for i in range(8)))
            for i, r in enumerate(results):
                np.testing.assert_allclose(r.as_numpy("logits")[0], reference[i % 2], rtol=1e-4, atol=1e-3)
            r = await request(0, True, True, request_compression_algorithm="gzip", response_compression_algorithm="gzip")
            assert r.as_numpy("logits")[0].argmax() == ESPRESSO
            r = await request(0, True, False, request_compression_algorithm="deflate",
                              response_compression_algorithm="deflate")
            assert r.as_numpy("logits")[0].argmax() == ESPRESSO
            with pytest.raises(InferenceServerException) as info:
                await c.infer("no_such_model", [aioclient.InferInput("input", [1], "FP32").set_data_from_numpy(
                    np.zeros(1, np.float32))])
            assert info.value.status() == "404"

    asyncio.run(main())


def test_asyncio_client_metadata(server):
    async def main():
        async with aioclient.InferenceServerClient(host(server)) as c:
            assert "binary_tensor_data" in (await c.get_server_metadata())["extensions"]
            assert (await c.get_model_metadata(MODEL))["inputs"][0]["shape"] == [-1, 3, 224, 224]
            assert (await c.get_model_config(MODEL))["max_batch_size"] == 32
            assert (await c.get_inference_statistics(MODEL))["model_stats"][0]["version"] == "1"
            assert {e["name"] for e in await c.get_model_repository_index()} >= {MODEL}
            with pytest.raises(InferenceServerException) as info:
                await c.get_model_metadata("no_such_model")
            assert info.value.status() == "404" and "no_such_model" in info.value.message()

    asyncio.run(main())


# --- a tiny identity model and every datatype -------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
    """A server of its own over generated models: identity, all_types and bf16."""
    repo = tmp_path_factory.mktemp("toy-repo")
    models.identity(repo)
    models.all_types(repo)
    models.all_types(repo, "bf16", models.BF16)
    with start_server(["--intra-op-threads", "1", "--http-workers", "2"], repo=repo) as s:
        yield s


@pytest.fixture(scope="module")
def toy(toy_server):
    with httpclient.InferenceServerClient(host(toy_server)) as c:
        yield c


def test_identity_model(toy):
    meta = toy.get_model_metadata("identity")
    assert meta["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}]
    config = toy.get_model_config("identity")
    assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == [4]
    rng = np.random.default_rng(7)
    for rows in (1, 3, 8):
        x = rng.standard_normal((rows, 4)).astype(np.float32)
        i = httpclient.InferInput("INPUT0", [rows, 4], "FP32").set_data_from_numpy(x)
        np.testing.assert_array_equal(toy.infer("identity", [i]).as_numpy("OUTPUT0"), x)
    i = httpclient.InferInput("INPUT0", [9, 4], "FP32").set_data_from_numpy(np.zeros((9, 4), np.float32))
    e = _error(lambda: toy.infer("identity", [i]))
    assert e.status() == "400" and "batch size 9 is outside 1..=8" in e.message()


EXTREMES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 255, 7]], np.uint8),
    "UINT16": np.array([[0, 65535, 7]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1, 7]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1, 7]], np.uint64),
    "INT8": np.array([[-128, 127, 0]], np.int8),
    "INT16": np.array([[-32768, 32767, 0]], np.int16),
    "INT32": np.array([[-2**31, 2**31 - 1, 0]], np.int32),
    "INT64": np.array([[-2**63, 2**63 - 1, 0]], np.int64),
    "FP16": np.array([[1.5, -65504, 6e-8]], np.float16),
    "FP32": np.array([[1.5, -3.4028235e38, 1e-45]], np.float32),
    "FP64": np.array([[0.1, -1.7976931348623157e308, 5e-324]], np.float64),
    "BYTES": np.array([["héllo ☕".encode(), b"", b'"quoted"\n\\']], dtype=np.object_),
}


@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
def test_every_datatype_round_trips(toy, binary_in, binary_out):
    assert set(EXTREMES) == set(models.DATATYPES)
    batch = {dt: np.concatenate([v, v[:, ::-1]]) for dt, v in EXTREMES.items()}  # two rows
    inputs = [httpclient.InferInput(f"IN_{dt}", list(v.shape), dt).set_data_from_numpy(v, binary_data=binary_in)
              for dt, v in batch.items()]
    outputs = [httpclient.InferRequestedOutput(f"OUT_{dt}", binary_data=binary_out) for dt in batch]
    result = toy.infer("all_types", inputs, outputs=outputs)
    for dt, sent in batch.items():
        got = result.as_numpy(f"OUT_{dt}")
        assert result.get_output(f"OUT_{dt}")["datatype"] == dt
        assert got.shape == sent.shape, dt
        if dt == "BYTES" and not binary_out:
            # JSON carries strings; the client hands them back as str.
            assert got.tolist() == [[b.decode() for b in row] for row in sent.tolist()]
        else:
            assert got.dtype == sent.dtype, dt
            np.testing.assert_array_equal(got, sent, err_msg=dt)


@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
def test_bf16_round_trips_as_binary(toy, binary_out):
    """BF16 goes in as binary only (tritonclient refuses it in JSON) and comes back either way."""
    x = np.array([[1.5, -2.0, 3.0e38, 1.0e-38]], dtype=ml_dtypes.bfloat16)
    i = httpclient.InferInput("IN_BF16", [1, 4], "BF16").set_data_from_numpy(x)
    result = toy.infer("bf16", [i], outputs=[httpclient.InferRequestedOutput("OUT_BF16", binary_data=binary_out)])
    got = result.as_numpy("OUT_BF16")
    if binary_out:
        assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), x.astype(np.float32))


def test_bf16_json_input_is_accepted(toy_server):
    """The server takes BF16 as JSON numbers too (any client other than tritonclient may send them)."""
    body = {"inputs": [{"name": "IN_BF16", "shape": [1, 3], "datatype": "BF16", "data": [[1.5, -2.0, 0.25]]}]}
    r = requests.post(f"{toy_server.url}/v2/models/bf16/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [1.5, -2.0, 0.25]


@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
def test_non_finite_floats_round_trip(toy, binary_in, binary_out):
    """tritonclient writes and reads NaN/Infinity in JSON (as Triton does); a null would turn inf into nan."""
    x = np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32)
    i = httpclient.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(x, binary_data=binary_in)
    result = toy.infer("identity", [i], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


def test_bytes_that_are_not_utf8_are_a_client_error(toy):
    """ONNX string tensors hold UTF-8: other bytes are the request's fault (400), not the server's."""
    inputs = []
    for dt in models.DATATYPES:
        v = (np.array([[b"\xff\xfe", b"ok"]], dtype=np.object_) if dt == "BYTES"
             else np.zeros((1, 2), triton_to_np_dtype(dt)))
        inputs.append(httpclient.InferInput(f"IN_{dt}", [1, 2], dt).set_data_from_numpy(v))
    e = _error(lambda: toy.infer("all_types", inputs))
    assert e.status() == "400" and "IN_BYTES" in e.message() and "UTF-8" in e.message()


# --- model repository extension (explicit mode) -----------------------------------------------------------------

def _wait(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_repository_index_load_unload(tmp_path):
    models.identity(tmp_path)
    with start_server(["--model-control-mode", "explicit", "--intra-op-threads", "1", "--http-workers", "2"],
                      repo=tmp_path) as s, httpclient.InferenceServerClient(host(s)) as c:
        assert c.get_model_repository_index() == [{"name": "identity", "version": "1", "state": "READY", "reason": ""}]
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        infer = lambda m="identity": c.infer(m, [httpclient.InferInput("INPUT0", [2, 4], "FP32").set_data_from_numpy(x)])

        c.unload_model("identity")
        _wait(lambda: not c.is_model_ready("identity"))
        (entry,) = c.get_model_repository_index()
        assert entry["name"] == "identity" and entry["state"] == "UNAVAILABLE"
        e = _error(infer)
        assert e.status() in ("400", "503") and "identity" in e.message()

        # A model copied into the repository after start-up is loaded on request.
        models.all_types(tmp_path)
        names = {e["name"]: e for e in c.get_model_repository_index()}
        assert names["all_types"]["state"] == "UNAVAILABLE"
        c.load_model("identity")
        c.load_model("all_types")
        assert c.is_model_ready("identity") and c.is_model_ready("all_types")
        np.testing.assert_array_equal(infer().as_numpy("OUTPUT0"), x)
        assert {(e["name"], e["state"]) for e in c.get_model_repository_index()} == {
            ("identity", "READY"), ("all_types", "READY")}
        # Reloading a ready model keeps serving it.
        c.load_model("identity")
        np.testing.assert_array_equal(infer().as_numpy("OUTPUT0"), x)

        c.unload_model("all_types", unload_dependents=True)
        _wait(lambda: not c.is_model_ready("all_types"))
        for path, body in [("index", "5"), ("index", '{"ready": "yes"}'), ("models/identity/load", "[]"),
                           ("models/identity/load", '{"parameters": 1}'),
                           ("models/identity/unload", '{"parameters": {"unload_dependents": 1}}')]:
            r = requests.post(f"{s.url}/v2/repository/{path}", data=body, timeout=10)
            assert r.status_code == 400 and r.json()["error"], (path, body, r.text)
        assert c.is_model_ready("identity")

        e = _error(lambda: c.load_model("no_such_model"))
        assert e.status() in ("400", "404") and "no_such_model" in e.message()
        e = _error(lambda: c.load_model("identity", config='{"max_batch_size": 4}'))
        assert e.status() == "400" and "not supported" in e.message()
        assert c.is_model_ready("identity")
