"""Refuse oversized uploads before they are read, not after they fill the disk.

FastAPI parses a multipart body completely before the route runs, so a size check inside the
route comes too late. This ASGI middleware answers 413 at once when `Content-Length` is over
the limit, and cuts off a body without one (chunked) as soon as it passes the limit.
"""

from __future__ import annotations

import json

from server.errors import error_body

SLACK = 64 * 1024  # multipart boundaries and form fields around the file


class BodyTooLarge(Exception):
    pass


class UploadLimit:
    def __init__(self, app, limit: int, paths: tuple[str, ...], on_refuse=None):
        self.app, self.limit, self.paths, self.on_refuse = app, limit + SLACK, paths, on_refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        seen = 0
        over = False  # the body passed the limit (the app may catch our exception and answer 400)
        refused = False

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal refused
            if over:  # whatever the app answers, the answer is 413
                if not refused:
                    refused = True
                    await self._refuse(send)
                return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                refused = True
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        if self.on_refuse:
            self.on_refuse("upload_too_large")
        body = json.dumps(error_body("upload_too_large", f"uploads are limited to {self.limit - SLACK} bytes")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
