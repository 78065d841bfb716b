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
