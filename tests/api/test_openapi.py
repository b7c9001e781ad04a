"""/openapi.json describes every body and response, and a schema-driven fuzz run (schemathesis,
bounded) finds no 5xx and only OpenAI-shaped errors.

The fuzz run drives the real HTTP stack (uvicorn on loopback) over the scripted FakeEngine: it
tests the API layer, which is what the document describes.
"""

from __future__ import annotations

import httpx
import pytest

from codecomplete.api import build_app

from .conftest import ServerThread, free_port_number, make_client, settings
from .fake_engine import FakeEngine

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[dev]' (schemathesis)")
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

COMPLETION_ROUTES = ("/v1/completions", "/v1/engines/{engine}/completions")


@pytest.fixture(scope="module")
def doc() -> dict:
    with make_client() as c:
        return c.get("/openapi.json").json()


def _schema(doc: dict, ref: dict) -> dict:
    name = ref["$ref"].rsplit("/", 1)[-1]
    return doc["components"]["schemas"][name]


def _body(doc: dict, path: str) -> dict:
    content = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return _schema(doc, content["schema"])


def _ok(doc: dict, path: str) -> dict:
    content = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
    return _schema(doc, content["schema"])


@pytest.mark.parametrize("path", COMPLETION_ROUTES)
def test_completion_routes_declare_their_bodies(doc, path):
    body = _body(doc, path)
    fields = set(body["properties"])
    assert {
        "model",
        "prompt",
        "suffix",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stop",
    } <= fields
    assert {"logprobs", "echo", "best_of", "extra", "token_healing", "debug"} <= fields
    assert body.get("examples"), "an example /docs can send"
    response = _ok(doc, path)
    assert {"id", "object", "created", "model", "choices", "usage"} <= set(response["properties"])
    op = doc["paths"][path]["post"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    for status in ("400", "413", "429", "503", "4XX"):
        ref = op["responses"][status]["content"]["application/json"]["schema"]
        assert set(_schema(doc, ref)["properties"]) == {"error"}


def test_autocomplete_declares_its_body(doc):
    assert _body(doc, "/autocomplete")["required"] == ["text"]
    assert set(_ok(doc, "/autocomplete")["properties"]) == {"result"}


def test_no_422_anywhere(doc):
    """Validation errors are 400 in the OpenAI shape: the document must not promise FastAPI's 422."""
    for item in doc["paths"].values():
        for op in item.values():
            assert "422" not in op.get("responses", {})
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/engines/some-engine/completions", "/autocomplete"])
def test_the_documented_example_works(doc, path):
    """What /docs's "Try it out" sends (the first example) gets a real answer."""
    template = path if path != "/v1/engines/some-engine/completions" else "/v1/engines/{engine}/completions"
    example = _body(doc, template)["examples"][0]
    with make_client() as c:
        r = c.post(path, json=example)
    assert r.status_code == 200, r.text
    assert ("choices" in r.json()) if "completions" in path else r.json()["result"]


# --- the fuzz run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema():
    with ServerThread(build_app(settings(), FakeEngine()), free_port_number()) as srv:
        yield schemathesis.openapi.from_url(srv.base + "/openapi.json")


# Routes of the OpenAI-style API, whose errors are all `{"error": {message, type, param, code}}`.
# Routes of other protocols (Ollama, Tabby, ...) answer in their own shape, which their OpenAPI
# responses declare (response_schema_conformance checks it).
OPENAI_SHAPED = ("/v1/", "/autocomplete", "/playground/", "/copilot_internal/")
TABBY_PATHS = ("/v1/events", "/v1/health")  # Tabby's routes under /v1/: plain-text errors, as Tabby's server


def _assert_openai_error(response, path: str) -> None:
    if response.status_code < 400 or not path.startswith(OPENAI_SHAPED) or path in TABBY_PATHS:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert set(err) == {"message", "type", "param", "code"}


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25  # per operation and mode: the whole run stays within tens of seconds


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzz_openapi(api_schema, mode):
    """Schema-driven cases for every operation in /openapi.json: never a 5xx, every status and
    body as the document says, every error in the OpenAI shape. (positive_data_acceptance is left
    out: limits that depend on the server's flags or on several fields, such as n <= --max-n or
    best_of >= n, are 400s that a JSON schema cannot express.)"""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/completions", "POST /v1/engines/{engine}/completions", "POST /autocomplete"} <= labels
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @hsettings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case):
            response = case.call(timeout=30)
            case.validate_response(response, checks=CHECKS)
            _assert_openai_error(response, case.operation.path)

        try:
            run()
        except Unsatisfiable:
            # GET /health and the like: nothing to make invalid (no body, no parameters).
            assert mode == GenerationMode.NEGATIVE, operation.label
    r = httpx.post(
        api_schema.get_base_url() + "/v1/completions", json={"prompt": "still there?", "max_tokens": 2}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["text"]
