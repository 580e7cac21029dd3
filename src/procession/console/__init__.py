"""The web console: server-rendered pages over the same use cases and roles as the API, and the API's
documentation (``/docs``), each with its assets served from the package: nothing is fetched from elsewhere."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from procession.console import auth
from procession.console.pages import (
    connectors,
    edit,
    jobs,
    procedures,
    process,
    processes,
    runs,
    settings,
    webhooks,
)
from procession.console.web import HERE

DOCS_ASSETS = "/docs/assets"
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI's files, shipped in that package


def install(app: FastAPI) -> None:
    """Add the console's pages and static files, and ``/docs``, to ``app`` (made with ``docs_url=None``)."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the validator's site
        )

    for module in (
        auth, procedures, processes, process, edit, runs, jobs, settings, connectors, webhooks,
    ):  # fmt: skip
        app.include_router(module.router)
