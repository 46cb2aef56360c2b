"""Random damage to binary-tensor requests, sent to the real server over HTTP: every broken body, header length or
truncation must be a 400 with {"error": ...}, never a 5xx, a hang or a crash. The Rust property tests cover the
parser alone; this covers it behind actix, body reading and the scheduler."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import models
from conftest import start_server

HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("fuzz-repo")
    models.identity(repo)
    models.all_types(repo)
    with start_server(["--intra-op-threads", "1", "--http-workers", "2"], repo=repo) as s:
        with requests.Session() as session:
            yield s, session


def identity_request(rows: int, values: list[float]) -> tuple[bytes, int]:
    """A valid binary request for the identity model: JSON header, then rows x 4 FP32."""
    header = json.dumps({"inputs": [{"name": "INPUT0", "shape": [rows, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16 * rows}}],
                         "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    return header + struct.pack(f"<{4 * rows}f", *values), len(header)


def post(fuzz_server, model: str, body: bytes, header_length: str | None):
    server, session = fuzz_server
    headers = {"Content-Type": "application/octet-stream"}
    if header_length is not None:
        headers[HEADER] = header_length
    return session.post(f"{server.url}/v2/models/{model}/infer", data=body, headers=headers, timeout=30)


def assert_client_error(r):
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error, str) and error


rows = st.integers(min_value=1, max_value=8)
floats = st.floats(width=32, allow_nan=False)


@st.composite
def damaged_identity_requests(draw):
    """A valid request with at least one change that must make it invalid."""
    n = draw(rows)
    body, json_len = identity_request(n, draw(st.lists(floats, min_size=4 * n, max_size=4 * n)))
    header_length: str | None = str(json_len)
    kind = draw(st.sampled_from(["truncate", "extend", "length", "garbage-length", "size", "shape", "datatype",
                                 "json-bytes", "no-length"]))
    if kind == "truncate":
        body = body[:draw(st.integers(min_value=0, max_value=len(body) - 1))]
    elif kind == "extend":
        body += draw(st.binary(min_size=1, max_size=64))
    elif kind == "length":
        # 0 would mean a raw body, which can be valid for this one-input model; it is fuzzed on its own below.
        header_length = str(draw(st.integers(min_value=1, max_value=len(body) + 64).filter(lambda m: m != json_len)))
    elif kind == "garbage-length":
        header_length = draw(st.sampled_from(["", "-1", "abc", "1e3", "0x10", "18446744073709551616", f"{json_len}.0"]))
    elif kind in ("size", "shape", "datatype"):
        header = json.loads(body[:json_len])
        tensor = header["inputs"][0]
        if kind == "size":
            tensor["parameters"]["binary_data_size"] = draw(
                st.one_of(st.integers(min_value=-2**63, max_value=2**64 - 1).filter(lambda s: s != 16 * n),
                          st.floats(allow_nan=False), st.text(max_size=4), st.none()))
        elif kind == "shape":
            tensor["shape"] = draw(st.lists(st.integers(min_value=-2, max_value=10), max_size=4)
                                   .filter(lambda s: s != [n, 4]))
        else:
            tensor["datatype"] = draw(st.sampled_from(["FP16", "FP64", "INT32", "BYTES", "BF16", "fp32", "", "FLOAT"]))
        new_header = json.dumps(header).encode()
        body = new_header + body[json_len:]
        header_length = str(len(new_header))
    elif kind == "json-bytes":
        # One changed byte inside the input's description: broken JSON, or a header that no longer fits the tail.
        end = body.index(b', "outputs"')
        i = draw(st.integers(min_value=0, max_value=end - 1))
        new = draw(st.sampled_from(b'{}[]":,0123456789-\x00\xff').filter(lambda c: c != body[i]))
        body = body[:i] + bytes([new]) + body[i + 1:]
    else:  # no length header: the whole body must then be JSON, and the binary tail is not
        header_length = None
    return body, header_length


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged_identity_requests())
def test_damaged_binary_requests_are_400(fuzz_server, case):
    body, header_length = case
    assert_client_error(post(fuzz_server, "identity", body, header_length))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300).filter(lambda b: not b.lstrip().startswith(b"{")),
       header_length=st.one_of(st.none(), st.integers(min_value=0, max_value=400).map(str)))
def test_random_bodies_are_400(fuzz_server, body, header_length):
    """Bytes that are no JSON object, to a model with many inputs (so a raw body is never valid either)."""
    assert_client_error(post(fuzz_server, "all_types", body, header_length))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(min_value=0, max_value=200).filter(lambda n: n == 0 or n % 16 or n > 128))
def test_raw_bodies_of_the_wrong_size_are_400(fuzz_server, size):
    """Inference-Header-Content-Length: 0 takes whole rows of 16 bytes, at most max_batch_size (8) of them."""
    assert_client_error(post(fuzz_server, "identity", bytes(size), "0"))


def test_server_survives_and_still_answers(fuzz_server):
    server, session = fuzz_server
    assert session.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
    values = list(np.arange(8, dtype=np.float32))
    body, json_len = identity_request(2, values)
    r = post(fuzz_server, "identity", body, str(json_len))
    assert r.status_code == 200, r.text
    n = int(r.headers[HEADER])
    assert np.frombuffer(r.content[n:], np.float32).tolist() == values
    r = post(fuzz_server, "identity", struct.pack("<8f", *values), "0")
    assert r.status_code == 200 and np.frombuffer(r.content[int(r.headers[HEADER]):], np.float32).tolist() == values
    assert server.proc.poll() is None
