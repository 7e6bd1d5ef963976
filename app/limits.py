"""Request body size limit, enforced before the body is parsed."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem_response


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit."""


class BodySizeLimit:
    """Answers 413 for bodies over `limit` bytes, by Content-Length or as the body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._send_too_large(send)
                    return
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked:
            # The body is at most its Content-Length, or empty without one (RFC 9112, 6.3),
            # and the server holds it to that: only a chunked body needs counting.
            await self.app(scope, receive, send)
            return
        received = 0
        too_large = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            # Whatever the app makes of the interrupted body (frameworks turn it into a 400),
            # the client is told the truth: 413.
            if too_large:
                if not answered and message["type"] == "http.response.start":
                    answered = True
                    await self._send_too_large(send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not answered:
                await self._send_too_large(send)

    async def _send_too_large(self, send: Send) -> None:
        response = problem_response(
            413, "payload-too-large", f"The request body is larger than {self.limit} bytes."
        )
        headers = [*response.raw_headers, (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
