"""THE one HTTP client of the project: pooled aiohttp sessions, auth, typed safe errors.

Every HTTP request the project makes (judgments, health probes, ``/version``,
``/health``, ``thinking-judge check``) goes through a :class:`Transport`::

    transport = Transport(name="vllm-server", timeout=60.0, authorization=bearer(key))
    status, body = await transport.get(url, timeout=5.0)   # raises a typed BackendError
    reply = await transport.post(url, payload, shown=shown) # Reply, or the BackendError
    await transport.aclose()                    # or: async with Transport(...) as transport

Public API:

==============================================  ===========================================
:class:`Transport`                              one pooled session per event loop, auth
                                                headers, typed and scrubbed errors
``await Transport.session(concurrency)``        the running loop's session
``await Transport.get(url, timeout=)``          ``(status, body)``; raises
                                                ``BackendConnectionError`` /
                                                ``BackendTimeoutError`` /
                                                ``BackendResponseError``
``await Transport.post(url, payload, shown=)``  one attempt: :class:`Reply` or the error
``Transport.http_error(status, body, shown)``   the typed error for an HTTP status
                                                (``BackendContextLengthError`` included)
``Transport.error_for(exc, shown)``             the typed error for an aiohttp exception
``Transport.too_long(shown)``                   the error for a reply past ``max_reply_bytes``
``Transport.safe(text, cut_at)``                a host's message with the secrets scrubbed
``Transport.host_message(body, cut_at)``        the host's message of an error body, safe
``await Transport.aclose()`` / ``close()``      close every loop's session
``await Transport.aclose_on_current_loop()``    close this loop's session only
``Transport.close_elsewhere(skip)``             close the other loops' sessions
:func:`credentials`                             URLs + API key -> auth header and secrets
:func:`bearer`                                  ``"Bearer <key>"`` as a ``SecretStr``
:data:`TRANSPORT_ERRORS`                        what aiohttp raises for a network fault
==============================================  ===========================================

Retries, backoff, ``Retry-After`` and the deadline of a request are
:mod:`backends.retries` (tenacity); the wire format is :mod:`backends.openai_wire`;
replicas are :mod:`backends.replicas`.

Sessions. A session is bound to the event loop it was created on, so a transport
keeps one per loop, created on first use on that loop. Each is closed by
:meth:`Transport.aclose_on_current_loop` / :meth:`Transport.close_elsewhere`, and
otherwise when its loop shuts down (``asyncio.run`` finalizes async generators; a
small generator per session closes it then), so aiohttp's "Unclosed client session"
warning is never emitted. A closed transport may be used again: it opens new sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, NamedTuple

import aiohttp
from pydantic import SecretStr
from yarl import URL

from backends.auth import bearer, credentials
from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
)
from backends.openai_wire import (
    MAX_ERROR_BODY_BYTES,
    body_message,
    display_url,
    is_context_length,
    parse_retry_after,
    scrub,
)
from backends.retries import seconds
from backends.scrubbing import secret_values

logger = logging.getLogger(__name__)

TIMEOUT_ERRORS = (asyncio.TimeoutError, TimeoutError)
"""What an aiohttp call raises when it runs out of time."""
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
"""Everything an aiohttp call raises for a network fault (see :meth:`Transport.error_for`)."""
MAX_REPLY_BYTES = 4 * 1024 * 1024
"""The default most of a reply body read (a judgment's reply, 32 tokens with 20 top
logprobs each, is under 100 KB); a longer one fails its request, unread."""
_CHUNK = 65536


Session = aiohttp.ClientSession
"""The pooled HTTP session a :class:`Transport` hands out (one per event loop)."""


class Reply(NamedTuple):
    """One HTTP reply: status, body, and the wait a non-2xx reply asked for."""

    status: int
    body: bytes
    retry_after: float | None


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a reply's body, and whether it has more.

    Reads in chunks and stops past ``limit`` (a ``Content-Length`` above it stops it
    before reading): the rest is never read into memory. The body is decompressed
    first, so a small compressed reply that inflates past ``limit`` is stopped too.
    """
    length = response.content_length
    if length is not None and length > limit and response.status < 300:
        return b"", True
    body = bytearray()
    while True:
        chunk = await response.content.read(min(_CHUNK, limit + 1 - len(body)))
        if not chunk:
            return bytes(body), False
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True


class _LoopSession:
    """A session and the async generator that closes it when its loop shuts down."""

    __slots__ = ("keeper", "limit", "session")

    def __init__(
        self, session: aiohttp.ClientSession, keeper: AsyncGenerator[None, None], limit: int
    ) -> None:
        self.session = session
        self.keeper = keeper
        self.limit = limit


async def _keep_session(
    session: aiohttp.ClientSession,
    sessions: dict[asyncio.AbstractEventLoop, _LoopSession],
    loop: asyncio.AbstractEventLoop,
) -> AsyncGenerator[None, None]:
    """Suspend until closed; then forget and close ``session``.

    Being an async generator started on ``loop``, it is finalized by
    ``loop.shutdown_asyncgens()`` (which ``asyncio.run`` calls), and by the loop's
    finalizer hook if it is dropped while the loop runs: the session never outlives
    its loop unclosed. It holds no reference to the transport.
    """
    try:
        yield
    finally:
        entry = sessions.get(loop)
        if entry is not None and entry.session is session:
            del sessions[loop]
        await session.close()


class Transport:
    """Pooled aiohttp sessions (one per event loop) with auth and safe, typed errors.

    Args:
        name: The backend name put in errors (e.g. ``"vllm-server"``).
        timeout: Seconds allowed for one request, connection to last byte.
        limit: The least size of each loop's connection pool.
        headers: Extra headers for every request (never shown: each value is scrubbed
            from every message, as the secrets are).
        authorization: The ``Authorization`` header (see :func:`credentials`).
        secrets: Strings scrubbed from every message (the API key...), with any word
            that echoes one (its first characters, a masked ``sk-ab...wxyz``).
        max_reply_bytes: The most of a reply body read; a longer 2xx reply is an error
            (:class:`~backends.errors.BackendResponseError`, not retryable), unread.

    It cannot be pickled or copied (it holds credentials and live connections).
    """

    def __init__(
        self,
        *,
        name: str,
        timeout: float,
        limit: int = 64,
        headers: Mapping[str, str] | None = None,
        authorization: SecretStr | None = None,
        secrets: Sequence[SecretStr] = (),
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        if timeout <= 0 or limit < 1 or max_reply_bytes < 1:
            raise ValueError("timeout, limit and max_reply_bytes must be positive")
        self.name = name
        self.timeout = float(timeout)
        self.limit = int(limit)
        self._headers = dict(headers or {})
        self._authorization = authorization
        self.max_reply_bytes = int(max_reply_bytes)
        own = [secret.get_secret_value() for secret in secrets]
        self.secrets = tuple(secrets) + tuple(
            SecretStr(value) for value in secret_values(self._headers) if value not in own
        )
        self.sessions: dict[asyncio.AbstractEventLoop, _LoopSession] = {}
        """The open session of each event loop (read-only: for diagnostics and tests)."""
        self._closing: set[asyncio.Future[Any]] = set()

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a Transport cannot be pickled or copied: build one per process")

    def __repr__(self) -> str:
        return f"Transport(name={self.name!r}, timeout={self.timeout:g})"

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close this loop's session now, and schedule the closing of the others."""
        await self.aclose_on_current_loop()
        self.close_elsewhere(skip=asyncio.get_running_loop())

    def close(self) -> None:
        """Close every loop's session, as far as sync code can (see :meth:`close_elsewhere`)."""
        self.close_elsewhere()

    # ------------------------------------------------------------------ sessions

    async def session(self, concurrency: int | None = None) -> aiohttp.ClientSession:
        """The running loop's session, created on first use.

        Args:
            concurrency: Requests the caller will have in flight; a warning is logged
                once when it exceeds the loop's connection pool.
        """
        loop = asyncio.get_running_loop()
        entry = self.sessions.get(loop)
        if entry is not None and not entry.session.closed:
            if concurrency is not None and concurrency > entry.limit:
                logger.warning(
                    "max_concurrency=%d exceeds this loop's connection pool (%d); "
                    "construct the backend with max_concurrency=%d to raise it",
                    concurrency,
                    entry.limit,
                    concurrency,
                )
                entry.limit = concurrency  # warn once per size
            return entry.session
        limit = max(self.limit, concurrency or 0)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self._headers)
        if self._authorization is not None:
            headers["Authorization"] = self._authorization.get_secret_value()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=60.0),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        keeper = _keep_session(session, self.sessions, loop)
        self.sessions[loop] = _LoopSession(session, keeper, limit)
        await keeper.__anext__()  # registers it with the loop's async-generator hooks
        return session

    async def aclose_on_current_loop(self) -> None:
        """Close the running loop's session."""
        entry = self.sessions.get(asyncio.get_running_loop())
        if entry is not None:
            await entry.keeper.aclose()

    def close_elsewhere(self, skip: asyncio.AbstractEventLoop | None = None) -> None:
        """Close the sessions of every loop but ``skip``, as far as sync code can.

        On the running loop and on loops running in other threads the closing is
        scheduled; an idle loop is run until its session is closed; a closed loop's
        session was closed when the loop shut down.
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, entry in self.sessions.copy().items():
            if loop is skip:
                continue
            if loop.is_closed():
                self.sessions.pop(loop, None)
            elif loop is running:
                task = loop.create_task(entry.keeper.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(entry.keeper.aclose(), loop)
            elif running is None:
                loop.run_until_complete(entry.keeper.aclose())

    # ------------------------------------------------------------------ requests

    async def post(
        self,
        url: URL,
        payload: bytes,
        *,
        shown: str,
        timeout: float | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> Reply | BackendError:
        """One POST of a JSON ``payload``: the reply, whatever its status, or the error.

        A redirect is not followed (it would take the user's headers, which may hold
        keys, to wherever the host points): it is a reply like any other status.

        Args:
            url: Where to (may hold credentials in its query).
            payload: The encoded JSON body.
            shown: The URL as errors show it (see :func:`~backends.openai_wire.display_url`).
            timeout: Seconds for this request when less than the transport's.
            session: The session to use (default: the running loop's).
        """
        if session is None:
            session = await self.session()
        try:
            if timeout is not None and timeout < self.timeout:  # what is left of a deadline
                cut = aiohttp.ClientTimeout(total=max(timeout, 0.001))
                request = session.post(url, data=payload, timeout=cut, allow_redirects=False)
            else:
                request = session.post(url, data=payload, allow_redirects=False)
            async with request as response:
                status = response.status
                if status >= 300:  # its message is all that is read of it
                    body = (await read_at_most(response, MAX_ERROR_BODY_BYTES))[0]
                    retry_after = parse_retry_after(response.headers)
                else:
                    body, more = await read_at_most(response, self.max_reply_bytes)
                    if more:  # leaving the block drops the connection, the rest unread
                        return self.too_long(shown)
                    retry_after = None
        except TRANSPORT_ERRORS as exc:
            return self.error_for(exc, shown, timeout)
        return Reply(status, body, retry_after)

    async def get(self, url: URL | str, *, timeout: float | None = None) -> tuple[int, bytes]:
        """GET ``url`` with the transport's headers: ``(status, body)``, whatever the status.

        Raises:
            BackendConnectionError: The host could not be reached.
            BackendTimeoutError: No complete reply within ``timeout`` seconds.
            BackendResponseError: A truncated or invalid HTTP reply, or one longer than
                ``max_reply_bytes``.
        """
        timeout = self.timeout if timeout is None else timeout
        session = await self.session()
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                status = response.status
                limit = self.max_reply_bytes if status < 300 else MAX_ERROR_BODY_BYTES
                body, more = await read_at_most(response, limit)
                more = more and status < 300
        except TRANSPORT_ERRORS as exc:
            raise self.error_for(exc, display_url(url), timeout) from None
        if more:
            raise self.too_long(display_url(url))
        return status, body

    # ------------------------------------------------------------------ errors

    def safe(self, text: str, cut_at: Sequence[str] = ()) -> str:
        """``text`` scrubbed of the secrets, of base64 and of any echo of ``cut_at``."""
        secrets = [secret.get_secret_value() for secret in self.secrets]
        return scrub(text, secrets, cut_at=cut_at)

    def host_message(self, body: bytes, cut_at: Sequence[str] = ()) -> str:
        """The host's message from an error body, made safe."""
        return self.safe(body_message(body), cut_at) or "(no message)"

    def http_error(
        self,
        status: int,
        body: bytes,
        shown: str,
        *,
        retry_after: float | None = None,
        cut_at: Sequence[str] = (),
    ) -> BackendHTTPError:
        """The typed error for an HTTP error status, with the host's message made safe."""
        message = self.host_message(body, cut_at)
        if 300 <= status < 400:
            message = f"{message}; redirects are not followed: point base_url where it redirects"
        cls = BackendContextLengthError if is_context_length(status, message, body) else None
        return (cls or BackendHTTPError)(
            f"HTTP {status} from {shown}: {message}",
            status=status,
            retry_after=retry_after,
            backend=self.name,
        )

    def too_long(self, shown: str) -> BackendResponseError:
        """The error for a reply longer than ``max_reply_bytes`` (not retryable)."""
        error = BackendResponseError(
            f"the reply from {shown} is longer than {self.max_reply_bytes} bytes "
            "(max_reply_bytes); not read",
            backend=self.name,
        )
        error.retryable = False  # the same request would get the same reply
        return error

    def error_for(
        self, exc: BaseException, shown: str, timeout: float | None = None
    ) -> BackendError:
        """The typed error for an exception raised while talking to ``shown``."""
        if isinstance(exc, TIMEOUT_ERRORS):
            timeout = self.timeout if timeout is None else timeout
            return BackendTimeoutError(
                f"no complete reply from {shown} within {seconds(timeout)} s", backend=self.name
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return BackendResponseError(
                f"truncated reply from {shown}: {self.safe(str(exc))}", backend=self.name
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            return BackendResponseError(
                f"invalid HTTP reply from {shown}: {self.safe(exc.message)}", backend=self.name
            )
        return BackendConnectionError(
            f"connection to {shown} failed: {self.safe(_connect_reason(exc))}",
            backend=self.name,
        )


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in the system's words where it has them.

    aiohttp's own text repeats the host and adds ``ssl:default [Connect call failed
    ('127.0.0.1', 9)]``; the operating system's reason (``Connection refused``, ``No route
    to host``) is what a person can act on.
    """
    cause = getattr(exc, "os_error", None)
    number = getattr(cause, "errno", None)
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(cause, socket.gaierror):
        return f"the host name does not resolve ({cause.strerror})"
    if isinstance(number, int) and number > 0:
        return os.strerror(number)
    return f"{type(exc).__name__}: {exc}"


__all__ = [
    "MAX_REPLY_BYTES",
    "TIMEOUT_ERRORS",
    "TRANSPORT_ERRORS",
    "Reply",
    "Session",
    "Transport",
    "bearer",
    "credentials",
    "read_at_most",
]
