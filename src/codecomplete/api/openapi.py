"""The OpenAPI document as the server behaves (no 422 anywhere), and /docs without a CDN.

FastAPI adds a 422 `HTTPValidationError` response to every route with a body, but a validation
error here is a 400 in the OpenAI error shape (errors.py), which each route declares itself.
FastAPI's /docs page loads Swagger UI from a CDN; ours serves the copy shipped in the
`swagger-ui-bundle-v2` package (Apache-2.0, Swagger UI 5: OpenAPI 3.1), so it works offline, and
falls back to the CDN only when that package is missing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_ASSETS = "/docs/assets"


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            for item in doc.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)
                    # Any route can answer a 4xx (bad body, unknown model, API key): routes that do
                    # not declare their errors still say so, in their protocol's own shape.
                    if not any(str(code).startswith("4") for code in responses):
                        responses["4XX"] = {
                            "description": "A client error, in this route's protocol's error shape"
                        }
            schemas = doc.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """GET /docs: Swagger UI over /openapi.json, "Try it out" on (the examples send real requests)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    assets: dict[str, str] = {}
    if swagger_ui_path is not None:
        app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
        assets = {
            "swagger_js_url": f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            "swagger_css_url": f"{DOCS_ASSETS}/swagger-ui.css",
            "swagger_favicon_url": f"{DOCS_ASSETS}/favicon-32x32.png",
        }

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_ui_parameters={"tryItOutEnabled": True},
            **assets,
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
