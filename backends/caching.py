"""A content-addressed on-disk cache of completions, as a wrapper around any backend.

::

    cache = JudgmentCache("judgments.sqlite", namespace="", timeout=2.0, strict=False)
    backend = CachingBackend(inner, cache, cacheable=None)
    backend.generate(requests)   # misses go to ``inner``, and are stored
    backend.generate(requests)   # every one answered from the file: ``Completion.cached``

:class:`CachingBackend` ``(inner: Backend, store: JudgmentCache, *, cacheable:
Callable[[JudgeRequest, Completion], bool] | None = None)`` is a :class:`Backend`: it
answers what the store holds and sends only the rest to ``inner``. It sees every
request, so the judge's continuation requests (for the expected score) are cached like
its answers. ``ThinkingRewardJudge(cache=...)`` wraps its backend in one.

**Key.** SHA-256 over canonical JSON of: the model (``describe()["model"]``, else
``inner.model``), its revision when ``describe()`` carries one (``model_revision`` or
``revision``), the request's messages as sent (images are in them as encoded bytes, so
the key follows image *content*, not file names), the sampling the backend really sends
(``inner.sent_sampling(request)``: temperature, max tokens, logprobs, structured
outputs, ``continue_final_message``...) and the store's ``namespace``. A served model
name says nothing about the weights behind it: give a different file or ``namespace``
to a different model served under the same name.

**Value.** The :class:`~backends.base.Completion` (text, finish reason, token counts,
logprobs, model, and the original request's latency and attempts) as JSON. Only
completions are stored, never a :class:`~backends.errors.BackendError` (a transient
error must not stick); ``cacheable`` may refuse more (the judge refuses answers that
are not scores). A hit is the stored completion with ``cached=True``.

**Concurrency.** One SQLite file in WAL mode, shared safely by several threads and
processes (a store can be pickled, e.g. into Ray actors or ``multiprocessing`` workers;
each process opens its own connection). Reads are one ``SELECT`` per batch; writes are
one short ``INSERT OR REPLACE`` transaction per batch, waiting up to ``timeout`` seconds
(2 by default) for another writer. :meth:`CachingBackend.agenerate` does its file I/O in a worker
thread, off the event loop.

**Errors.** The file is checked when the store is made: a file that is not a SQLite
database, or a database that is not this cache (or of another schema), raises
:class:`~backends.errors.CacheError`. A file locked by another process is not unusable:
a valid cache opens and is read while another process writes it. Later, a read or write
that fails (locked beyond ``timeout``, disk full, file damaged meanwhile) is bypassed (a
lookup misses, a completion is not stored), so a request never fails because of its
cache, with one :class:`CacheWarning` per store and kind of failure (locked, or another
error), not one per record. While the file stays locked, each operation waits only
briefly; the first one that succeeds ends that. ``strict=True`` raises
:class:`~backends.errors.CacheError` instead.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from backends.base import Backend, Completion, JudgeRequest, Result
from backends.cache_store import (
    KEY_VERSION,
    SCHEMA_VERSION,
    CacheStats,
    CacheWarning,
    JudgmentCache,
)
from backends.errors import CacheError

Cacheable = Callable[[JudgeRequest, Completion], bool]
"""Whether a completion may be stored (a BackendError never is)."""


def request_key(
    *,
    model: str | None,
    messages: Sequence[Mapping[str, Any]],
    sampling: Mapping[str, Any],
    revision: str | None = None,
    namespace: str = "",
) -> str:
    """The cache key of one request (hex SHA-256).

    Args:
        model: The model the backend sends the request to.
        messages: The chat messages as sent, images included.
        sampling: The sampling fields the backend sends (``Backend.sent_sampling``).
        revision: The model's revision, when the backend knows it; left out when None.
        namespace: Separates caches of different models served under one name.

    Returns:
        64 hex digits.

    Raises:
        TypeError: The messages or sampling are not JSON (e.g. a lone surrogate).
    """
    payload: dict[str, Any] = {
        "v": KEY_VERSION,
        "model": model,
        "messages": messages,
        "sampling": sampling,
    }
    if revision is not None:
        payload["revision"] = revision
    if namespace:
        payload["namespace"] = namespace
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class CachingBackend(Backend):
    """A backend that answers from a :class:`JudgmentCache` and asks ``inner`` the rest.

    Args:
        inner: The backend that runs the misses.
        store: Where completions are kept.
        cacheable: Decides whether a successful completion is stored; None stores
            every one. BackendErrors are never stored.

    Example:
        ```python
        backend = CachingBackend(VLLMServerBackend(base_url=url, model=name),
                                 JudgmentCache("judgments.sqlite"))
        [first] = backend.generate([request])    # first.cached is False
        [again] = backend.generate([request])    # again.cached is True: no request sent
        ```
    """

    def __init__(
        self, inner: Backend, store: JudgmentCache, *, cacheable: Cacheable | None = None
    ) -> None:
        self.inner = inner
        self.store = store
        self.cacheable = cacheable
        # What the inner backend is (fixed when it is made): the judge reads these.
        self.name = inner.name
        self.model = inner.model
        self.supports_repetition_penalty = inner.supports_repetition_penalty
        self.supports_structured_outputs = inner.supports_structured_outputs
        self.supports_continuation = inner.supports_continuation

    # -- forwarded to the inner backend --------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The inner backend's provenance."""
        return self.inner.describe()

    def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
        """The sampling the inner backend sends for ``request``."""
        return self.inner.sent_sampling(request)

    def close(self) -> None:
        """Close the inner backend (the store stays usable: it may be shared)."""
        self.inner.close()

    async def aclose(self) -> None:
        """Close the inner backend (async)."""
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"CachingBackend({self.inner!r}, {self.store!r})"

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Answer hits from the store, send the misses to ``inner``, store what came back."""
        keys, results = self._look_up(requests)
        misses = [i for i, result in enumerate(results) if result is None]
        if misses:
            sent = self.inner.generate(
                [requests[i] for i in misses], max_concurrency=max_concurrency
            )
            self._store(requests, keys, misses, sent, results)
        return results  # type: ignore[return-value]  # every slot filled

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Async :meth:`generate`; hashing and file I/O run in a worker thread."""
        keys, results = await asyncio.to_thread(self._look_up, requests)
        misses = [i for i, result in enumerate(results) if result is None]
        if misses:
            sent = await self.inner.agenerate(
                [requests[i] for i in misses], max_concurrency=max_concurrency
            )
            await asyncio.to_thread(self._store, requests, keys, misses, sent, results)
        return results  # type: ignore[return-value]  # every slot filled

    def _keys(self, requests: Sequence[JudgeRequest]) -> list[str | None]:
        """Each request's key; None for one that cannot be keyed (then never cached)."""
        info = self.inner.describe()
        model = info.get("model") or self.inner.model
        revision = info.get("model_revision") or info.get("revision")
        keys: list[str | None] = []
        for request in requests:
            try:
                key: str | None = request_key(
                    model=model,
                    messages=request.messages,
                    sampling=self.inner.sent_sampling(request),
                    revision=None if revision is None else str(revision),
                    namespace=self.store.namespace,
                )
            except TypeError:  # not JSON: the backend will say what is wrong with it
                key = None
            keys.append(key)
        return keys

    def _look_up(
        self, requests: Sequence[JudgeRequest]
    ) -> tuple[list[str | None], list[Result | None]]:
        """The keys, and the stored completion of each request (None for a miss)."""
        keys = self._keys(requests)
        found = self.store.get_many([key for key in keys if key is not None])
        misses = sum(key is None for key in keys)
        self.store.stats.misses += misses  # unkeyable requests miss too
        return keys, [None if key is None else found.get(key) for key in keys]

    def _store(
        self,
        requests: Sequence[JudgeRequest],
        keys: Sequence[str | None],
        misses: Sequence[int],
        sent: Sequence[Result],
        results: list[Result | None],
    ) -> None:
        """Put the inner results in their slots; store the cacheable completions."""
        if len(sent) != len(misses):
            raise RuntimeError(
                f"the {self.inner.name!r} backend returned {len(sent)} results "
                f"for {len(misses)} requests"
            )
        rows: list[tuple[str, Completion]] = []
        for index, result in zip(misses, sent, strict=True):
            results[index] = result
            key = keys[index]
            if (
                key is not None
                and isinstance(result, Completion)
                and (self.cacheable is None or self.cacheable(requests[index], result))
            ):
                rows.append((key, result))
        if rows:
            self.store.put_many(rows)


__all__ = [
    "KEY_VERSION",
    "SCHEMA_VERSION",
    "CacheError",
    "CacheStats",
    "CacheWarning",
    "Cacheable",
    "CachingBackend",
    "JudgmentCache",
    "request_key",
]
