"""Every numeric field is safe: NaN, Infinity, overflowing floats and integers of thousands of digits
are a 400 that names the field they were sent in, on every route that reads numbers."""

from __future__ import annotations

import pytest

from codecomplete.api.autocomplete.protocol import AutocompleteRequest
from codecomplete.api.completions.protocol import CompletionRequest

from .conftest import make_client
from .sse_util import assert_openai_error

NOT_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000, b"-" + b"9" * 5000]


def numeric_fields(model) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        text = str(field.annotation)
        if "int" in text or "float" in text:
            out.append(name)
    return out


@pytest.fixture(scope="module")
def client():
    with make_client() as c:
        yield c


def test_the_field_lists_are_not_empty():
    # A refactor that changed annotations must not make the tests below vacuous.
    assert {"temperature", "top_p", "max_tokens", "n", "seed", "top_k", "logprobs"} <= set(
        numeric_fields(CompletionRequest)
    )
    assert {"temperature", "top_p", "n", "max_tokens"} <= set(numeric_fields(AutocompleteRequest))


@pytest.mark.parametrize("number", NOT_FINITE, ids=lambda b: b[:12].decode())
@pytest.mark.parametrize(
    ("route", "field"),
    [("/v1/completions", f) for f in numeric_fields(CompletionRequest)]
    + [("/autocomplete", f) for f in numeric_fields(AutocompleteRequest)],
)
def test_not_finite_numbers_name_the_field(client, route, field, number):
    raw = b'{"prompt": "a", "text": "a", "max_tokens": 1, "' + field.encode() + b'": ' + number + b"}"
    err = assert_openai_error(
        client.post(route, content=raw, headers={"content-type": "application/json"}), 400
    )
    assert err["param"] == field, err
    assert field in err["message"] and "finite" in err["message"], err


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"prompt": "a", "logit_bias": {"5": NaN}}', "logit_bias.5"),
        (b'{"prompt": "a", "extra": {"next_indent": Infinity}}', "extra.next_indent"),
        (b'{"prompt": [1, 2, 1e999]}', "prompt.2"),
        (b'{"prompt": "a", "copilot_extra_we_ignore": NaN}', "copilot_extra_we_ignore"),
        (b"[NaN]", "0"),
    ],
)
def test_nested_not_finite_numbers_name_their_path(client, raw, param):
    r = client.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert assert_openai_error(r, 400)["param"] == param


@pytest.mark.parametrize(
    ("field", "value"),
    [("top_k", 2**40), ("top_k", 10**400), ("temperature", 10**400), ("top_p", -(10**400)), ("seed", 2**64)],
)
def test_integers_too_large_for_the_field_are_400(client, field, value):
    r = client.post("/v1/completions", json={"prompt": "a", "max_tokens": 1, field: value})
    assert assert_openai_error(r, 400)["param"] == field


def test_large_but_valid_values_are_accepted(client):
    r = client.post(
        "/v1/completions",
        json={"prompt": "a", "max_tokens": 1, "top_k": 2**31 - 1, "temperature": 5e-324, "seed": -(2**63)},
    )
    assert r.status_code == 200, r.text
