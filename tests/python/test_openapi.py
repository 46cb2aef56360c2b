"""The server against its own OpenAPI description (/openapi.json), checked by schemathesis: generated requests,
valid and not, must get documented statuses, content types and bodies, never a 5xx. The server runs in explicit
mode over the generated identity model, so load and unload are real operations and every inference is cheap."""
from __future__ import annotations

import itertools

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import models
from conftest import start_server


@pytest.fixture(scope="module")
def openapi_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("openapi-repo")
    models.identity(repo)
    with start_server(["--model-control-mode", "explicit", "--intra-op-threads", "1", "--http-workers", "2"],
                      repo=repo) as s:
        yield s


@pytest.fixture(scope="module")
def api_schema(openapi_server):
    return schemathesis.openapi.from_url(f"{openapi_server.url}/openapi.json")


def operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


# schemathesis' own pytest loader (`from_fixture`) needs a private pytest attribute that pytest 9 removed, so each
# operation runs as a Hypothesis test here, and every failure is collected before the test fails.
def test_server_answers_as_described(api_schema, openapi_server):
    failures = []
    for operation, mode in itertools.product(operations(api_schema), GenerationMode):
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate()

        try:
            check()
        except Unsatisfiable:
            pass  # nothing in this operation can be made invalid (no parameters, free-form strings only)
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - schemathesis' FailureGroup is a BaseExceptionGroup
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value} data): {e}")
    assert openapi_server.proc.poll() is None, "the server died"
    assert not failures, "\n\n".join(failures)


def test_schema_lists_the_protocol(api_schema, openapi_server):
    paths = set(api_schema.raw_schema["paths"])
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model}", "/v2/models/{model}/config",
                 "/v2/models/{model}/infer", "/v2/models/{model}/stats", "/v2/repository/index"):
        assert path in paths
    assert openapi_server.proc.poll() is None


def test_undeclared_methods_are_405_with_allow(api_schema, openapi_server):
    for path, item in api_schema.raw_schema["paths"].items():
        declared = {m.upper() for m in item}
        url = openapi_server.url + path.replace("{model}", "identity").replace("{version}", "1").replace(
            "{target}", "identity:predict")
        r = requests.request("PUT" if "PUT" not in declared else "DELETE", url, timeout=10)
        assert r.status_code == 405 and r.json()["error"], (path, r.status_code, r.text)
        assert declared <= {m.strip() for m in r.headers.get("Allow", "").split(",")}, (path, r.headers)


def test_query_errors_are_json(openapi_server):
    """Found by schemathesis (ST105): actix's own extractor errors were text/plain."""
    r = requests.post(f"{openapi_server.url}/v1/models/identity:predict?top_k=1&top_k=2", data=b"x",
                      headers={"Content-Type": "image/png"}, timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json"), r.text
    assert r.json()["error"]
