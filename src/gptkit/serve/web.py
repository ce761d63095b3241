"""The web chat page at ``/`` and the files it loads (vendored marked and DOMPurify: it works offline)."""

from __future__ import annotations

import importlib.resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from gptkit.serve.errors import APIError

STATIC_FILES = {  # name -> media type; nothing else under static/ is served
    "marked.umd.js": "text/javascript",
    "purify.min.js": "text/javascript",
    "marked.LICENSE": "text/plain",
    "purify.LICENSE": "text/plain",
}

router = APIRouter()


def _static(name: str):
    return importlib.resources.files("gptkit.serve").joinpath("static", name)


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """The web chat page."""
    page = _static("index.html")
    if not page.is_file():
        raise APIError(404, "the web chat page is not installed", code="not_found")
    return HTMLResponse(page.read_text(encoding="utf-8"))


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    """One of the page's script files (or their licenses)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None or not _static(name).is_file():
        raise APIError(404, f"no static file {name!r}", code="not_found")
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(_static(name).read_bytes(), media_type=media_type, headers=headers)
