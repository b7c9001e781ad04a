"""The app factory. Nothing happens at import: the model loads in the lifespan, from the engine
the caller built (cli.py builds the real one; tests pass a scripted fake)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from codecomplete import __version__
from codecomplete.api.autocomplete.router import router as autocomplete_router
from codecomplete.api.autocomplete.serving import AutocompleteServing
from codecomplete.api.completions.router import router as completions_router
from codecomplete.api.completions.serving import CompletionServing
from codecomplete.api.errors import install_error_handlers
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.middleware import NormalizePathMiddleware, RequestMetricsMiddleware
from codecomplete.api.models.router import router as models_router
from codecomplete.api.ops import router as ops_router
from codecomplete.engine.client import EngineClient
from codecomplete.settings import ServerSettings

log = logging.getLogger("codecomplete.api")


def build_app(settings: ServerSettings, engine: EngineClient) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        info = engine.model_info
        if info.fim_template is None:
            log.warning(
                "model %s has no fill-in-the-middle tokens: `suffix` is ignored (see /v1/models)", info.name
            )
        log.info(
            "serving %s (names: %s; context %d tokens; FIM %s)%s",
            info.name,
            ", ".join(info.served_names),
            info.context_length,
            info.fim_template or "none",
            "; API key required" if settings.api_key else "",
        )
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="codecomplete",
        version=__version__,
        summary="Code completions for Copilot, the fauxpilot extension, openai clients and ivolution.",
        lifespan=lifespan,
    )
    metrics = ServerMetrics(engine)
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.completions = CompletionServing(engine, settings, metrics)
    app.state.autocomplete = AutocompleteServing(engine, settings, metrics)

    for router in (completions_router, models_router, autocomplete_router, ops_router):
        app.include_router(router)
    install_error_handlers(app)
    # Added last = outermost: paths are normalised before routing and before metrics see them.
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(NormalizePathMiddleware)
    return app
