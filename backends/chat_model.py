"""Any LangChain chat model as a backend: ``ChatOpenAI`` pointed at any host, and others.

:class:`ChatModelBackend` hands the judge's requests to a
:class:`~langchain_core.language_models.BaseChatModel` through its own ``batch`` /
``abatch``, so everything configured on the chat model applies: its rate limiter, its
client's retries and timeouts, its callbacks and tracing::

    from langchain_core.rate_limiters import InMemoryRateLimiter
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url="http://127.0.0.1:8000/v1", model="thinking-reward-model",
                     api_key="EMPTY", rate_limiter=InMemoryRateLimiter(requests_per_second=50))
    backend = ChatModelBackend(llm, supports_repetition_penalty=True,  # what vLLM honours
                               supports_structured_outputs=True, supports_continuation=True)
    judge = ThinkingRewardJudge(backend=backend)

Messages. ``JudgeRequest.messages`` (OpenAI-style dicts; images as ``image_url`` parts
with data URLs) become LangChain messages through
:func:`~langchain_core.messages.convert_to_messages`; content parts are kept as they
are, so ``ChatOpenAI`` sends the images as ``image_url`` parts (and other chat models
convert OpenAI-format image parts their own way).

Sampling. A request's fields reach the chat model as invocation kwargs, the way its
own ``invoke(..., **kwargs)`` takes them, and only for fields its class declares:

- ``max_tokens`` and ``temperature`` when it has such fields (``ChatOpenAI``,
  ``ChatAnthropic``...). A chat model without them answers with its own settings;
  the backend logs a warning once, when it is built.
- ``logprobs=True, top_logprobs=k`` when it has both fields (``ChatOpenAI``);
  otherwise no logprobs come back (``Completion.logprobs`` is None).
- ``repetition_penalty``, only with ``supports_repetition_penalty=True``: as a kwarg
  when the chat model declares the field, otherwise in ``extra_body``; without the
  flag it is not sent (as :class:`~backends.openai_compatible.OpenAICompatibleBackend`
  does; the judge then leaves it unset).
- ``JudgeRequest.extra`` (e.g. vLLM's ``structured_outputs``), only with
  ``supports_structured_outputs=True``: merged into ``extra_body`` when the chat model
  has that field (OpenAI-compatible hosts), else passed as invocation kwargs.
- ``continue_final_message``, only with ``supports_continuation=True``: vLLM's
  ``continue_final_message: true, add_generation_prompt: false`` in ``extra_body``
  when the chat model has that field; a chat model without it gets the final
  assistant message as it is (chat APIs that prefill, such as Anthropic's, continue it).

The chat model's own ``extra_body`` is kept: the request's fields are merged over it.
A request carrying ``extra`` or a continuation the backend was not told the chat
model honours is not sent: its result is a :class:`~backends.errors.BackendError`
saying so (``attempts=0``), never a completion that silently ignored it.

Batches. One :meth:`~ChatModelBackend.agenerate` call is one ``await
llm.abatch(messages, configs, return_exceptions=True, **kwargs)`` (the sync
:meth:`~ChatModelBackend.generate` calls ``llm.batch`` likewise), with
``max_concurrency`` in the config. Requests whose invocation kwargs differ go in
separate, consecutive calls (a judge's requests all share one sampling: one call).
Runs are children of the caller's current run when there is one.

The sync path calls the chat model's sync API rather than driving the async one on a
private event loop: ``langchain_openai`` shares one cached async HTTP client between
the ``ChatOpenAI`` instances of a base URL, whatever event loop they run on, and a
connection opened on one loop fails on another ("Event loop is closed"). For the
same reason, a ``ChatOpenAI`` whose async API is used from several event loops in turn
(several ``asyncio.run`` calls, a loop per test) needs its own
``http_async_client=openai.DefaultAsyncHttpxClient()`` per loop.

Errors. A failed request gets a typed error in its place, never an exception (see
:mod:`backends.chat_model_replies` for the mapping); messages are scrubbed of the chat
model's secrets, of base64 and of any echo of the request. Retries are the chat
model's own (e.g. ``ChatOpenAI(max_retries=...)``), so ``attempts`` is 1 for a request
that was sent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import RunnableConfig, ensure_config

from backends.base import Backend, JudgeRequest, Result
from backends.chat_model_replies import (
    chat_model_secrets,
    error_result,
    reply_result,
    safe_message,
)
from backends.errors import BackendError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Group:
    """Requests sent in one ``batch`` call: they share their invocation kwargs."""

    kwargs: dict[str, Any]
    indices: list[int] = field(default_factory=list)
    inputs: list[list[BaseMessage]] = field(default_factory=list)
    run_ids: list[uuid.UUID] = field(default_factory=list)


class _RunClock(BaseCallbackHandler):
    """Times each chat model run of a batch, by the run id its config gave it."""

    run_inline = True  # called on the event loop, not in a worker thread

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[uuid.UUID, float] = {}
        self.ended: dict[uuid.UUID, float] = {}

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: uuid.UUID, **kwargs: Any
    ) -> None:
        """Note when the run started."""
        self.started[run_id] = perf_counter()

    def on_llm_end(self, response: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        """Note when the run ended."""
        self.ended[run_id] = perf_counter()

    def on_llm_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        """Note when the run failed."""
        self.ended[run_id] = perf_counter()

    def latency(self, run_id: uuid.UUID) -> float | None:
        """Seconds from the run's start to its end, when both were seen."""
        start, end = self.started.get(run_id), self.ended.get(run_id)
        return None if start is None or end is None else end - start


class _Plan:
    """A batch of requests: what to send per group, and the results as they come in.

    The pure part of a batch, shared by the sync and async paths: only the call to
    the chat model differs between them.
    """

    def __init__(self, backend: ChatModelBackend, requests: Sequence[JudgeRequest]) -> None:
        self.backend = backend
        self.requests = requests
        self.results: list[Result | None] = [None] * len(requests)
        self.groups: list[_Group] = []
        self.clock = _RunClock()
        for index, request in enumerate(requests):
            refused = backend._refusal(request)
            if refused is not None:
                self.results[index] = refused
                continue
            try:
                messages = convert_to_messages(request.messages)
            except Exception as exc:  # any malformed message: this request fails alone
                self.results[index] = BackendError(
                    "the request's messages cannot be converted to LangChain messages "
                    f"({type(exc).__name__})",
                    backend=backend.name,
                    attempts=0,
                )
                continue
            kwargs = backend.invocation_kwargs(request)
            group = next((g for g in self.groups if g.kwargs == kwargs), None)
            if group is None:
                group = _Group(kwargs)
                self.groups.append(group)
            group.indices.append(index)
            group.inputs.append(messages)
            group.run_ids.append(uuid.uuid4())

    def configs(self, group: _Group, max_concurrency: int) -> list[RunnableConfig]:
        """One config per input: its run id, the clock, and the caller's callbacks."""
        callbacks = _with_handler(ensure_config().get("callbacks"), self.clock)
        return [
            RunnableConfig(callbacks=callbacks, max_concurrency=max_concurrency, run_id=run_id)
            for run_id in group.run_ids
        ]

    def call(self, group: _Group, max_concurrency: int) -> dict[str, Any]:
        """The keyword arguments of ``llm.batch`` / ``llm.abatch`` for a group."""
        return {
            "inputs": group.inputs,
            "config": self.configs(group, max_concurrency),
            "return_exceptions": True,
            **group.kwargs,
        }

    def record(self, group: _Group, outputs: Sequence[Any] | Exception, elapsed: float) -> None:
        """Turn a group's outputs (messages or exceptions) into results.

        When the whole call raised (``outputs`` is the exception), every request of the
        group gets that error.
        """
        if isinstance(outputs, Exception):
            for index in group.indices:
                self.results[index] = self.backend._error(outputs, self.requests[index])
            return
        for index, run_id, output in zip(group.indices, group.run_ids, outputs, strict=True):
            latency = self.clock.latency(run_id)
            self.results[index] = self.backend._result(
                output, self.requests[index], elapsed if latency is None else latency
            )

    def done(self) -> list[Result]:
        return self.results  # type: ignore[return-value]  # every slot is filled


def _with_handler(callbacks: Any, handler: BaseCallbackHandler) -> Any:
    """``callbacks`` (None, a list or a manager) with ``handler`` added, not mutated."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        return manager
    return [*callbacks, handler]


class ChatModelBackend(Backend):
    """A LangChain chat model (``ChatOpenAI``, ``ChatAnthropic``...) as the judge's backend.

    See the module documentation for how requests, sampling and errors are mapped.

    Args:
        llm: The chat model. Its rate limiter, retries, timeouts and callbacks apply.
        model: The model name to report; defaults to the chat model's ``model_name``
            or ``model``.
        max_concurrency: Requests in flight per batch when the call passes none.
        supports_repetition_penalty: Send ``JudgeRequest.repetition_penalty`` (vLLM
            and SGLang take it in ``extra_body``). False by default: OpenAI's own API
            rejects it.
        supports_structured_outputs: Send ``JudgeRequest.extra`` (vLLM's
            ``structured_outputs``, for ``ThinkingRewardJudge(constrained=True)``).
            False by default: a chat model cannot be assumed to honour them, and a
            request carrying them is refused rather than sent without.
        supports_continuation: Honour ``JudgeRequest.continue_final_message``. False
            by default; a request asking for it is refused.

    Example:
        ```python
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(base_url="http://127.0.0.1:8000/v1",
                         model="thinking-reward-model", api_key="EMPTY")
        backend = ChatModelBackend(llm, supports_repetition_penalty=True,
                                   supports_structured_outputs=True)
        ThinkingRewardJudge(backend=backend).invoke({"question": "...", "response": "..."})
        ```

    Raises:
        TypeError: ``llm`` is not a ``BaseChatModel``.
        ValueError: ``max_concurrency`` is less than 1, or
            ``supports_repetition_penalty`` is asked of a chat model that has neither
            a ``repetition_penalty`` nor an ``extra_body`` field.
    """

    name = "chat-model"
    supports_repetition_penalty = False

    def __init__(
        self,
        llm: BaseChatModel,
        *,
        model: str | None = None,
        max_concurrency: int = 64,
        supports_repetition_penalty: bool = False,
        supports_structured_outputs: bool = False,
        supports_continuation: bool = False,
    ) -> None:
        if not isinstance(llm, BaseChatModel):
            raise TypeError(
                f"ChatModelBackend needs a LangChain BaseChatModel, got {type(llm).__name__}"
            )
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.llm = llm
        self.max_concurrency = int(max_concurrency)
        self.supports_repetition_penalty = supports_repetition_penalty
        self.supports_structured_outputs = supports_structured_outputs
        self.supports_continuation = supports_continuation
        fields = type(llm).model_fields
        self._fields = frozenset(
            name
            for name in ("max_tokens", "temperature", "repetition_penalty", "extra_body")
            if name in fields
        )
        self._logprobs = "logprobs" in fields and "top_logprobs" in fields
        if supports_repetition_penalty and not self._fields & {"repetition_penalty", "extra_body"}:
            raise ValueError(
                f"{type(llm).__name__} has neither a repetition_penalty nor an extra_body "
                "field: repetition_penalty cannot be sent"
            )
        self.model = model or str(
            getattr(llm, "model_name", None) or getattr(llm, "model", None) or ""
        )
        self._secrets = chat_model_secrets(llm)
        for missing in ("max_tokens", "temperature"):
            if missing not in self._fields:
                logger.warning(
                    "%s has no %s field: JudgeRequest.%s is not sent, the chat model's "
                    "own setting applies",
                    type(llm).__name__,
                    missing,
                    missing,
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, chat_model={self.chat_model!r})"

    @property
    def chat_model(self) -> str:
        """The chat model's class name."""
        return type(self.llm).__name__

    def describe(self) -> dict[str, Any]:
        """Backend name, model and the chat model's class name (never secrets)."""
        return {"backend": self.name, "model": self.model, "chat_model": self.chat_model}

    def invocation_kwargs(self, request: JudgeRequest) -> dict[str, Any]:
        """The kwargs the chat model is invoked with for ``request``.

        See the module documentation for which fields are sent and how. Whether the
        request may be sent at all is decided separately: a request carrying
        ``extra`` or a continuation the backend does not support is refused.
        """
        kwargs: dict[str, Any] = {}
        body: dict[str, Any] = {}
        if "max_tokens" in self._fields:
            kwargs["max_tokens"] = request.max_tokens
        if "temperature" in self._fields:
            kwargs["temperature"] = request.temperature
        if request.top_logprobs is not None and self._logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs
        if request.repetition_penalty is not None and self.supports_repetition_penalty:
            target = kwargs if "repetition_penalty" in self._fields else body
            target["repetition_penalty"] = request.repetition_penalty
        has_body = "extra_body" in self._fields
        if request.continue_final_message and has_body:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if request.extra:
            (body if has_body else kwargs).update(request.extra)
        if body:
            own = getattr(self.llm, "extra_body", None)
            kwargs["extra_body"] = {**(own if isinstance(own, Mapping) else {}), **body}
        return kwargs

    def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
        """The sampling the chat model is asked for, as recorded in a score's metadata.

        The invocation kwargs with ``extra_body`` flattened into them, as a host sees
        them; fields the chat model does not take are absent (its own settings apply).
        """
        kwargs = self.invocation_kwargs(request)
        body = kwargs.pop("extra_body", None) or {}
        return {**kwargs, **body}

    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Run the requests through ``llm.batch``; one result per request, in order.

        Raises:
            ValueError: ``max_concurrency`` is less than 1.
        """
        plan, concurrency = self._plan(requests, max_concurrency)
        for group in plan.groups:
            started = perf_counter()
            outputs: Sequence[Any] | Exception
            try:
                outputs = self.llm.batch(**plan.call(group, concurrency))
            except Exception as exc:
                outputs = exc
            plan.record(group, outputs, perf_counter() - started)
        return plan.done()

    async def agenerate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Run the requests through ``await llm.abatch``; as :meth:`generate` otherwise."""
        plan, concurrency = self._plan(requests, max_concurrency)
        for group in plan.groups:
            started = perf_counter()
            outputs: Sequence[Any] | Exception
            try:
                outputs = await self.llm.abatch(**plan.call(group, concurrency))
            except Exception as exc:
                outputs = exc
            plan.record(group, outputs, perf_counter() - started)
        return plan.done()

    # ------------------------------------------------------------------ the pure core

    def _plan(
        self, requests: Sequence[JudgeRequest], max_concurrency: int | None
    ) -> tuple[_Plan, int]:
        concurrency = self.max_concurrency if max_concurrency is None else int(max_concurrency)
        if concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        return _Plan(self, requests), concurrency

    def _refusal(self, request: JudgeRequest) -> BackendError | None:
        """Why ``request`` may not be sent, or None when it may."""
        if request.extra and not self.supports_structured_outputs:
            fields = ", ".join(sorted(request.extra))
            return BackendError(
                f"the request carries {fields}, which {self.chat_model} is not known to "
                "honour; build ChatModelBackend(..., supports_structured_outputs=True) if "
                "its host does (vLLM through ChatOpenAI does)",
                backend=self.name,
                attempts=0,
            )
        if request.continue_final_message and not self.supports_continuation:
            return BackendError(
                f"the request continues its final assistant message, which {self.chat_model} "
                "is not known to do; build ChatModelBackend(..., supports_continuation=True) "
                "if its host does (vLLM through ChatOpenAI does)",
                backend=self.name,
                attempts=0,
            )
        return None

    def _result(self, output: Any, request: JudgeRequest, latency: float) -> Result:
        """A completion from the chat model's message, or the typed error."""
        return reply_result(
            output,
            chat_model=self.chat_model,
            backend=self.name,
            model=self.model,
            latency=latency,
            safe=lambda exc: safe_message(exc, self._secrets, request),
        )

    def _error(self, exc: BaseException, request: JudgeRequest) -> BackendError:
        """The typed error for an exception the chat model raised for ``request``."""
        safe = lambda error: safe_message(error, self._secrets, request)  # noqa: E731
        return error_result(exc, chat_model=self.chat_model, backend=self.name, safe=safe)


__all__ = ["ChatModelBackend"]
