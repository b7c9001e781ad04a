"""300+ hostile requests across every route of the real server (tiny model, max_tokens <= 2): each
is a 200 or a 4xx in the OpenAI error shape, never a 5xx, and /health answers 200 after each.

The strategies and the driver are in hostile.py, for routes added later to reuse.
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from serving import serve_subprocess

from .hostile import body_strategy, fire, json_values, path_segments, raw_body_strategy

pytestmark = pytest.mark.slow

COMPLETION_FIELDS = [
    "model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options",
    "logprobs", "echo", "stop", "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "seed",
    "user", "extra", "top_k", "ignore_eos", "token_healing",
]  # fmt: skip

PLAUSIBLE = {
    "prompt": st.one_of(
        st.text(max_size=60),
        st.lists(st.integers(0, 600), min_size=1, max_size=8),
        st.lists(st.text(max_size=20), min_size=1, max_size=3),
    ),
    "suffix": st.text(max_size=40),
    "max_tokens": st.integers(0, 2),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(0, 10**9),
    "n": st.integers(1, 3),
    "best_of": st.integers(1, 4),
    "logprobs": st.integers(0, 5),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "echo": st.booleans(),
    "stop": st.one_of(st.text(min_size=1, max_size=5), st.lists(st.text(min_size=1, max_size=5), max_size=4)),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "logit_bias": st.dictionaries(st.integers(0, 600).map(str), st.floats(-100, 100), max_size=4),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "extra": st.fixed_dictionaries(
        {
            "trim_by_indentation": st.booleans(),
            "next_indent": st.integers(0, 100),
            "language": st.text(max_size=10),
        }
    ),
}
CLAMP = {"max_tokens": 2, "n": 4, "best_of": 4}


def completion_bodies():
    return body_strategy(COMPLETION_FIELDS, base={"max_tokens": 1}, plausible=PLAUSIBLE, clamp=CLAMP)


def autocomplete_bodies():
    return body_strategy(
        ["text", "n", "max_tokens", "temperature", "top_p"],
        base={"text": "def f(x):\n    ", "max_tokens": 1, "n": 1},
        plausible={
            "text": st.text(max_size=60),
            "n": st.integers(1, 3),
            "max_tokens": st.integers(1, 2),
            "temperature": st.floats(0, 2),
            "top_p": st.floats(0, 1),
        },  # fmt: skip
        clamp={"max_tokens": 2, "n": 3},
    )


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with serve_subprocess(
        tiny_model_dir, "--served-model-name", "tiny", "codegen", "--num-threads", "1", "--max-n", "4"
    ) as base:
        yield base


def test_completions_bodies(server):
    seen = fire(server, "/v1/completions", completion_bodies(), n=120)
    assert seen[200] and sum(v for k, v in seen.items() if 400 <= k < 500)  # both sides reached


def test_completion_routes_without_v1_and_with_an_engine(server):
    seen = fire(server, "/completions", completion_bodies(), n=25)
    seen += fire(server, "/v1/engines/{}/completions", st.tuples(path_segments(), completion_bodies()), n=25)
    seen += fire(server, "/engines/{}/completions", st.tuples(path_segments(), completion_bodies()), n=15)
    assert seen[200]


def test_raw_bodies(server):
    fire(server, "/v1/completions", raw_body_strategy(), n=40)
    fire(server, "/autocomplete", raw_body_strategy(), n=15)


def test_autocomplete_bodies(server):
    seen = fire(server, "/autocomplete", autocomplete_bodies(), n=60)
    assert seen[200]


def test_get_routes(server):
    fire(server, "/v1/models/{}", path_segments(), n=15, method="GET")
    fire(server, "/models/{}", path_segments(), n=5, method="GET")
    fire(server, "/v1/engines/{}", path_segments(), n=15, method="GET")
    fire(server, "/engines/{}", path_segments(), n=5, method="GET")
    fire(server, "/copilot_internal/v2/token?{}", path_segments(), n=10, method="GET")
    # GET routes with a body, POST routes with GET, and JSON where none is expected.
    fire(server, "/v1/models", body_strategy(["x"]), n=5, method="GET")
    fire(server, "/v1/models", json_values().filter(lambda v: isinstance(v, dict)), n=5, method="POST")
