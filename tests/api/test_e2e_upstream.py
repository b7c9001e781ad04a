"""The end-to-end client checks of test_e2e.py, re-run with `--backend upstream` in front of a second
`codecomplete serve` (the upstream): openai 1.x, Copilot (suffix + extra, panel n=10 with logprobs,
single line), fauxpilot, ivolution, streaming, n=3, stop, echo, logprobs, bad input, fuzz.

Our server builds the FIM prompt and applies stops and trimming; the upstream only generates. The
checks that read the local engine's own counters are replaced by one that follows a cancellation
to the upstream (its engine must see the abort).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from serving import serve_subprocess

from .test_e2e import (  # noqa: F401  (re-collected here, against the server fixture below)
    greedy,
    metric,
    oai,
    test_accepted_edge_values_work_on_the_real_engine,
    test_bad_input_is_4xx_and_the_server_keeps_serving,
    test_best_of_returns_n,
    test_copilot_panel,
    test_copilot_replay,
    test_copilot_single_line,
    test_copilot_token_endpoint,
    test_echo,
    test_engines_base_url,
    test_errors_are_the_right_exceptions,
    test_fauxpilot_extension,
    test_include_usage,
    test_ivolution_plugin,
    test_list_of_prompts,
    test_logit_bias_and_token_id_prompts,
    test_logprobs_are_real,
    test_models_list,
    test_n_choices,
    test_non_streaming,
    test_prompt_longer_than_the_context_keeps_its_end,
    test_random_bodies_never_fail_on_the_real_engine,
    test_seed_makes_sampling_reproducible,
    test_stop_cuts_at_the_first_occurrence,
    test_streaming_gives_the_same_greedy_text,
    test_suffix_reaches_the_model,
    test_tiny_temperatures_never_take_the_server_down,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream(tiny_model_dir):
    with serve_subprocess(tiny_model_dir, "--num-threads", "1", "--served-model-name", "up") as base:
        yield base


@pytest.fixture(scope="module")
def server(tiny_model_dir, upstream):
    args = ["--backend", "upstream", "--upstream-url", upstream + "/v1"]
    with serve_subprocess(tiny_model_dir, *args, "--served-model-name", "tiny", "codegen") as base:
        yield base


def test_health_names_the_upstream(server, upstream):
    h = httpx.get(server + "/health").json()
    assert h["status"] == "ok" and upstream in h["detail"]


def test_closed_streams_abort_on_the_upstream(server, upstream):
    """16 streams closed after their first token: our server counts 16 cancelled requests; each of
    them either had its whole answer from the upstream already (the tiny model can write 200 tokens
    before the close arrives) or had its upstream stream closed, which the upstream's engine aborts
    with at most the step in flight generated after; nothing is left running on either side.
    (tests/api/test_upstream.py checks the close itself deterministically, against a slow fake.)"""
    n = 16
    cancelled = 'codecomplete_completions_total{outcome="cancelled"}'
    names = {
        "ours": (server, cancelled),
        # The upstream saw its client (our server) leave: our backend closed its stream.
        "closed_upstream": (upstream, cancelled),
        "finished_upstream": (server, "codecomplete_engine_requests_finished_total"),
        "after_cancel": (upstream, "codecomplete_engine_tokens_generated_after_cancel_total"),
    }
    before = {k: metric(*v) for k, v in names.items()}
    body = {"prompt": "def f():\n", "max_tokens": 200, "stream": True, "ignore_eos": True}

    async def open_read_first_close(client: httpx.AsyncClient) -> str:
        async with client.stream("POST", server + "/v1/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                return line
        return ""

    async def streams() -> list[str]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*(open_read_first_close(client) for _ in range(n)))

    assert all(line.startswith("data: {") for line in asyncio.run(streams()))
    deadline = time.time() + 15
    while time.time() < deadline:
        got = {k: metric(*v) - before[k] for k, v in names.items()}
        running = metric(upstream, "codecomplete_batch_sequences")
        settled = got["closed_upstream"] + got["finished_upstream"] == n
        if got["ours"] == n and settled and running == 0:
            break
        time.sleep(0.1)
    assert got["ours"] == n and running == 0, got
    assert got["closed_upstream"] + got["finished_upstream"] == n, got
    assert got["after_cancel"] <= n, got
    assert metric(server, "codecomplete_batch_sequences") == 0
