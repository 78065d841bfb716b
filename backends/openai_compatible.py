"""Any OpenAI-compatible ``/v1/chat/completions`` host, over a lean pooled aiohttp client.

The judge must never be the bottleneck of an evaluation or an RL loop, so the hot path
is plain: one pooled :class:`aiohttp.ClientSession` per event loop, request bodies
encoded with ``orjson`` (a 45 KB image encodes in 5 us, against 200 us with the
stdlib's ``json``), replies read as dicts, no pydantic.

Replicas. ``base_url`` may list several hosts serving the same model. Each request
goes to the live one with the fewest requests in flight (ties: round robin; see
:mod:`backends.replicas`). After ``eject_after`` endpoint faults in a row
(connection refused or reset, timeout, 5xx) a host is ejected for ``cooldown``
seconds, doubled on each further ejection up to ``cooldown_max``; then a health
probe (``GET {base_url}/models``; vLLM's ``GET /health``) runs in the background,
started by whichever request first finds the cool-down over, and re-admits the host
when it answers with a status below 500. Requests never wait for a probe while
another host is live. When every host is ejected, requests wait for the first to be
re-admitted, within their ``deadline``. A single host is never ejected: there is
nowhere else to go, so retries and backoff alone apply.

Sessions. A session is bound to the event loop it was created on, so the backend
keeps one per loop, created on first use on that loop: the caller's loop for
:meth:`~backends.base.Backend.agenerate`, the backend's private loop for the sync
:meth:`~backends.base.Backend.generate`. Each session is closed by
:meth:`OpenAICompatibleBackend.aclose` / :meth:`~OpenAICompatibleBackend.close`, and
otherwise when its loop shuts down (``asyncio.run`` finalizes async generators; a
small generator per session closes it then) or when the backend is garbage-collected,
so aiohttp's "Unclosed client session" warning is never emitted. A closed backend
may be used again: it opens new sessions.

Retries. What each outcome of an attempt leads to:

==========================================  =============================  ========  ======
What happened                               Error                          Retried   Ejects
==========================================  =============================  ========  ======
connection refused, reset or broken         ``BackendConnectionError``     yes       yes
no complete reply within ``timeout``        ``BackendTimeoutError``        yes       yes
HTTP 5xx                                    ``BackendHTTPError``           yes       yes
HTTP 429 (backpressure)                     ``BackendHTTPError``           yes [1]_  no
200, but truncated, not JSON or not a       ``BackendResponseError``       yes       no
chat completion (no choices, an error)
HTTP 4xx saying the prompt exceeds the      ``BackendContextLengthError``  no        no
model's context (vLLM's "maximum context
length" / "maximum model length")
any other HTTP status (400, 401, 404, 422)  ``BackendHTTPError``           no        no
a request that cannot be encoded as JSON    ``BackendError``, attempts=0   never sent
==========================================  =============================  ========  ======

.. [1] after ``Retry-After`` / ``retry-after-ms`` when the host sends one.

A retry waits ``uniform(0, min(backoff_max, backoff_base * 2**(n-1)))`` before the
n-th retry ("full jitter"), or what the host asked for in ``Retry-After`` /
``retry-after-ms`` (seconds or an HTTP date), capped at ``backoff_max``. Each request
has ``max_retries`` retries, with one exception: after an endpoint fault, a retry
that fails over to a live host the request has not tried yet is free (no budget,
no backoff), since the fault was the host's, not the request's. So a request is
sent at most ``1 + max_retries + (hosts - 1)`` times, and a batch finishes as long
as one host lives, even with ``max_retries=0``.

Deadline. A judgment may take at most ``deadline`` seconds over all its attempts,
backoff and waits for a host (default ten times ``timeout``; ``math.inf`` for no
limit). An attempt's timeout is cut to what is left of it, and a retry whose wait
would pass it is not made: the last error is returned, saying so. The number of
attempts is reported in ``Completion.attempts`` and ``BackendError.attempts`` (and
in the message when more than one).

Error messages name the endpoint (without credentials or query) and the host's own
message, cut to about 300 characters, scrubbed of the API key, of base64 data URLs
and long base64 runs, and cut where the host starts echoing the request (an
``"input":`` / ``"messages":`` / ``"content":`` key, or the start of one of the
request's texts). They never contain the request body.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from datetime import timezone
from time import perf_counter
from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import SecretStr
from yarl import URL

from backends.replica_pool import EndpointPool, PoolEvent
from backends.base import AsyncBackend, Completion, JudgeRequest, Result, TokenLogprob
from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
    says_context_length,
)

# orjson, a core dependency: a request carrying a 45 KB image encodes in 5 us against
# 200 us with the stdlib json.
_dumps: Callable[[Any], bytes] = orjson.dumps
_loads: Callable[[bytes], Any] = orjson.loads

logger = logging.getLogger(__name__)

_TIMEOUT_ERRORS = (asyncio.TimeoutError, TimeoutError)
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
_MAX_MESSAGE_CHARS = 300
_MAX_ERROR_BODY_BYTES = 65536
_DATA_URL = re.compile(r"data:[\w.+/-]*;base64,[A-Za-z0-9+/=_-]*", re.IGNORECASE)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{64,}")
_REQUEST_ECHO = re.compile(r"""['"](?:input|messages|content)['"]\s*:""")
_FRAGMENT_CHARS = 32
_PROBE_TIMEOUT = 5.0


def scrub(
    text: str,
    secrets: Sequence[str] = (),
    *,
    cut_at: Sequence[str] = (),
    limit: int = _MAX_MESSAGE_CHARS,
) -> str:
    """Make a host's message safe to put in an error: no secrets, no images, no echo.

    Args:
        text: The message.
        secrets: Strings to redact wherever they appear (e.g. the API key).
        cut_at: Fragments of the request (its texts); the message is cut where one
            appears, as it is where an ``"input":`` / ``"messages":`` /
            ``"content":`` echo starts.
        limit: Most characters to keep.

    Returns:
        The message with secrets redacted, any echo of the request dropped, base64
        data URLs and long base64 runs replaced, whitespace folded, cut to ``limit``.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    cut = len(text)
    echo = _REQUEST_ECHO.search(text)
    if echo is not None:
        cut = echo.start()
    for fragment in cut_at:
        found = text.find(fragment, 0, cut)
        if found >= 0:
            cut = found
    if cut < len(text):
        text = text[:cut] + "[request omitted]"
    text = text[: 16 * limit]
    text = _DATA_URL.sub("data:[base64 omitted]", text)
    text = _BASE64_RUN.sub("[base64 omitted]", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def _request_fragments(request: JudgeRequest) -> list[str]:
    """The starts of a request's texts, to recognise a host echoing them."""
    fragments: list[str] = []
    for message in request.messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        parts = [content] if isinstance(content, str) else content or ()
        for part in parts if isinstance(parts, (list, tuple)) else ():
            text = part.get("text") if isinstance(part, Mapping) else part
            if isinstance(text, str) and len(text.strip()) >= 12:
                fragments.append(text.strip()[:_FRAGMENT_CHARS])
    return fragments


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a host asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    Args:
        headers: The response headers (case-insensitive mapping).
        now: The current Unix time (for tests); defaults to :func:`time.time`.

    Returns:
        A non-negative number of seconds, or None when no usable header was given.
        ``Retry-After`` may be a number of seconds or an HTTP date.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000.0
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt (1 for the first).

    Args:
        attempt: How many attempts have failed so far.
        base: The first backoff window.
        cap: The longest wait, whatever the host asks for.
        retry_after: What the host asked for, if it did.
        rand: A uniform [0, 1) source (for tests).

    Returns:
        ``min(retry_after, cap)`` when the host asked; otherwise a "full jitter" wait,
        uniform in ``[0, min(cap, base * 2**(attempt - 1)))``.
    """
    if retry_after is not None:
        return min(retry_after, cap)
    return rand() * min(cap, base * 2.0 ** min(attempt - 1, 62))


def _display_url(url: URL) -> URL:
    """The URL without user info, query or fragment: safe for messages and metadata."""
    return url.with_user(None).with_query(None).with_fragment(None)


class _LoopSession:
    """A session and the async generator that closes it when its loop shuts down."""

    __slots__ = ("keeper", "limit", "session")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        keeper: AsyncGenerator[None, None],
        limit: int,
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
    its loop unclosed. It holds no reference to the backend.
    """
    try:
        yield
    finally:
        entry = sessions.get(loop)
        if entry is not None and entry.session is session:
            del sessions[loop]
        await session.close()


class OpenAICompatibleBackend(AsyncBackend):
    """Any host serving OpenAI's ``/v1/chat/completions``: vLLM, SGLang, TGI, OpenAI...

    Args:
        base_url: The API root, ending in ``/v1`` (e.g. ``"http://127.0.0.1:8000/v1"``);
            or several, for replicas serving the same model: each request goes to the
            live one with the fewest requests in flight, and a retry to another one.
        model: The model name the host serves.
        api_key: The bearer token; None reads the environment variable named by
            ``api_key_env``; no ``Authorization`` header is sent when neither is set.
            Kept as a :class:`~pydantic.SecretStr`, never shown.
        api_key_env: The environment variable to read the key from (default
            ``OPENAI_API_KEY``; ``VLLM_API_KEY`` for :class:`VLLMServerBackend`).
        timeout: Seconds allowed for one attempt, connection to last byte.
        max_retries: Further attempts after a retryable failure; fail-overs to a host
            the request has not tried yet are not counted (see the module doc).
        deadline: Seconds one request may take over all its attempts, backoff and
            waits for a host; None is ``10 * timeout``, ``math.inf`` no limit.
        max_concurrency: Requests in flight per :meth:`agenerate` call when the call
            passes none; also the least size of each loop's connection pool.
        backoff_base: The first backoff window, in seconds.
        backoff_max: The longest wait between attempts, in seconds.
        eject_after: Endpoint faults in a row (connection, timeout, 5xx) after which
            one of several hosts is ejected until a health probe re-admits it.
        cooldown: Seconds before an ejected host's first health probe; doubled after
            each failed probe or further ejection.
        cooldown_max: The longest cool-down, in seconds.
        headers: Extra HTTP headers for every request (never shown).
        extra_body: Fields merged into every request body (a request's own ``extra``
            wins over them).
        supports_repetition_penalty: Whether to send ``repetition_penalty``; None keeps
            the class default (False here: OpenAI's own API rejects unknown fields with
            a 400. vLLM and SGLang accept it; use :class:`VLLMServerBackend` for vLLM,
            or pass True).
        supports_continuation: Whether the host continues a final assistant message
            when sent vLLM's ``continue_final_message: true`` and
            ``add_generation_prompt: false`` (vLLM and SGLang do); None keeps the class
            default (False here).

    A :class:`~backends.base.Completion`'s ``latency_s`` runs from the moment its request
    got one of the ``max_concurrency`` slots to its reply, retries and backoff included.

    Raises:
        ValueError: For a base URL that is not http(s) or for non-positive limits.

    The backend cannot be pickled or copied (it holds the API key and live
    connections): build one per process.
    """

    name = "openai-compatible"
    supports_repetition_penalty: bool = False
    default_api_key_env: ClassVar[str] = "OPENAI_API_KEY"

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        *,
        api_key: SecretStr | str | None = None,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_concurrency: int = 64,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        deadline: float | None = None,
        eject_after: int = 2,
        cooldown: float = 1.0,
        cooldown_max: float = 30.0,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        supports_repetition_penalty: bool | None = None,
        supports_continuation: bool | None = None,
    ) -> None:
        super().__init__()
        urls = [URL(u.rstrip("/")) for u in ([base_url] if isinstance(base_url, str) else base_url)]
        if not urls or any(u.scheme not in ("http", "https") or not u.host for u in urls):
            raise ValueError("base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1'")
        if timeout <= 0 or max_concurrency < 1 or max_retries < 0:
            raise ValueError("timeout and max_concurrency must be positive, max_retries >= 0")
        if backoff_base < 0 or backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be >= 0")
        deadline = 10.0 * timeout if deadline is None else float(deadline)
        if not deadline > 0:
            raise ValueError("deadline must be positive (math.inf for none)")
        self._api_key: SecretStr | None = None
        self._authorization: SecretStr | None = None
        secrets: list[str] = []
        with_user = [u for u in urls if u.user is not None]
        if with_user:  # credentials in the URL: HTTP basic auth, never shown
            if api_key is not None or len(urls) > 1:
                raise ValueError(
                    "credentials in base_url need a single base_url and no api_key; "
                    "pass api_key (or headers) instead"
                )
            url = with_user[0]
            token = base64.b64encode(f"{url.user}:{url.password or ''}".encode()).decode()
            self._authorization = SecretStr(f"Basic {token}")
            secrets += [url.password or "", token]
            urls = [url.with_user(None)]
        else:
            if api_key is None:
                api_key = os.environ.get(api_key_env or self.default_api_key_env) or None
            if api_key is not None:
                self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
                key = self._api_key.get_secret_value()
                self._authorization = SecretStr(f"Bearer {key}")
                secrets.append(key)
        # Redacted from every message; too short to be a secret, a string is left alone.
        self._secrets = tuple(SecretStr(secret) for secret in secrets if len(secret) >= 4)
        self.base_urls: tuple[URL, ...] = tuple(urls)
        """Every API root (with any query, which may hold credentials: never show it)."""
        self.base_url = urls[0]
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.deadline = deadline
        self._headers = dict(headers or {})
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        if supports_repetition_penalty is not None:
            self.supports_repetition_penalty = supports_repetition_penalty
        if supports_continuation is not None:
            self.supports_continuation = supports_continuation
        self._chat_urls = tuple((u / "chat" / "completions").with_query(u.query) for u in urls)
        self._shown_chat_urls = tuple(str(_display_url(u)) for u in self._chat_urls)
        self._shown_base_urls = [str(_display_url(u)) for u in urls]
        self._pool = EndpointPool(
            len(urls),
            eject_after=eject_after,
            cooldown=cooldown,
            cooldown_max=cooldown_max,
            probe_stale_after=2 * _PROBE_TIMEOUT,
        )
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._waiters_lock = threading.Lock()
        self._probes: dict[asyncio.AbstractEventLoop, set[asyncio.Task[None]]] = {}
        self._sessions: dict[asyncio.AbstractEventLoop, _LoopSession] = {}
        self._closing: set[asyncio.Future[Any]] = set()

    # ----------------------------------------------------------------- public API

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled or copied: it holds an API key and "
            "live connections; build one in each process instead"
        )

    def __repr__(self) -> str:
        shown = self._shown_base_urls
        urls = f"base_url={shown[0]!r}" if len(shown) == 1 else f"base_urls={shown!r}"
        return f"{type(self).__name__}(model={self.model!r}, {urls})"

    def describe(self) -> dict[str, Any]:
        """Backend name, model and base URL (``base_urls`` too when several; no credentials)."""
        info: dict[str, Any] = {
            "backend": self.name,
            "model": self.model,
            "base_url": self._shown_base_urls[0],
        }
        if len(self._shown_base_urls) > 1:
            info["base_urls"] = list(self._shown_base_urls)
        return info

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        """The JSON body sent for ``request`` (the model, messages and sampling).

        ``repetition_penalty`` is sent only when set and the host supports it;
        ``logprobs`` / ``top_logprobs`` only when asked for; vLLM's
        ``continue_final_message`` / ``add_generation_prompt`` for a continuation; then
        :attr:`extra_body`,
        then the request's own ``extra``.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.repetition_penalty is not None and self.supports_repetition_penalty:
            body["repetition_penalty"] = request.repetition_penalty
        if request.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs
        if request.continue_final_message:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if self.extra_body:
            body.update(self.extra_body)
        if request.extra:
            body.update(request.extra)
        return body

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Send the requests, at most ``max_concurrency`` at a time; results in order.

        Never raises for a single request: a failure is returned as a
        :class:`~backends.errors.BackendError` in its place.

        Args:
            requests: The chat completions to run.
            max_concurrency: Requests in flight at once; defaults to the backend's.

        Returns:
            One :class:`~backends.base.Completion` or ``BackendError`` per request.

        Raises:
            ValueError: ``max_concurrency`` is less than 1.
        """
        count = len(requests)
        if count == 0:
            return []
        concurrency = self.max_concurrency if max_concurrency is None else int(max_concurrency)
        if concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        session = await self._session(concurrency)
        results: list[Result | None] = [None] * count
        pending = iter(range(count))  # shared: each worker takes the next index

        async def worker() -> None:
            for index in pending:
                results[index] = await self._complete(session, requests[index])

        workers = min(concurrency, count)
        if workers == 1:
            await worker()
        else:
            tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                raise
        return results  # type: ignore[return-value]  # every slot is filled

    def close(self) -> None:
        """Close every session: now on the private loop, scheduled on other loops."""
        super().close()
        self._close_on_other_loops()

    async def aclose(self) -> None:
        """Close every session: now on this loop and the private one, scheduled elsewhere."""
        await super().aclose()
        self._close_on_other_loops()

    # ------------------------------------------------------------------ sessions

    async def _session(self, concurrency: int | None = None) -> aiohttp.ClientSession:
        """The running loop's session, created on first use."""
        loop = asyncio.get_running_loop()
        entry = self._sessions.get(loop)
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
        limit = max(self.max_concurrency, concurrency or 0)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self._headers)
        if self._authorization is not None:
            headers["Authorization"] = self._authorization.get_secret_value()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=60.0),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        keeper = _keep_session(session, self._sessions, loop)
        self._sessions[loop] = _LoopSession(session, keeper, limit)
        await keeper.__anext__()  # registers it with the loop's async-generator hooks
        return session

    async def _aclose_on_current_loop(self) -> None:
        loop = asyncio.get_running_loop()
        probes = self._probes.pop(loop, set())
        for task in probes:
            task.cancel()
        if probes:
            await asyncio.gather(*probes, return_exceptions=True)
        entry = self._sessions.get(loop)
        if entry is not None:
            await entry.keeper.aclose()

    def _close_on_other_loops(self) -> None:
        """Close sessions bound to loops other than the private one, as far as sync code can.

        On the running loop and on loops running in other threads the closing is
        scheduled; an idle loop is run until its session is closed; a closed loop's
        session was closed when the loop shut down.
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, entry in self._sessions.copy().items():
            if loop.is_closed():
                self._sessions.pop(loop, None)
            elif loop is running:
                task = loop.create_task(entry.keeper.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(entry.keeper.aclose(), loop)
            elif running is None:
                loop.run_until_complete(entry.keeper.aclose())

    # ------------------------------------------------------------------ one request

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _complete(self, session: aiohttp.ClientSession, request: JudgeRequest) -> Result:
        """Send one request, retrying and failing over as the module doc says."""
        try:
            payload = _dumps(self.request_body(request))
        except (TypeError, ValueError) as exc:
            return BackendError(
                f"the request cannot be encoded as JSON ({type(exc).__name__}); never sent",
                backend=self.name,
                attempts=0,
            )
        pool = self._pool
        started = perf_counter()
        deadline = pool.clock() + self.deadline
        tried: set[int] = set()
        attempt = retries = 0
        error: BackendError | None = None
        while True:
            endpoint = await self._acquire(tried, deadline)
            if endpoint is None:
                return self._out_of_time(error)
            attempt += 1
            tried.add(endpoint)
            result: Completion | BackendError | None = None
            try:
                result = await self._attempt(
                    session, request, payload, endpoint, attempt, started, deadline
                )
            finally:
                self._release(endpoint, result)
            if isinstance(result, Completion):
                return result
            result.attempts = attempt
            error = result
            if not result.retryable:
                return result
            if _is_endpoint_fault(result) and pool.has_live(exclude=tried):
                logger.debug("failing over after attempt %d: %s", attempt, result)
                continue  # free: the host failed, not the request
            if retries >= self.max_retries:
                return result
            retries += 1
            delay = backoff_delay(
                retries,
                base=self.backoff_base,
                cap=self.backoff_max,
                retry_after=getattr(result, "retry_after", None),
            )
            if delay >= deadline - pool.clock():
                return _gave_up(
                    result,
                    f"waiting {_secs(delay)} s to retry would pass the "
                    f"{_secs(self.deadline)} s deadline",
                )
            logger.debug("retrying in %.3f s after attempt %d: %s", delay, attempt, result)
            await self._sleep(delay)

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        request: JudgeRequest,
        payload: bytes,
        endpoint: int,
        attempt: int,
        started: float,
        deadline: float = math.inf,
    ) -> Completion | BackendError:
        """One POST to ``self._chat_urls[endpoint]``: the completion, or the error."""
        shown = self._shown_chat_urls[endpoint]
        budget = min(self.timeout, deadline - self._pool.clock())
        options: dict[str, Any] = {}
        if budget < self.timeout:  # what is left of the deadline
            options["timeout"] = aiohttp.ClientTimeout(total=max(budget, 0.001))
        try:
            async with session.post(self._chat_urls[endpoint], data=payload, **options) as response:
                status = response.status
                body = await response.read()
                retry_after = parse_retry_after(response.headers) if status >= 300 else None
        except _TRANSPORT_ERRORS as exc:
            return self._transport_error(exc, shown, budget)
        if status >= 300:
            message = self._host_message(body, request)
            cls = BackendHTTPError
            if 400 <= status < 500 and status != 429 and _is_context_length(message, body):
                cls = BackendContextLengthError
            return cls(
                f"HTTP {status} from {shown}: {message}",
                status=status,
                retry_after=retry_after,
                backend=self.name,
            )
        return self._completion(body, request, shown, attempt, perf_counter() - started)

    # ------------------------------------------------------------------ endpoints

    async def _acquire(self, tried: set[int], deadline: float) -> int | None:
        """A host for the next attempt; waits while every one is ejected.

        Returns None once ``deadline`` has passed.
        """
        pool = self._pool
        waiting = False
        while True:
            self._start_probes()
            version = pool.version
            left = deadline - pool.clock()
            if left <= 0:
                return None
            endpoint = pool.acquire(tried)
            if endpoint is not None:
                return endpoint
            if not waiting:
                waiting = True
                logger.debug(
                    "every host is ejected; waiting up to %s s for one to return", _secs(left)
                )
            due = pool.seconds_until_due()
            await self._wait_for_pool(version, left if due is None else max(min(left, due), 1e-3))

    async def _wait_for_pool(self, version: int, timeout: float) -> None:
        """Wait until the pool's version moves on from ``version``, at most ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._waiters_lock:
            if self._pool.version != version:
                return
            self._waiters.add(waiter)
        try:
            if math.isinf(timeout):
                await future
            else:
                await asyncio.wait_for(future, timeout)
        except _TIMEOUT_ERRORS:
            pass
        finally:
            with self._waiters_lock:
                self._waiters.discard(waiter)

    def _notify(self) -> None:
        """Wake every request waiting for the pool to change, on whatever loop."""
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(_wake, future)

    def _release(self, endpoint: int, result: Completion | BackendError | None) -> None:
        """Tell the pool how an attempt on ``endpoint`` went."""
        if result is None:  # cancelled, or an unexpected exception
            ok: bool | None = None
        elif isinstance(result, Completion):
            ok = True
        elif _is_endpoint_fault(result):
            ok = False
        else:  # a 4xx shows the host serves; an unusable body says little
            ok = True if isinstance(result, BackendHTTPError) else None
        event = self._pool.release(endpoint, ok, str(result) if ok is False else "")
        if event is not None:
            self._log_event(event)
            self._notify()

    def _start_probes(self) -> None:
        """Start a background health probe for each host whose cool-down is over."""
        due = self._pool.due_probes()
        if not due:
            return
        self._notify()  # the pool changed: waiters re-read it
        loop = asyncio.get_running_loop()
        tasks = self._probes.setdefault(loop, set())

        def forget(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not tasks and self._probes.get(loop) is tasks:
                del self._probes[loop]  # hold no closed loop

        for endpoint in due:
            task = loop.create_task(self._probe(endpoint))
            tasks.add(task)
            task.add_done_callback(forget)

    def _probe_url(self, endpoint: int) -> URL:
        """What a health probe of ``endpoint`` GETs: ``{base_url}/models``."""
        base = self.base_urls[endpoint]
        return (base / "models").with_query(base.query)

    async def _probe(self, endpoint: int) -> None:
        """GET the host's health URL and tell the pool whether it answered below 500."""
        url = self._probe_url(endpoint)
        shown = str(_display_url(url))
        healthy: bool | None = None
        why = ""
        timeout = min(self.timeout, _PROBE_TIMEOUT)
        try:
            session = await self._session()
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.read()
                healthy = response.status < 500
                why = f"health probe {shown}: HTTP {response.status}"
        except _TRANSPORT_ERRORS as exc:
            healthy = False
            why = f"health probe: {self._transport_error(exc, shown, timeout)}"
        except Exception as exc:  # e.g. the session closed under it: probe again later
            logger.debug("health probe of %s abandoned: %s", shown, type(exc).__name__)
        finally:
            event = self._pool.probe_done(endpoint, healthy, why)
            if event is not None:
                self._log_event(event)
            self._notify()

    def _log_event(self, event: PoolEvent) -> None:
        shown, size = self._shown_base_urls[event.index], self._pool.size
        if event.kind == "readmitted":
            logger.info(
                "%s re-admitted after a healthy probe (%d of %d hosts live)",
                shown,
                event.live,
                size,
            )
            return
        last = self._pool.state(event.index).last_error
        if event.kind == "ejected":
            logger.warning(
                "%s ejected for %.3g s after %d failures in a row (%d of %d hosts live): %s",
                shown,
                event.cooldown,
                event.failures,
                event.live,
                size,
                last,
            )
        else:
            logger.info("%s still down; next probe in %.3g s: %s", shown, event.cooldown, last)

    def _out_of_time(self, error: BackendError | None) -> BackendError:
        """The error for a request whose deadline passed before it could be sent again."""
        deadline = _secs(self.deadline)
        if self._pool.live_count == 0:
            why = f"no host came back within the {deadline} s deadline"
        else:
            why = f"the {deadline} s deadline passed"
        if error is not None:
            return _gave_up(error, why)
        faults = "; ".join(
            f"{self._shown_base_urls[index]}: {fault}"
            for index, fault in self._pool.last_errors()[:3]
            if fault
        )
        return BackendConnectionError(
            f"never sent: every host is ejected after failing ({faults or 'no detail'}); {why}",
            backend=self.name,
            attempts=0,
        )

    def _completion(
        self, body: bytes, request: JudgeRequest, shown: str, attempts: int, latency: float
    ) -> Completion | BackendError:
        """Parse a 200 body into a :class:`Completion`."""
        try:
            data = _loads(body)
        except ValueError:
            data = self._loads_lenient(body)
            if data is None:
                return self._unusable(shown, "the body is not valid JSON (truncated?)")
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content")
            if text is None:  # e.g. everything went to a reasoning parser
                text = ""
            elif not isinstance(text, str):
                raise TypeError("content is not a string")
            usage = data.get("usage") or {}
            logprobs = None
            choice_logprobs = choice.get("logprobs")
            if choice_logprobs and choice_logprobs.get("content") is not None:
                logprobs = tuple(_token_logprob(item) for item in choice_logprobs["content"])
            return Completion(
                text=text,
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                logprobs=logprobs,
                model=data.get("model") or self.model,
                latency_s=latency,
                attempts=attempts,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return self._unusable(shown, self._why_not_a_completion(data, request))

    # ------------------------------------------------------------------ helpers

    def _transport_error(
        self, exc: BaseException, url: str, timeout: float | None = None
    ) -> BackendError:
        """The typed error for an exception raised while talking to ``url``."""
        if isinstance(exc, _TIMEOUT_ERRORS):
            timeout = self.timeout if timeout is None else timeout
            return BackendTimeoutError(
                f"no complete reply from {url} within {_secs(timeout)} s", backend=self.name
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return BackendResponseError(
                f"truncated reply from {url}: {self._safe(str(exc))}", backend=self.name
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            return BackendResponseError(
                f"invalid HTTP reply from {url}: {self._safe(exc.message)}", backend=self.name
            )
        return BackendConnectionError(
            f"connection to {url} failed: {type(exc).__name__}: {self._safe(str(exc))}",
            backend=self.name,
        )

    @staticmethod
    def _loads_lenient(body: bytes) -> Any:
        """Parse with the stdlib (which takes NaN / Infinity), or None."""
        try:
            return json.loads(body)
        except ValueError:
            return None

    def _safe(self, text: str, request: JudgeRequest | None = None) -> str:
        secrets = [secret.get_secret_value() for secret in self._secrets]
        fragments = _request_fragments(request) if request is not None else ()
        return scrub(text, secrets, cut_at=fragments)

    def _host_message(self, body: bytes, request: JudgeRequest | None = None) -> str:
        """The host's error message from an error body, made safe."""
        data: Any = None
        if len(body) <= _MAX_ERROR_BODY_BYTES:
            try:
                data = _loads(body)
            except ValueError:
                data = None
        message: Any = None
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict):
                message = error.get("message")
            elif isinstance(error, str):
                message = error
            message = message or data.get("message") or data.get("detail")
        if message is None:
            message = body[:_MAX_ERROR_BODY_BYTES].decode("utf-8", "replace")
        text = self._safe(message if isinstance(message, str) else str(message), request)
        return text or "(no message)"

    def _why_not_a_completion(self, data: Any, request: JudgeRequest) -> str:
        if not isinstance(data, dict):
            return f"the body is a JSON {type(data).__name__}, not an object"
        if data.get("error"):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            return f"the body is an error: {self._safe(str(message), request)}"
        choices = data.get("choices")
        if not choices or not isinstance(choices, list):
            return "the body has no choices"
        return "choices[0] is not a chat message"

    def _unusable(self, url: str, reason: str) -> BackendResponseError:
        return BackendResponseError(f"unusable reply from {url}: {reason}", backend=self.name)


def _is_endpoint_fault(error: BackendError) -> bool:
    """Whether ``error`` speaks against the host (connection, timeout, 5xx)."""
    if isinstance(error, (BackendConnectionError, BackendTimeoutError)):
        return True
    return isinstance(error, BackendHTTPError) and error.status >= 500


def _is_context_length(message: str, body: bytes) -> bool:
    """Whether a 4xx says the prompt does not fit (judged on the scrubbed message)."""
    return says_context_length(message) or b"context_length_exceeded" in body


def _gave_up(error: BackendError, why: str) -> BackendError:
    """``error``, its message saying why no further attempt was made."""
    error.args = (f"{error.args[0] if error.args else error}; gave up: {why}",)
    return error


def _secs(seconds: float) -> str:
    """Seconds for a message: ``60``, ``0.3``, ``12.346``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _token_logprob(item: Mapping[str, Any]) -> TokenLogprob:
    """One entry of ``choices[0].logprobs.content``; alternatives best first."""
    top = item.get("top_logprobs") or ()
    alternatives = sorted(
        ((alt["token"], float(alt["logprob"])) for alt in top), key=lambda pair: -pair[1]
    )
    return TokenLogprob(item["token"], float(item["logprob"]), tuple(alternatives))


__all__ = ["OpenAICompatibleBackend", "backoff_delay", "parse_retry_after", "scrub"]
