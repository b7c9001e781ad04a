"""The app factory. Nothing happens at import: the model loads in the lifespan, from the engine
the caller built (cli.py builds the real one; tests pass a scripted fake)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from codecomplete import __version__
from codecomplete.api.autocomplete.router import router as autocomplete_router
from codecomplete.api.autocomplete.serving import AutocompleteServing
from codecomplete.api.completions.debug import PromptDecoder
from codecomplete.api.completions.router import router as completions_router
from codecomplete.api.completions.serving import CompletionServing
from codecomplete.api.copilot.router import router as copilot_router
from codecomplete.api.editor import SupersedeRegistry
from codecomplete.api.errors import install_error_handlers
from codecomplete.api.llamacpp.router import router as llamacpp_router
from codecomplete.api.llamacpp.serving import InfillServing
from codecomplete.api.metrics import ServerMetrics
from codecomplete.api.middleware import NormalizePathMiddleware, RequestMetricsMiddleware
from codecomplete.api.models.router import router as models_router
from codecomplete.api.ollama.router import router as ollama_router
from codecomplete.api.ollama.serving import OllamaServing
from codecomplete.api.openapi import install_docs, install_openapi
from codecomplete.api.ops import router as ops_router
from codecomplete.api.playground.router import events as playground_events
from codecomplete.api.playground.router import pages as playground_pages
from codecomplete.api.shutdown import Drain, DrainingEngine
from codecomplete.api.tabby.router import router as tabby_router
from codecomplete.api.tabby.serving import TabbyServing
from codecomplete.engine.client import EngineClient
from codecomplete.settings import ServerSettings

log = logging.getLogger("codecomplete.api")


def build_app(
    settings: ServerSettings,
    engine: EngineClient,
    *,
    start_in_background: bool = False,
    on_start_failure: Callable[[BaseException], None] | None = None,
    prompt_decoder: PromptDecoder | None = None,
) -> FastAPI:
    """The app over `engine`, which the lifespan starts and stops.

    start_in_background: open the port at once and load the model behind it; until it is loaded
    /health and the API answer 503 (with Retry-After). `on_start_failure` is then called if the
    model fails to load, so the caller can stop the server (cli.py exits with an error) instead of
    leaving it answering 503 forever. Without it, startup waits for the model (tests, embedding).
    prompt_decoder: turns prompt token ids back into text for `"debug": true` (the playground's
    prompt panel); without it the debug answer has the ids only.
    """

    async def start_engine() -> None:
        try:
            await engine.start()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error("the engine failed to start: %s: %s", type(exc).__name__, exc)
            if on_start_failure is None:
                raise
            on_start_failure(exc)
            return
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = None
        if start_in_background:
            starting = asyncio.ensure_future(start_engine())
        else:
            await start_engine()
        try:
            yield
        finally:
            if starting is not None and not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            await engine.stop()

    app = FastAPI(
        title="codecomplete",
        version=__version__,
        summary="Code completions for Copilot, the fauxpilot extension, openai clients, ivolution, "
        "llama.cpp's /infill clients, Ollama clients and Tabby's plugins.",
        lifespan=lifespan,
        docs_url=None,  # install_docs: Swagger UI from the package, not a CDN
        redoc_url=None,
    )
    # Every route sees the engine through the drain: on SIGTERM (api/shutdown.py) new requests get
    # 503 + Retry-After and streams still running at --shutdown-timeout end with an error event.
    drain = Drain(settings.shutdown_timeout)
    engine = DrainingEngine(engine, drain)
    metrics = ServerMetrics(engine)
    app.state.drain = drain
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    # One registry for every route, so a session's newer request supersedes across them (api/editor.py).
    app.state.supersede = SupersedeRegistry(
        engine,
        enabled=settings.supersede,
        on_superseded=lambda key: metrics.superseded.labels(channel=key.channel.split(":")[0]).inc(),
    )
    app.state.completions = CompletionServing(
        engine, settings, metrics, supersede=app.state.supersede, decoder=prompt_decoder
    )
    app.state.autocomplete = AutocompleteServing(engine, settings, metrics)
    # The editor protocols: llama.cpp's /infill, Ollama's /api/*, Tabby's /v1/completions body.
    app.state.infill = InfillServing(engine, settings, metrics)
    app.state.ollama = OllamaServing(engine, settings, metrics)
    app.state.tabby = TabbyServing(engine, settings, metrics)

    for router in (
        completions_router,
        models_router,
        autocomplete_router,
        ops_router,
        copilot_router,
        llamacpp_router,
        ollama_router,
        tabby_router,
        playground_pages,
        playground_events,
    ):
        app.include_router(router)
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    # Added last = outermost: paths are normalised before routing and before metrics see them.
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(NormalizePathMiddleware)
    return app
