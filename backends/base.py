"""What every backend takes and returns, and the two ways a backend does its I/O.

A backend receives :class:`JudgeRequest` objects (OpenAI-style chat messages plus the
sampling to use) and returns one :class:`Completion` or one :class:`BackendError` per
request, in order. It knows nothing of prompts or scores.

Backends write their I/O once, in whichever form is native to them:

* :class:`AsyncBackend` (HTTP hosts) implements :meth:`Backend.agenerate`; the sync
  :meth:`Backend.generate` drives it on a private event loop in a daemon thread, so a
  sync call works whether or not the caller already runs an event loop.
* :class:`SyncBackend` (the in-process engine) implements :meth:`Backend.generate`;
  :meth:`Backend.agenerate` runs it in a worker thread, one batch at a time.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from backends.errors import BackendError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One chat completion to run.

    Attributes:
        messages: OpenAI-style chat messages (content parts for images).
        max_tokens: Most tokens to generate.
        temperature: Sampling temperature; 0 is greedy.
        repetition_penalty: vLLM's repetition penalty; None leaves the model default.
        top_logprobs: How many alternatives to return per generated token; None for no
            logprobs.
        extra: Backend-specific request fields (e.g. vLLM's ``structured_outputs``).
        continue_final_message: The last message is an assistant message the model
            continues (no new assistant turn is opened), as vLLM's
            ``continue_final_message`` / ``add_generation_prompt=false`` do. Only
            backends with :attr:`Backend.supports_continuation` honour it.
    """

    messages: list[dict[str, Any]]
    max_tokens: int = 16
    temperature: float = 0.0
    repetition_penalty: float | None = 1.0
    top_logprobs: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    continue_final_message: bool = False

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters, as recorded in a score's metadata."""
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.repetition_penalty is not None:
            params["repetition_penalty"] = self.repetition_penalty
        if self.top_logprobs is not None:
            params["logprobs"] = True
            params["top_logprobs"] = self.top_logprobs
        if self.continue_final_message:
            params["continue_final_message"] = True
        params.update(self.extra)
        return params


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token with its log probability and the top alternatives.

    Attributes:
        token: The generated token's text.
        logprob: Its log probability.
        top: The top alternatives at this position, ``(token, logprob)``, best first.
    """

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """What the model said for one request.

    Attributes:
        text: The generated text.
        finish_reason: Why generation stopped (``"stop"``, ``"length"``, ...).
        prompt_tokens: Prompt length in tokens, when the backend reports it.
        completion_tokens: Generated tokens, when the backend reports it.
        logprobs: Per-token log probabilities, when they were asked for.
        model: The model that answered, as the backend names it.
        latency_s: Wall time of this request (for a batch-native backend, of its batch).
        attempts: How many times the request was sent.
        cached: Whether it was answered from a cache (``backends.caching``), not the model.
    """

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    model: str | None = None
    latency_s: float | None = None
    attempts: int = 1
    cached: bool = False

    def usage(self) -> dict[str, int] | None:
        """Token usage in OpenAI's shape, or None when the backend gave none."""
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


Result = Completion | BackendError


def content_text(content: Any) -> str:
    """The text of a chat message's content: a string, or its text blocks joined."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text") or ""))
    return "".join(parts)


class Backend(ABC):
    """A way to run chat completions for the judge.

    Subclasses set :attr:`name` (the registry name) and :attr:`model`, and implement
    one of :meth:`generate` / :meth:`agenerate` through :class:`SyncBackend` or
    :class:`AsyncBackend`.
    """

    name: str = "backend"
    model: str = ""
    supports_repetition_penalty: bool = True
    supports_structured_outputs: bool = False
    supports_continuation: bool = False
    """Whether :attr:`JudgeRequest.continue_final_message` is honoured."""

    @abstractmethod
    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Run requests; one result per request, in order. Never raises per request."""

    @abstractmethod
    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Async :meth:`generate`."""

    def describe(self) -> dict[str, Any]:
        """Provenance for traces and metadata; never secrets."""
        return {"backend": self.name, "model": self.model}

    def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
        """The sampling fields this backend sends for ``request``, as recorded in metadata.

        Backends that add or rename fields (a server's default body, a legacy field name)
        override it so the record shows what the model was really asked.
        """
        return request.sampling()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (connections, engines, servers)."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


class SyncBackend(Backend):
    """A backend whose native I/O is blocking and batch-shaped (e.g. ``vllm.LLM``)."""

    def __init__(self) -> None:
        self._batch_lock = threading.Lock()

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Run the blocking batch in a worker thread; batches run one at a time."""
        return await asyncio.to_thread(self._locked_generate, requests, max_concurrency)

    def _locked_generate(
        self, requests: Sequence[JudgeRequest], max_concurrency: int | None
    ) -> list[Result]:
        with self._batch_lock:
            return self.generate(requests, max_concurrency=max_concurrency)


class _LoopThread:
    """A private event loop in a daemon thread, for driving async code from sync code.

    The loop is started on first use. :meth:`stop` shuts it down the way
    :func:`asyncio.run` does (pending tasks cancelled, async generators finalized, the
    default executor joined, the loop closed), so resources bound to it can clean up
    on the loop itself. It may be started again afterwards.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether the loop is running (resources may be bound to it)."""
        return self._loop is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name="thinking-judge-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.loop
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync backend call cannot run on the backend's own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def stop(self) -> None:
        """Shut the loop down and wait for its thread (unless called from it)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # already closed
            return
        if thread is not threading.current_thread():
            thread.join()


class AsyncBackend(Backend):
    """A backend whose native I/O is async (HTTP hosts).

    Subclasses bind their resources (e.g. HTTP sessions) to the event loop they are
    used on and release them in :meth:`_aclose_on_current_loop`. The private loop that
    serves the sync API is shut down by :meth:`close` / :meth:`aclose`, and also when
    the backend is garbage-collected or the interpreter exits.
    """

    def __init__(self) -> None:
        self._sync_runner = _LoopThread()
        weakref.finalize(self, self._sync_runner.stop)

    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Drive :meth:`agenerate` on the backend's private loop and wait for it."""
        return self._sync_runner.run(self.agenerate(requests, max_concurrency=max_concurrency))

    def close(self) -> None:
        """Close what was opened on the private loop, then stop that loop."""
        runner = self._sync_runner
        if runner.started:
            runner.run(self._aclose_on_current_loop())
        runner.stop()

    async def aclose(self) -> None:
        """Close what was opened on the running loop and on the private loop."""
        await self._aclose_on_current_loop()
        runner = self._sync_runner
        if runner.started:
            future = asyncio.run_coroutine_threadsafe(self._aclose_on_current_loop(), runner.loop)
            await asyncio.wrap_future(future)
        runner.stop()

    async def _aclose_on_current_loop(self) -> None:
        """Release the resources bound to the running event loop."""


__all__ = [
    "AsyncBackend",
    "Backend",
    "Completion",
    "JudgeRequest",
    "Result",
    "SyncBackend",
    "TokenLogprob",
    "content_text",
]
