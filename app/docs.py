"""The API's documentation page, /docs (Swagger UI), served with every script, stylesheet and
icon it loads from this app: nothing from a CDN, so the page works on an offline or firewalled
deployment, under a Content-Security-Policy that allows this origin only and no inline script
or style.

Swagger UI comes from the fastapi-offline package (pyproject.toml says why that one); only its
files are used, not its app factory, whose pages start Swagger UI with an inline script. Asset
URLs carry a hash of the file, so browsers may cache them for good. FastAPI's ReDoc page
(/redoc) is not served: it needs inline styles and a blob: worker, and its footer loads a logo
from another origin; one documentation page is enough.
"""

import hashlib
from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from app.errors import NotFound

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
_PACKAGE_ASSETS = Path(str(files("fastapi_offline") / "static"))
_OUR_ASSETS = Path(__file__).parent / "web" / "static"
_ASSET_FILES = {
    "swagger-ui-bundle.js": _PACKAGE_ASSETS / "swagger-ui-bundle.js",
    "swagger-ui.css": _PACKAGE_ASSETS / "swagger-ui.css",
    "favicon.png": _PACKAGE_ASSETS / "favicon.png",
    "docs.js": _OUR_ASSETS / "docs.js",
}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def _versioned_url(name: str) -> str:
    with _ASSET_FILES[name].open("rb") as asset:
        digest = hashlib.file_digest(asset, "sha256").hexdigest()[:12]
    return f"{ASSETS_PATH}/{name}?v={digest}"


# Scripts, styles and requests to this origin only (Swagger UI's icons are data: URIs in its
# stylesheet); no inline script or style, no plugin, no form, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
ASSET_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


def _swagger_page(title: str, openapi_url: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} - API</title>\n"
        f'<link rel="icon" href="{_versioned_url("favicon.png")}">\n'
        f'<link rel="stylesheet" href="{_versioned_url("swagger-ui.css")}">\n'
        "</head>\n<body>\n"
        f'<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>\n'
        f'<script src="{_versioned_url("swagger-ui-bundle.js")}"></script>\n'
        f'<script src="{_versioned_url("docs.js")}"></script>\n'
        "</body>\n</html>\n"
    )


def docs_router(*, title: str, openapi_url: str) -> APIRouter:
    """GET /docs and its assets, for the OpenAPI document at `openapi_url`."""
    router = APIRouter(include_in_schema=False)
    page = _swagger_page(title, openapi_url)

    @router.get(DOCS_PATH)
    async def swagger_ui() -> HTMLResponse:
        """The API's documentation."""
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @router.get(ASSETS_PATH + "/{name}")
    async def docs_asset(name: str) -> FileResponse:
        """A script, stylesheet or icon of the documentation page."""
        path = _ASSET_FILES.get(name)
        if path is None:
            raise NotFound()
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=ASSET_HEADERS)

    return router
