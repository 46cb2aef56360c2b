"""End-to-end behaviour of the server with the real EfficientNet-Lite0 and real photos: image predictions,
V2 inference that agrees with them, limits, and every bad-input case with its status and body."""
from __future__ import annotations

import base64
import gzip
import io
import json
import signal
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from conftest import PHOTOS, ROOT, corrupt_jpeg, photo, photo_tensor, start_server

MODEL = "efficientnet_lite0"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


def predict(server, body: bytes, content_type: str = "image/png", **params):
    return requests.post(f"{server.url}/v1/models/{MODEL}:predict", data=body,
                         headers={"Content-Type": content_type}, params=params, timeout=30)


@pytest.mark.parametrize("name,expected", [
    ("chelsea.png", CATS),
    ("coffee.png", {"espresso"}),
    ("motorcycle_left.png", {"moped", "motor scooter"}),
])
def test_photos_are_classified(server, name, expected):
    r = predict(server, photo(name))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == MODEL and body["model_version"] == "1"
    top = body["predictions"][0]
    assert len(top) == 5
    assert top[0]["label"] in expected, top
    assert 0 < top[0]["score"] <= 1 and top[0]["score"] >= top[1]["score"]


def test_top_k_multipart_and_b64(server):
    r = predict(server, photo("coffee.png"), top_k=2)
    assert [p["label"] for p in r.json()["predictions"][0]][:1] == ["espresso"]
    assert len(r.json()["predictions"][0]) == 2

    files = [("images", ("a.png", photo("chelsea.png"), "image/png")),
             ("images", ("b.png", photo("coffee.png"), "image/png"))]
    r = requests.post(f"{server.url}/v1/models/{MODEL}:predict", files=files, timeout=30)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert preds[0][0]["label"] in CATS and preds[1][0]["label"] == "espresso"

    body = {"instances": [{"b64": base64.b64encode(photo("motorcycle_left.png")).decode()}]}
    r = requests.post(f"{server.url}/v1/models/{MODEL}:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0][0]["label"] in {"moped", "motor scooter"}


def test_formats_and_modes(server):
    img = Image.open(PHOTOS / "chelsea.png").convert("RGB")
    variants = {}
    for fmt, ctype in [("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("TIFF", "image/tiff"), ("GIF", "image/gif")]:
        buf = io.BytesIO()
        img.save(buf, fmt)
        variants[fmt] = (buf.getvalue(), ctype)
    for mode in ["L", "RGBA", "P"]:
        buf = io.BytesIO()
        img.convert(mode).save(buf, "PNG")
        variants[mode] = (buf.getvalue(), "image/png")
    buf = io.BytesIO()
    Image.fromarray((np.asarray(img.convert("L"), dtype=np.uint16) * 257)).save(buf, "PNG")
    variants["I;16"] = (buf.getvalue(), "image/png")
    # A photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view).
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", exif=exif)
    variants["exif"] = (buf.getvalue(), "image/jpeg")
    for key, (data, ctype) in variants.items():
        r = predict(server, data, ctype)
        assert r.status_code == 200, (key, r.text)
        assert r.json()["predictions"][0][0]["label"] in CATS, (key, r.json()["predictions"][0][:2])


def v2_infer(server, tensor: np.ndarray, **extra):
    body = {"inputs": [{"name": "input", "shape": list(tensor.shape), "datatype": "FP32",
                        "data": tensor.flatten().tolist()}], **extra}
    return requests.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=30)


def test_v2_infer_agrees_with_the_image_endpoint(server):
    labels = (ROOT / "model-repo" / MODEL / "labels.txt").read_text().splitlines()
    for name in ["chelsea.png", "coffee.png"]:
        tensor = photo_tensor(name)
        r = v2_infer(server, tensor)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["name"] == "logits" and out["shape"] == [1, 1000] and out["datatype"] == "FP32"
        argmax = int(np.argmax(out["data"]))
        image_top = predict(server, photo(name)).json()["predictions"][0][0]
        assert argmax == image_top["index"] and labels[argmax] == image_top["label"]


def test_v2_binary_and_gzip_and_classification(server):
    tensor = np.concatenate([photo_tensor("coffee.png"), photo_tensor("chelsea.png")])
    header = json.dumps({"inputs": [{"name": "input", "shape": [2, 3, 224, 224], "datatype": "FP32",
                                     "parameters": {"binary_data_size": tensor.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    r = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=header + tensor.tobytes(),
                      headers={"Inference-Header-Content-Length": str(len(header)),
                               "Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:n])
    logits = np.frombuffer(r.content[n:], dtype=np.float32).reshape(2, 1000)
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 8000
    assert list(np.argmax(logits, axis=1))[0] == 967

    body = gzip.compress(json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                                 "data": photo_tensor("coffee.png").flatten().tolist()}],
                                     "outputs": [{"name": "logits", "parameters": {"classification": 3}}]}).encode())
    r = requests.post(f"{server.url}/v2/models/{MODEL}/infer", data=body,
                      headers={"Content-Encoding": "gzip", "Content-Type": "application/json",
                               "Accept-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("content-encoding") == "gzip"
    out = r.json()["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 3]
    assert out["data"][0].endswith(":967:espresso"), out["data"]


def test_metadata_health_and_metrics(server):
    assert requests.get(server.url + "/v2/health/live").status_code == 200
    assert requests.get(server.url + "/v2/health/ready").status_code == 200
    assert requests.get(f"{server.url}/v2/models/{MODEL}/ready").status_code == 200
    assert requests.get(f"{server.url}/v2/models/{MODEL}/versions/1/ready").status_code == 200
    meta = requests.get(f"{server.url}/v2/models/{MODEL}").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["parameters"]["execution_provider"] == "cpu"
    config = requests.get(f"{server.url}/v2/models/{MODEL}/config").json()
    assert config["max_batch_size"] > 0 and config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == [3, 224, 224]
    predict(server, photo("coffee.png"))
    text = requests.get(server.url + "/metrics").text
    for name in ["oxinfer_requests_total", "oxinfer_request_duration_seconds_bucket", "oxinfer_compute_duration_seconds_bucket",
                 "oxinfer_queue_duration_seconds_bucket", "oxinfer_inflight_requests", "oxinfer_batch_size_bucket",
                 'oxinfer_execution_provider{model="efficientnet_lite0",version="1",provider="cpu"} 1',
                 "process_resident_memory_bytes", "oxinfer_model_load_duration_seconds"]:
        assert name in text, name
    assert 'endpoint="predict"' in text and 'status="200"' in text


BAD = [
    # (method, path, kwargs, status, fragment of the error)
    ("get", f"/v2/models/nope", {}, 404, "model 'nope' is not found"),
    ("get", f"/v2/models/{MODEL}/versions/7", {}, 404, "version 7 of model 'efficientnet_lite0' is not loaded"),
    ("post", "/v1/models/nope:predict", {"data": b"x", "headers": {"Content-Type": "image/png"}}, 404, "not found"),
    ("post", f"/v1/models/{MODEL}:predict", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "not supported"),
    ("post", f"/v1/models/{MODEL}:predict", {"data": b"not an image at all", "headers": {"Content-Type": "image/png"}}, 400, "not recognised"),
    ("post", f"/v1/models/{MODEL}:predict", {"data": b"", "headers": {"Content-Type": "image/png"}}, 400, ""),
    ("post", f"/v1/models/{MODEL}:predict", {"data": corrupt_jpeg(), "headers": {"Content-Type": "image/jpeg"}}, 400, "could not be decoded"),
    ("post", f"/v1/models/{MODEL}:predict?top_k=0", {"data": b"x", "headers": {"Content-Type": "image/png"}}, 400, "top_k"),
    ("post", f"/v1/models/{MODEL}:predict", {"json": {"instances": [{"b64": "%%%"}]}}, 400, "base64"),
    ("post", f"/v1/models/{MODEL}:predict", {"json": {"nope": 1}}, 400, "instances"),
    ("post", f"/v1/models/{MODEL}:predict", {"data": b'{"note": "\xff", "instances": []}', "headers": {"Content-Type": "application/json"}}, 400, "not valid UTF-8 (at byte 10)"),
    ("post", f"/v2/models/{MODEL}/infer", {"data": b'{"note": "\xff", "inputs": []}'}, 400, "not valid UTF-8 (at byte 10)"),
    ("post", f"/v2/models/{MODEL}/infer", {"data": b"{not json"}, 400, "request JSON is invalid"),
    ("post", f"/v2/models/{MODEL}/infer", {"json": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}}, 400, "unexpected input 'x'"),
    ("post", f"/v2/models/{MODEL}/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "INT8", "data": [1]}]}}, 400, "datatype INT8 does not match"),
    ("post", f"/v2/models/{MODEL}/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 3, 224, 223], "datatype": "FP32", "data": [1]}]}}, 400, "does not match the model's [-1, 3, 224, 224]"),
    ("post", f"/v2/models/{MODEL}/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [1, 2]}]}}, 400, "holds 2 elements but the shape needs 150528"),
    ("post", f"/v2/models/{MODEL}/infer", {"json": {"inputs": [{"name": "input", "shape": [1000, 3, 224, 224], "datatype": "FP32", "data": []}]}}, 400, "batch size 1000 is outside"),
    ("post", f"/v2/models/{MODEL}/infer", {"data": b'{"inputs":[{"name":"input","shape":[1,3,224,224],"datatype":"FP32","parameters":{"binary_data_size":602112}}]}', "headers": {"Inference-Header-Content-Length": "98"}}, 400, ""),
    ("post", f"/v2/models/{MODEL}/infer", {"data": b"{}", "headers": {"Inference-Header-Content-Length": "x"}}, 400, "Inference-Header-Content-Length"),
    ("post", f"/v2/models/{MODEL}/infer", {"data": b"{}", "headers": {"Content-Encoding": "br"}}, 415, "Content-Encoding"),
    ("post", f"/v2/models/{MODEL}/infer", {"data": b"\x1f\x8b\x08garbage", "headers": {"Content-Encoding": "gzip"}}, 400, ""),
    ("delete", "/v2/health/ready", {}, 405, "Method Not Allowed"),
    ("get", "/v3/anything", {}, 404, "Not Found"),
    ("post", f"/v2/repository/models/{MODEL}/load", {}, 400, "not allowed in model control mode 'none'"),
]


@pytest.mark.parametrize("method,path,kwargs,status,fragment", BAD, ids=[f"{b[3]}:{b[1][:40]}:{b[4][:20]}" for b in BAD])
def test_bad_input_gets_a_clear_4xx(server, method, path, kwargs, status, fragment):
    r = getattr(requests, method)(server.url + path, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert fragment in r.json()["error"], r.json()


def test_limits_are_enforced_before_work():
    with start_server(["--max-body-bytes", "100000", "--max-image-pixels", "10000", "--max-images-per-request", "2"]) as s:
        # Declared length over the limit: refused without reading the body.
        r = predict(s, b"\0" * 200_000, "image/png")
        assert r.status_code == 413 and "exceeds the limit of 100000" in r.json()["error"]
        # A chunked body over the limit is cut off while reading.
        r = requests.post(f"{s.url}/v1/models/{MODEL}:predict", data=iter([b"\0" * 60_000] * 3),
                          headers={"Content-Type": "image/png"}, timeout=30)
        assert r.status_code == 413, r.text
        # A gzip bomb is counted after inflation.
        bomb = gzip.compress(b" " * 1_000_000)
        r = requests.post(f"{s.url}/v2/models/{MODEL}/infer", data=bomb, headers={"Content-Encoding": "gzip"}, timeout=30)
        assert r.status_code == 413, r.text
        # Pixel limit from the header: 128x128 = 16384 > 10000.
        buf = io.BytesIO()
        Image.new("RGB", (128, 128)).save(buf, "PNG")
        r = predict(s, buf.getvalue())
        assert r.status_code == 400 and "over the limit of 10000" in r.json()["error"], r.text
        r = requests.post(f"{s.url}/v1/models/{MODEL}:predict",
                          files=[("i", ("a.png", photo("coffee.png")[:10], "image/png"))] * 3, timeout=30)
        assert r.status_code == 400 and "images per request" in r.json()["error"], r.text
        assert requests.get(s.url + "/v2/health/live").status_code == 200


def test_unknown_config_key_stops_start_up(tmp_path):
    cfg = tmp_path / "oxinfer.toml"
    cfg.write_text("prot = 9000\n")
    with pytest.raises(RuntimeError, match="prot"):
        with start_server(["--config", str(cfg)], timeout=10):
            pass


def test_sigterm_drains_in_flight_requests():
    with start_server() as s:
        results = []

        def send():
            results.append(predict(s, photo("coffee.png")).status_code)

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
        for t in threads:
            t.join()
        assert s.proc.wait(timeout=40) == 0
        # Requests that reached the server before the signal complete; none fails with a 5xx.
        assert results and all(code == 200 for code in results if code), results
        assert "draining" in s.logs()


def test_stalled_body_gets_408_and_image_budget_gets_503():
    import socket

    with start_server(["--body-timeout-secs", "1", "--max-inflight-images", "2"]) as s:
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"POST /v2/models/efficientnet_lite0/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        sock.settimeout(10)
        reply = sock.recv(4096).decode(errors="replace")
        sock.close()
        assert reply.startswith("HTTP/1.1 408"), reply
        assert '"error":"request body not received within 1 s"' in reply, reply
        files = [("i", (f"{i}.png", photo("coffee.png"), "image/png")) for i in range(3)]
        r = requests.post(f"{s.url}/v1/models/{MODEL}:predict", files=files, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "too many images in flight (limit 2)" in r.json()["error"]
        assert predict(s, photo("coffee.png")).json()["predictions"][0][0]["label"] == "espresso"


def test_unknown_names_leave_no_trace_in_explicit_mode():
    with start_server(["--model-control-mode", "explicit"]) as s:
        r = requests.post(f"{s.url}/v2/repository/models/made-up/load", timeout=30)
        assert r.status_code == 404 and "not in the repository" in r.json()["error"]
        assert requests.post(f"{s.url}/v2/repository/models/made-up/unload", timeout=30).status_code == 200
        names = {e["name"] for e in requests.post(f"{s.url}/v2/repository/index", timeout=30).json()}
        assert "made-up" not in names and MODEL in names
        assert 'model="made-up"' not in requests.get(f"{s.url}/metrics", timeout=30).text
        r = requests.post(f"{s.url}/v2/models/made-up/infer", json={"inputs": []}, timeout=30)
        assert r.status_code == 404, r.text


def test_labels_must_match_the_classes(tmp_path):
    import shutil

    src = ROOT / "model-repo" / MODEL
    dst = tmp_path / "repo" / "m"
    (dst / "1").mkdir(parents=True)
    (dst / "1" / "model.onnx").hardlink_to(src / "1" / "model.onnx")
    shutil.copy(src / "config.toml", dst / "config.toml")
    (dst / "labels.txt").write_text("a\nb\nc\n")
    with start_server(["--model-control-mode", "explicit"], repo=tmp_path / "repo", wait_ready=False) as s:
        for _ in range(400):
            try:
                entries = requests.post(f"{s.url}/v2/repository/index", timeout=5).json()
                entry = next((e for e in entries if e.get("version") == "1"), None)
                if entry and entry["reason"]:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        assert "labels 'logits' has 3 lines but output 'logits' has 1000 classes" in entry["reason"], entry
