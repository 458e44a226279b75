"""The optional dashboard token, checked before any page, API or asset is served.

A request is let in with `Authorization: Bearer <token>`, with `?token=<token>` (the response then sets
an HttpOnly cookie, so that links, the live stream and assets need nothing more), or with that cookie.
The cookie holds a digest of the token, not the token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE: Final = "multichannel_dashboard"


def _digest(token: str) -> str:
    return hashlib.sha256(b"multichannel-dashboard:" + token.encode()).hexdigest()


class TokenGate:
    """ASGI middleware: every HTTP request needs the token when one is configured."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.cookie_value = _digest(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self._same(request.query_params.get("token"), self.token):
            await self.app(scope, receive, self._setting_cookie(send))
            return
        bearer = request.headers.get("authorization", "")
        if (bearer[:7].lower() == "bearer " and self._same(bearer[7:].strip(), self.token)) or self._same(
            request.cookies.get(COOKIE), self.cookie_value
        ):
            await self.app(scope, receive, send)
            return
        await _refusal(request)(scope, receive, send)

    @staticmethod
    def _same(given: str | None, expected: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())

    def _setting_cookie(self, send: Send) -> Send:
        cookie = f"{COOKIE}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        return wrapped


def _refusal(request: Request) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="multichannel dashboard"'}
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "a valid dashboard token is required"}, status_code=401, headers=headers)
    return HTMLResponse(
        "<!doctype html><title>multichannel dashboard</title>"
        "<p>This dashboard needs its token: open it once as <code>?token=&lt;token&gt;</code>.</p>",
        status_code=401,
        headers=headers,
    )
