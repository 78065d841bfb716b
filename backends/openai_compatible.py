"""Any OpenAI-compatible ``/v1/chat/completions`` host, over a lean pooled aiohttp client.

The judge must never be the bottleneck of an evaluation or an RL loop, so the hot path
is plain: one pooled :class:`Session` per event loop, request bodies
encoded with ``orjson`` (a 45 KB image encodes in 5 us, against 200 us with the
stdlib's ``json``), replies read as dicts, no pydantic.

Layers. This backend is configuration and profile hooks (:meth:`~OpenAICompatibleBackend.
request_body`, :meth:`~OpenAICompatibleBackend.sent_sampling`,
:meth:`~OpenAICompatibleBackend.describe`, :meth:`~OpenAICompatibleBackend.probe_url`)
over four modules it shares with every other HTTP user of the project:
:mod:`backends.openai_wire` (bodies, parsing, scrubbing), :mod:`backends.transport`
(the aiohttp sessions, typed errors), :mod:`backends.retries` (tenacity: backoff,
``Retry-After``, deadline) and :mod:`backends.replicas` (the pool of hosts). A host
profile such as :class:`~backends.vllm_server.VLLMServerBackend` subclasses it and
overrides the hooks; its own GETs go through :attr:`OpenAICompatibleBackend.transport`.

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
a reply longer than ``max_reply_bytes``     ``BackendResponseError``       no        no
(a 2xx; unread past it)
HTTP 4xx saying the prompt exceeds the      ``BackendContextLengthError``  no        no
model's context (vLLM's "maximum context
length" / "maximum model length")
any other HTTP status (3xx: not followed,   ``BackendHTTPError``           no        no
400, 401, 404, 422)
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
message, cut to about 300 characters, scrubbed of the API key, of every ``headers``
value and base-URL query value, and of any echo of their first or last characters
or of a masked form (``sk-ab...wxyz``), of base64 data URLs and long base64 runs, and
cut where the host starts echoing the request (an ``"input":`` / ``"messages":`` /
``"content":`` key, or the start of one of the request's texts). They never contain
the request body. Whatever a 200 holds, its request gets a well-typed completion or a
``BackendResponseError`` (see :func:`~backends.openai_wire.parse_completion`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from functools import partial
from time import perf_counter
from typing import Any, ClassVar

from pydantic import SecretStr
from yarl import URL

from backends.base import AsyncBackend, Completion, JudgeRequest, Result
from backends.errors import BackendError, BackendResponseError
from backends.openai_wire import (
    NotACompletion,
    chat_body,
    display_url,
    dumps,
    parse_completion,
    parse_retry_after,
    request_fragments,
    scrub,
)
from backends.replicas import Replicas
from backends.retries import (
    RetryPolicy,
    Tries,
    backoff_delay,
    bounded_map,
    retry,
    seconds,
    settled,
)
from backends.transport import MAX_REPLY_BYTES, Reply, Session, Transport, credentials

_PROBE_TIMEOUT = 5.0


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
        headers: Extra HTTP headers for every request (never shown: their values are
            scrubbed from every message, as the API key and the URL's query values are).
        max_reply_bytes: The most of a reply body read (default 4 MiB); a longer reply
            fails its request, unread and not retried.
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
        max_reply_bytes: int = MAX_REPLY_BYTES,
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
        if api_key is None and not any(u.user is not None for u in urls):
            api_key = os.environ.get(api_key_env or self.default_api_key_env) or None
        urls, authorization, secrets = credentials(urls, api_key)
        self.base_urls: tuple[URL, ...] = tuple(urls)
        """Every API root (with any query, which may hold credentials: never show it)."""
        self.base_url = urls[0]
        self.model = model
        self.timeout = float(timeout)
        self.max_concurrency = int(max_concurrency)
        self.retry_policy = RetryPolicy(
            int(max_retries), float(backoff_base), float(backoff_max), deadline
        )
        """How a request is retried (see the module doc)."""
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        if supports_repetition_penalty is not None:
            self.supports_repetition_penalty = supports_repetition_penalty
        if supports_continuation is not None:
            self.supports_continuation = supports_continuation
        self._chat_urls = tuple((u / "chat" / "completions").with_query(u.query) for u in urls)
        self._shown_chat_urls = tuple(display_url(u) for u in self._chat_urls)
        self.transport = Transport(
            name=self.name,
            timeout=self.timeout,
            limit=self.max_concurrency,
            headers=headers,
            authorization=authorization,
            secrets=secrets,
            max_reply_bytes=max_reply_bytes,
        )
        """The HTTP client: every request of this backend (and of a profile's GETs) uses it."""
        self.replicas = Replicas(
            [display_url(u) for u in urls],
            get=self.transport.get,
            probe_url=self.probe_url,
            probe_timeout=min(self.timeout, _PROBE_TIMEOUT),
            eject_after=eject_after,
            cooldown=cooldown,
            cooldown_max=cooldown_max,
        )
        """The hosts, their ejection and probes (a single one is never ejected)."""

    @property
    def max_retries(self) -> int:
        """Paid retries after a retryable failure."""
        return self.retry_policy.max_retries

    @property
    def backoff_base(self) -> float:
        """The first backoff window, in seconds."""
        return self.retry_policy.backoff_base

    @property
    def backoff_max(self) -> float:
        """The longest wait between attempts, in seconds."""
        return self.retry_policy.backoff_max

    @property
    def deadline(self) -> float:
        """Seconds one request may take over all its attempts."""
        return self.retry_policy.deadline

    # ----------------------------------------------------------------- public API

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled or copied: it holds an API key and "
            "live connections; build one in each process instead"
        )

    def __repr__(self) -> str:
        shown = list(self.replicas.shown)
        urls = f"base_url={shown[0]!r}" if len(shown) == 1 else f"base_urls={shown!r}"
        return f"{type(self).__name__}(model={self.model!r}, {urls})"

    def describe(self) -> dict[str, Any]:
        """Backend name, model and base URL (``base_urls`` too when several; no credentials)."""
        shown = self.replicas.shown
        info: dict[str, Any] = {"backend": self.name, "model": self.model, "base_url": shown[0]}
        if len(shown) > 1:
            info["base_urls"] = list(shown)
        return info

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        """The JSON body sent for ``request`` (see :func:`~backends.openai_wire.chat_body`).

        ``repetition_penalty`` is sent only when set and the host supports it;
        ``logprobs`` / ``top_logprobs`` only when asked for; vLLM's
        ``continue_final_message`` / ``add_generation_prompt`` for a continuation; then
        :attr:`extra_body`, then the request's own ``extra``.
        """
        return chat_body(
            request,
            model=self.model,
            extra_body=self.extra_body,
            repetition_penalty=self.supports_repetition_penalty,
        )

    def probe_url(self, index: int) -> URL:
        """What a health probe of replica ``index`` GETs: ``{base_url}/models``.

        A profile overrides it (vLLM's ``GET /health``); an answer below 500 re-admits
        an ejected replica.
        """
        base = self.base_urls[index]
        return (base / "models").with_query(base.query)

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
        if not requests:
            return []
        concurrency = self.max_concurrency if max_concurrency is None else int(max_concurrency)
        if concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        session = await self.transport.session(concurrency)
        return await bounded_map(partial(self._complete, session), requests, concurrency)

    def close(self) -> None:
        """Close every session: now on the private loop, scheduled on other loops."""
        super().close()
        self.transport.close_elsewhere()

    async def aclose(self) -> None:
        """Close every session: now on this loop and the private one, scheduled elsewhere."""
        await super().aclose()
        self.transport.close_elsewhere()

    async def _aclose_on_current_loop(self) -> None:
        await self.replicas.aclose_on_current_loop()
        await self.transport.aclose_on_current_loop()

    # ------------------------------------------------------------------ one request

    async def _sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    async def _complete(self, session: Session, request: JudgeRequest) -> Result:
        """Send one request, retrying and failing over as the module doc says."""
        try:
            payload = dumps(self.request_body(request))
        except (TypeError, ValueError) as exc:
            return BackendError(
                f"the request cannot be encoded as JSON ({type(exc).__name__}); never sent",
                backend=self.name,
                attempts=0,
            )
        clock = self.replicas.pool.clock
        attempt = partial(self._attempt, session, request, payload, perf_counter())
        tries = Tries(clock() + self.retry_policy.deadline)
        first = await attempt(tries)
        if settled(first, tries):  # the hot path: no tenacity (see backends.retries)
            return first
        return await retry(
            attempt,
            first,
            tries,
            self.retry_policy,
            clock=clock,
            sleep=self._sleep,
            fails_over=self.replicas.fails_over,
        )

    async def _attempt(
        self,
        session: Session,
        request: JudgeRequest,
        payload: bytes,
        started: float,
        tries: Tries,
    ) -> Result:
        """One POST to the replica :class:`~backends.replicas.Replicas` picks."""
        replicas = self.replicas
        endpoint = replicas.acquire_now(tries.tried, tries.deadline)
        if endpoint is None:  # every host is ejected (or the deadline passed): wait
            endpoint = await replicas.acquire(tries.tried, tries.deadline)
        if endpoint is None:
            tries.final = True
            return replicas.out_of_time(tries.last, seconds(self.retry_policy.deadline), self.name)
        tries.number += 1
        tries.tried.add(endpoint)
        shown = self._shown_chat_urls[endpoint]
        result: Result | None = None
        try:
            reply = await self.transport.post(
                self._chat_urls[endpoint],
                payload,
                shown=shown,
                timeout=min(self.timeout, tries.deadline - replicas.pool.clock()),
                session=session,
            )
            result = self._result(reply, request, shown, tries.number, started)
        finally:
            replicas.release(endpoint, result)
        if not isinstance(result, Completion):
            result.attempts = tries.number
        return result

    def _result(
        self,
        reply: Reply | BackendError,
        request: JudgeRequest,
        shown: str,
        attempts: int,
        started: float,
    ) -> Result:
        """The completion in a reply, or the typed error."""
        if isinstance(reply, BackendError):
            return reply
        status, body, retry_after = reply
        if status >= 300:
            return self.transport.http_error(
                status, body, shown, retry_after=retry_after, cut_at=request_fragments(request)
            )
        try:
            return parse_completion(
                body,
                model=self.model,
                latency=perf_counter() - started,
                attempts=attempts,
                safe=lambda text: self.transport.safe(text, request_fragments(request)),
            )
        except NotACompletion as exc:
            return BackendResponseError(f"unusable reply from {shown}: {exc}", backend=self.name)


__all__ = ["OpenAICompatibleBackend", "backoff_delay", "parse_retry_after", "scrub"]
