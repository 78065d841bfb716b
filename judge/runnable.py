"""``ThinkingRewardJudge``: the thinking reward model as a LangChain Runnable.

One judgment is: render the model card's prompt (:mod:`judge.prompt`), encode the images
(:mod:`judge.images`), send one :class:`~backends.base.JudgeRequest` through a backend,
parse the answer (:mod:`judge.parse`). Only the backend call differs between the sync and
async paths; everything before and after it is shared.

Every input gets its own traced run (``run_type="llm"``, with LangSmith's ``ls_*``
metadata), but a batch reaches the backend as ONE call, so a batch-native backend (the
in-process vLLM engine) sees the whole batch and an HTTP backend keeps
``max_concurrency`` requests in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_callback_manager_for_config, get_config_list
from pydantic import ConfigDict, Field, model_validator

from backends.base import Backend, Completion, JudgeRequest, Result
from backends.errors import BackendError, ThinkingJudgeError
from judge.errors import InputError
from judge.images import image_parts
from judge.parse import SCORE_GRID, parse_score
from judge.prompt import TEMPLATE_VERSION, prompt_sha256, render_messages
from judge.types import JudgeInput, ThinkingScore


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An input turned into a request, or the reason it could not be."""

    request: JudgeRequest | None = None
    sha256: str | None = None
    error: InputError | None = None


class ThinkingRewardJudge(RunnableSerializable[JudgeInput, ThinkingScore]):
    """Scores the thinking in a response with the SophiaVL-R1 Thinking Reward Model.

    Example:
        .. code-block:: python

            from backends import VLLMServerBackend
            from judge import ThinkingRewardJudge

            judge = ThinkingRewardJudge(
                backend=VLLMServerBackend(base_url="http://127.0.0.1:8000/v1",
                                          model="thinking-reward-model"))
            s = judge.invoke({"question": "What is 2+2?",
                              "response": "<think>2+2=4</think><answer>4</answer>"})
            s.score  # a float in [0, 1], or None with s.error saying why

    Attributes:
        backend: Where requests go (see :mod:`backends`).
        max_tokens: Most tokens the model may answer with; enough for
            ``<answer>1.0</answer>``.
        temperature: Sampling temperature; 0 (greedy) by default.
        repetition_penalty: Sent where the backend supports it. 1.0 by default, because
            the model's generation_config would otherwise apply 1.05.
        max_pixels: Optional pixel budget: larger images are downsized before sending.
        constrained: Constrain the answer to the model's eleven answers (``SCORE_GRID``)
            with vLLM's structured outputs; only on backends that honour it.
        raise_on_error: Raise the typed error of a failed judgment instead of returning
            a ``ThinkingScore`` with ``score=None``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Backend
    max_tokens: int = Field(default=16, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    repetition_penalty: float | None = 1.0
    max_pixels: int | None = Field(default=None, ge=1)
    constrained: bool = False
    raise_on_error: bool = False

    @model_validator(mode="after")
    def _backend_can_constrain(self) -> ThinkingRewardJudge:
        if self.constrained and not self.backend.supports_structured_outputs:
            raise ValueError(
                f"constrained=True needs structured outputs, which the {self.backend.name!r} "
                "backend does not support (it would be ignored silently)"
            )
        return self

    # -- Runnable API -------------------------------------------------------------------

    def invoke(
        self, input: JudgeInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ThinkingScore:
        """Judge one input."""
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(
        self, input: JudgeInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ThinkingScore:
        """Judge one input (async)."""
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(
        self,
        inputs: list[JudgeInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ThinkingScore]:
        """Judge many inputs in one backend call; results in input order."""
        configs = self._traced_configs(config, len(inputs))
        if not _has_callbacks(configs):
            return _outputs(self._judge_batch(list(inputs), configs), return_exceptions)
        return self._batch_with_config(
            self._judge_batch,
            list(inputs),
            configs,
            return_exceptions=return_exceptions,
            run_type="llm",
        )

    async def abatch(
        self,
        inputs: list[JudgeInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ThinkingScore]:
        """Judge many inputs in one backend call (async); results in input order."""
        configs = self._traced_configs(config, len(inputs))
        if not _has_callbacks(configs):
            return _outputs(await self._ajudge_batch(list(inputs), configs), return_exceptions)
        return await self._abatch_with_config(
            self._ajudge_batch,
            list(inputs),
            configs,
            return_exceptions=return_exceptions,
            run_type="llm",
        )

    # -- the two I/O paths: the only code that differs between sync and async -----------

    def _judge_batch(
        self, inputs: list[JudgeInput], config: list[RunnableConfig]
    ) -> list[ThinkingScore | Exception]:
        prepared, requests = self._prepare_all(inputs)
        results = self.backend.generate(requests, max_concurrency=_max_concurrency(config))
        return self._finish(prepared, results)

    async def _ajudge_batch(
        self, inputs: list[JudgeInput], config: list[RunnableConfig]
    ) -> list[ThinkingScore | Exception]:
        if any("image" in item or "images" in item for item in inputs if isinstance(item, dict)):
            # Image encoding is CPU work: keep it off the event loop.
            prepared, requests = await asyncio.to_thread(self._prepare_all, inputs)
        else:
            prepared, requests = self._prepare_all(inputs)
        results = await self.backend.agenerate(requests, max_concurrency=_max_concurrency(config))
        return self._finish(prepared, results)

    # -- shared, pure steps ---------------------------------------------------------------

    def _prepare_all(
        self, inputs: Sequence[JudgeInput]
    ) -> tuple[list[_Prepared], list[JudgeRequest]]:
        """Prepare every input; the requests of those that are valid, in order."""
        prepared = [self._prepare(item) for item in inputs]
        return prepared, [p.request for p in prepared if p.request is not None]

    def _prepare(self, item: JudgeInput) -> _Prepared:
        """Validate one input and render its request; input errors become values."""
        try:
            question, response, images = _fields(item)
            parts = image_parts(images, max_pixels=self.max_pixels)
        except InputError as exc:
            return _Prepared(error=exc)
        messages = render_messages(question, response, parts)
        try:
            sha256 = prompt_sha256(messages)
        except TypeError as exc:  # orjson refuses lone surrogates: not sendable as JSON
            return _Prepared(error=InputError(f"the input text is not valid Unicode: {exc}"))
        request = JudgeRequest(
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            repetition_penalty=(
                self.repetition_penalty if self.backend.supports_repetition_penalty else None
            ),
            extra=_CONSTRAINT if self.constrained else {},
        )
        return _Prepared(request=request, sha256=sha256)

    def _finish(
        self, prepared: Sequence[_Prepared], results: Sequence[Result]
    ) -> list[ThinkingScore | Exception]:
        """Pair each prepared input with its backend result and score it."""
        pending = iter(results)
        return [self._score(p, next(pending) if p.request is not None else None) for p in prepared]

    def _score(self, prepared: _Prepared, result: Result | None) -> ThinkingScore | Exception:
        info = self.backend.describe()
        base: dict[str, Any] = {
            "backend": info.get("backend"),
            "model": info.get("model"),
            "prompt_sha256": prepared.sha256,
        }
        metadata: dict[str, Any] = {"template_version": TEMPLATE_VERSION, **info}
        if prepared.request is not None:
            metadata["sampling"] = prepared.request.sampling()
        if isinstance(result, Completion):
            base.update(
                raw=result.text,
                model=result.model or base["model"],
                latency_s=result.latency_s,
                usage=result.usage(),
            )
            metadata.update(finish_reason=result.finish_reason, attempts=result.attempts)
        elif isinstance(result, BackendError):
            metadata["attempts"] = result.attempts
        if isinstance(result, Completion):
            try:
                return ThinkingScore(score=parse_score(result.text), metadata=metadata, **base)
            except ThinkingJudgeError as exc:
                error: ThinkingJudgeError = exc
        elif isinstance(result, BackendError):
            error = result
        elif prepared.error is not None:
            error = prepared.error
        else:
            error = BackendError("the backend returned no result for this request")
        if self.raise_on_error:
            return error
        return ThinkingScore(
            error=str(error), error_type=type(error).__name__, metadata=metadata, **base
        )

    def _traced_configs(
        self, config: RunnableConfig | list[RunnableConfig] | None, n: int
    ) -> list[RunnableConfig]:
        """Per-input configs carrying LangSmith's ``ls_*`` metadata for the judge run."""
        ls_params = {
            "ls_provider": self.backend.name,
            "ls_model_name": self.backend.model,
            "ls_model_type": "chat",
            "ls_temperature": self.temperature,
            "ls_max_tokens": self.max_tokens,
        }
        configs = get_config_list(config, n)
        for cfg in configs:
            cfg["metadata"] = {**ls_params, **(cfg.get("metadata") or {})}
        return configs


_CONSTRAINT = {"structured_outputs": {"choice": list(SCORE_GRID)}}


def _has_callbacks(configs: Sequence[RunnableConfig]) -> bool:
    """Whether any run would be recorded: callbacks passed, or tracing / hooks on.

    Without any, the per-input run bookkeeping is skipped: it costs about as much CPU as
    an HTTP round trip and nothing would observe it.
    """
    if not configs:
        return False
    if any(cfg.get("callbacks") for cfg in configs):
        return True
    # Tracing (LANGSMITH_TRACING), debug/verbose and context hooks apply to every config.
    return bool(get_callback_manager_for_config(configs[0]).handlers)


def _outputs(
    results: list[ThinkingScore | Exception], return_exceptions: bool
) -> list[ThinkingScore]:
    """Return or raise like ``Runnable._batch_with_config`` does."""
    if not return_exceptions:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results  # type: ignore[return-value]


def _max_concurrency(configs: Sequence[RunnableConfig]) -> int | None:
    return configs[0].get("max_concurrency") if configs else None


def _fields(item: Any) -> tuple[str, str, Any]:
    """Check a judge input's fields: question, response, images (or raise InputError)."""
    if not isinstance(item, Mapping):
        raise InputError(
            f"a judge input is a mapping with 'question' and 'response', got {type(item).__name__}"
        )
    for key in ("question", "response"):
        if not isinstance(item.get(key), str):
            got = "nothing" if item.get(key) is None else type(item[key]).__name__
            raise InputError(f"judge input field {key!r} must be a string, got {got}")
    if item.get("image") is not None and item.get("images") is not None:
        raise InputError("give either 'image' or 'images', not both")
    images = item.get("images") if item.get("images") is not None else item.get("image")
    return item["question"], item["response"], images


__all__ = ["ThinkingRewardJudge"]
