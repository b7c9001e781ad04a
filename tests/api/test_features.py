"""A backend's `unsupported` features are a 400 naming the parameter on every route, never a silent
difference (api/features.py, checked where requests reach the engine)."""

from __future__ import annotations

import pytest

from codecomplete.engine.client import FEATURES

from .conftest import make_client
from .fake_engine import FakeEngine
from .sse_util import assert_openai_error

USES = {
    "token_healing": ({"token_healing": True}, "token_healing"),
    "logprobs": ({"logprobs": 1}, "logprobs"),
    "echo": ({"echo": True}, "echo"),
    "prompt_token_ids": ({"prompt": [1, 2, 3]}, "prompt"),
    "best_of": ({"n": 1, "best_of": 2}, "best_of"),
    "logit_bias": ({"logit_bias": {"5": 1}}, "logit_bias"),
    "top_k": ({"top_k": 3}, "top_k"),
    "seed": ({"seed": 1}, "seed"),
}


def test_every_feature_has_a_request_that_uses_it():
    assert set(USES) == set(FEATURES)


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_an_unsupported_feature_is_a_400_naming_its_parameter(feature):
    engine = FakeEngine()
    engine.unsupported = frozenset({feature})
    fields, param = USES[feature]
    with make_client(engine) as c:
        for path in ("/v1/completions", "/v1/engines/copilot-codex/completions"):
            r = c.post(path, json={"prompt": "def f():", "max_tokens": 2, **fields})
            err = assert_openai_error(r, 400, param=param)
            assert err["code"] == "unsupported_parameter"
        # everything else still works on this backend
        ok = c.post("/v1/completions", json={"prompt": "def f():", "max_tokens": 2, "n": 2, "stop": ["\n"]})
        assert ok.status_code == 200 and len(ok.json()["choices"]) == 2
        assert c.post("/autocomplete", json={"text": "import os\n"}).status_code == 200
