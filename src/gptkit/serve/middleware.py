"""ASGI middleware in front of the routes: the API key check, and reading each request body in full
(within a size limit and a read timeout) before any route sees it."""

from __future__ import annotations

import asyncio
import hmac

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptkit.serve.errors import APIError

PROTECTED_PREFIX = "/v1/"  # these routes, and the ones below, need the API key when one is set
PROTECTED_PATHS = frozenset(
    {"/tokenize", "/detokenize", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
CLOSE = {"Connection": "close"}  # uvicorn drops the connection after the response


class AuthMiddleware:
    """Bearer-token check (constant-time) on the inference, tokenizer and docs routes when a key is set."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1"), self.key):
            await self.app(scope, receive, send)
            return
        message = (
            "Incorrect API key provided" if token else "Missing API key: send 'Authorization: Bearer KEY'"
        )
        error = APIError(401, message, type="invalid_request_error", code="invalid_api_key")
        await send_error(send, error)


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIX) or path.rstrip("/") in PROTECTED_PATHS


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class BodyMiddleware:
    """Read the whole body first: over ``max_bytes`` (by Content-Length, or counted while a chunked body
    arrives) is a 413; a body not complete within ``read_timeout_s`` is a 408. Both close the connection."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await send_error(send, self._too_large())
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.read_timeout_s)
        except _TooLarge:
            await send_error(send, self._too_large())
            return
        except asyncio.TimeoutError:
            await send_error(send, self._stalled())
            return
        except _Disconnected:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        """The complete body; raises _TooLarge past the limit, _Disconnected when the client leaves."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"the request body is larger than {self.max_bytes} bytes",
            code="request_too_large",
            headers=CLOSE,
        )

    def _stalled(self) -> APIError:
        return APIError(
            408,
            f"the request body did not arrive within the server's read timeout of {self.read_timeout_s:g} s",
            type="timeout_error",
            code="request_timeout",
            headers=CLOSE,
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then waits on the client (for its disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_error(send: Send, error: APIError) -> None:
    """Answer with an OpenAI-shaped error outside the routes."""
    response: JSONResponse = error.response()
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
