"""Uploads stay with their uploader: an ASGI middleware in front of Gradio's file routes that remembers who uploaded
each file and refuses anyone else who asks for it by URL, keeps export downloads for admins, and gives each
browser its pseudonymous visitor cookie.

Gradio serves every file in its upload folder to whoever has the URL (the URL names the file's content hash, so it
is hard to guess but easy to share). The guard sits inside Gradio's app (`launch(app_kwargs={"middleware": ...})`):
a successful `POST /gradio_api/upload` records the uploader's identity for each returned path, and
`GET /gradio_api/file=<path>` of a recorded upload is answered 403 unless the caller is one of its uploaders or an
admin. Identical bytes uploaded by two people land on one path; both are its owners (each already has the bytes).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access.identity import VISITOR_COOKIE, AccessConfig, Identity

FILE_PREFIX = "/gradio_api/file="
UPLOAD_PATH = "/gradio_api/upload"
MAX_TRACKED = 20_000
COOKIE_MAX_AGE_S = 365 * 24 * 3600


class UploadOwners:
    """path -> the identities that uploaded it (or loaded it into their session). Bounded: the oldest entries go
    first, long after Gradio's own cache has deleted those files."""

    def __init__(self, max_tracked: int = MAX_TRACKED):
        self._owners: OrderedDict[str, set[tuple[str, str]]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_tracked = max_tracked

    def claim(self, path: str | Path, who: Identity) -> None:
        key = _normal(path)
        with self._lock:
            self._owners.setdefault(key, set()).add(who.key)
            self._owners.move_to_end(key)
            while len(self._owners) > self.max_tracked:
                self._owners.popitem(last=False)

    def owners(self, path: str | Path) -> set[tuple[str, str]]:
        with self._lock:
            return set(self._owners.get(_normal(path), ()))

    def may_fetch(self, path: str | Path, who: Identity) -> bool:
        owners = self.owners(path)
        return not owners or who.key in owners or who.is_admin


def _normal(path: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


class UploadGuard:
    """The ASGI middleware (see the module's docstring). `exports_dir`: files only admins may download."""

    def __init__(self, app: ASGIApp, *, config: AccessConfig, owners: UploadOwners, exports_dir: str | Path):
        self.app = app
        self.config = config
        self.owners = owners
        self.exports_dir = _normal(exports_dir)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        request = Request(scope)
        if path.startswith(FILE_PREFIX):  # identities are resolved only here and on uploads, not on every request
            refusal = self._file_refusal(unquote(path[len(FILE_PREFIX) :]), self._who(scope, request))
            if refusal:
                await _forbidden(send, refusal)
                return
        elif path == UPLOAD_PATH and scope.get("method") == "POST":
            await self.app(scope, receive, self._claiming(send, self._who(scope, request)))
            return
        elif path == "/" and not self.config.local_owner and VISITOR_COOKIE not in request.cookies:
            send = _with_visitor_cookie(send, request)
        await self.app(scope, receive, send)

    def _who(self, scope: Scope, request: Request) -> Identity:
        return self.config.from_http(request, username=_gradio_username(scope, request))

    def _file_refusal(self, file_path: str, who: Identity) -> str | None:
        real = _normal(file_path)
        if (real == self.exports_dir or real.startswith(self.exports_dir + os.sep)) and not who.is_admin:
            return f"only admins can download exports; you are {who.describe()}"
        if not self.owners.may_fetch(real, who):
            return f"this file was uploaded by another person; you are {who.describe()}"
        return None

    def _claiming(self, send: Send, who: Identity) -> Send:
        """Pass the upload's response through, and record `who` as the owner of every path it returns."""
        status: list[int] = []
        body: list[bytes] = []

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body") and status and status[0] == 200:
                    self._claim_listed(b"".join(body), who)
            await send(message)

        return wrapped

    def _claim_listed(self, body: bytes, who: Identity) -> None:
        try:
            paths = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return  # compressed or not JSON: nothing the guard can read (Gradio answers uploads in plain JSON)
        for path in paths if isinstance(paths, list) else []:
            if isinstance(path, str):
                self.owners.claim(path, who)


def _gradio_username(scope: Scope, request: Request) -> str | None:
    """The name Gradio's own sign-in (`launch(auth=...)`) gave this browser or client, from its token cookie."""
    app: Any = scope.get("app")
    tokens = getattr(app, "tokens", None) or {}
    cookie_id = getattr(app, "cookie_id", "")
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    return tokens.get(token) if token else None


async def _forbidden(send: Send, message: str) -> None:
    body = json.dumps({"detail": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _with_visitor_cookie(send: Send, request: Request) -> Send:
    """Give a browser its visitor id on its first page load. On HTTPS (a Space, shown in an iframe of
    huggingface.co) the cookie must be SameSite=None; Secure to be sent back at all."""
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"
    attributes = "; SameSite=None; Secure" if secure else "; SameSite=Lax"
    cookie = f"{VISITOR_COOKIE}={secrets.token_urlsafe(18)}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly{attributes}"

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
        await send(message)

    return wrapped
