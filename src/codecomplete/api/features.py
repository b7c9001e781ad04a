"""Request features a backend cannot honour (EngineClient.unsupported) -> a 400 naming the parameter.

Checked once, where every route hands its GenerationRequests to the engine (api/streams.py), so a
route added later cannot forget it: a request that would get a silently different answer from
this backend (token healing on an upstream that hides its logits, best_of on vLLM v1) is refused.
"""

from __future__ import annotations

from codecomplete.api.errors import APIError
from codecomplete.engine.client import EngineClient
from codecomplete.engine.types import GenerationRequest

# feature (engine.client.FEATURES) -> the request parameter a client sets to use it
PARAMS = {
    "token_healing": "token_healing",
    "logprobs": "logprobs",
    "echo": "echo",
    "prompt_token_ids": "prompt",
    "best_of": "best_of",
    "logit_bias": "logit_bias",
    "top_k": "top_k",
    "seed": "seed",
}


def used_features(request: GenerationRequest) -> list[str]:
    p = request.params
    used = []
    if p.token_healing:  # None (the server's default) is the backend's to decide, and log
        used.append("token_healing")
    if p.logprobs is not None:
        used.append("logprobs")
    if p.echo:
        used.append("echo")
    if request.prompt_token_ids is not None:
        used.append("prompt_token_ids")
    if p.best_of is not None and p.best_of > p.n:
        used.append("best_of")
    if p.logit_bias:
        used.append("logit_bias")
    if p.top_k:
        used.append("top_k")
    if p.seed is not None:
        used.append("seed")
    return used


def check_supported(engine: EngineClient, requests: list[GenerationRequest]) -> None:
    missing = getattr(engine, "unsupported", frozenset())
    if not missing:
        return
    backend = getattr(engine, "backend_name", type(engine).__name__)
    for request in requests:
        for feature in used_features(request):
            if feature in missing:
                param = PARAMS[feature]
                raise APIError.invalid(
                    param,
                    f"{param}: not available with this server's engine ({backend}); "
                    "send the request without it",
                    code="unsupported_parameter",
                )
