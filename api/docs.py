"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from assets shipped in the package
(``semon/api/static/docs``, see its README): they work offline and where a CDN is unreachable
or slow (mainland China), and the page loads nothing from outside the API's own origin."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/docs"
# The pages may load nothing from elsewhere: ReDoc's bundle still asks cdn.redoc.ly for its
# "API docs by Redocly" logo (and hides it when that fails); the policy keeps the browser from
# even trying. Inline scripts and styles are how both pages start and theme themselves; ReDoc
# runs its search in a blob: worker.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")  # fmt: skip


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def install_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages (neither is part of the OpenAPI schema)."""
    folder = resources.files("semon.api") / "static" / "docs"
    app.mount(ASSETS, StaticFiles(directory=str(folder)), name="docs-assets")
    title = f"{app.title} — {{}}"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _own_origin_only(get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=title.format("Swagger UI"),
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            # Keep what was typed into Authorize across reloads of the page.
            swagger_ui_parameters={"persistAuthorization": True},
        ))  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _own_origin_only(get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=title.format("ReDoc"),
            redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon-32x32.png",
            with_google_fonts=False,  # fonts.googleapis.com: blocked in mainland China, absent offline
        ))  # fmt: skip
