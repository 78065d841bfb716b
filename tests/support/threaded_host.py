"""An aiohttp host on 127.0.0.1 (random port) in a thread of its own, for unit tests.

Fault injection is the one place a fake HTTP host is right: the real vLLM server cannot
be made to reset, stall or answer garbage on demand. Subclasses give the routes
(:meth:`ThreadedHost.app`); sync and async callers alike can reach the host.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedHost:
    """Start with :meth:`start`, stop with :meth:`stop`; the port is picked at start."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def app(self) -> web.Application:
        """The application to serve (its routes)."""
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()
        app = self.app()

        async def serve() -> int:
            self.runner = web.AppRunner(app, handle_signals=False)
            await self.runner.setup()
            self.site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await self.site.start()
            return self.site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        self.port = asyncio.run_coroutine_threadsafe(serve(), self.loop).result()

    def stop(self) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class ScriptedHost(ThreadedHost):
    """Answers every chat completion with the status, headers and body the test sets.

    ``cases`` maps a marker to a body: a request whose text holds the marker gets that
    body instead of ``body``. The content type is JSON unless ``headers`` name one.
    """

    status = 200
    headers: dict[str, str] = {}  # noqa: RUF012
    body = b""
    cases: dict[str, bytes] = {}  # noqa: RUF012

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.Response:
            sent = await request.text()
            body = next((b for marker, b in self.cases.items() if marker in sent), self.body)
            typed = any(name.lower() == "content-type" for name in self.headers)
            return web.Response(
                status=self.status,
                headers=self.headers,
                body=body,
                content_type=None if typed else "application/json",
            )

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        return app
