"""``ThinkingRewardJudge``: the thinking reward model as a LangChain Runnable.

One judgment is: render the model card's prompt (:mod:`judge.core.prompt`), encode the images
(:mod:`judge.core.images`), send one :class:`~backends.base.JudgeRequest` through a backend,
parse the answer (:mod:`judge.core.parse`). Only the backend call differs between the sync and
async paths; everything before and after it is shared.

Every input gets its own traced run (``run_type="llm"``, with LangSmith's ``ls_*``
metadata), but a batch reaches the backend as ONE call, so a batch-native backend (the
in-process vLLM engine) sees the whole batch and an HTTP backend keeps
``max_concurrency`` requests in flight.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_callback_manager_for_config, get_config_list
from pydantic import ConfigDict, Field, field_validator, model_validator

from backends.base import Backend, Completion, JudgeRequest, Result
from backends.errors import BackendError, ThinkingJudgeError
from judge.cache import JudgmentCache
from judge.core.expected import ScoreTrace, expected_score, trace_answer
from judge.core.images import image_parts, traced_input
from judge.core.parse import constraint_choices, parse_score
from judge.core.prompt import (
    ANSWER_TAG,
    TEMPLATE_VERSIONS,
    OutputFormat,
    prompt_sha256,
    render_messages,
)
from judge.core.sanitize import neutralize_special_tokens
from judge.errors import ConstraintError, InputError
from judge.types import JudgeInput, ThinkingScore

if TYPE_CHECKING:
    from collections.abc import Callable

    from judge.integrations.evaluators import Prepare, ThinkingRunEvaluator


@dataclass(slots=True)
class _Prepared:
    """One input on its way through a batch: its request, its result, its score trace."""

    request: JudgeRequest | None = None
    sha256: str | None = None
    error: InputError | None = None
    result: Result | None = None
    trace: ScoreTrace | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # its cache key, when a cache is in use
    hit: ThinkingScore | None = None  # its cached judgment: not sent


# A batch is a sans-I/O dialogue: the steps generator yields the requests to run and is
# sent their results; the sync and async paths differ only in how they run them.
_Steps = Generator[list[JudgeRequest], list[Result], list["ThinkingScore | Exception"]]


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
        max_tokens: Most tokens the model may answer with; None (default) is enough
            for the output format: 16 for ``"bare"``, 32 for ``"answer_tag"`` (under a
            constraint the tag may be spelt one character a token).
        temperature: Sampling temperature; 0 (greedy) by default.
        repetition_penalty: Sent where the backend supports it. 1.0 by default, because
            the model's generation_config would otherwise apply 1.05.
        max_pixels: Optional pixel budget: larger images are downsized before sending.
        constrained: Constrain the answer to the model's eleven answers (``SCORE_GRID``,
            in the output format) with vLLM's structured outputs; only on backends that
            honour it. An answer outside them is then reported as a failed judgment
            (the backend ignored the constraint), never scored.
        expected_score: Also compute the probability-weighted score from the digit
            tokens' top logprobs (see :func:`judge.core.parse.expected_score`), into
            ``ThinkingScore.expected_score``; where the answer does not pass through
            ``"0."``, one or two short continuation requests (sharing the prompt's
            cached prefix) read the missing distributions.
        top_logprobs: Alternatives asked per token when ``expected_score`` is on
            (OpenAI's and vLLM's default limit is 20).
        output_format: ``"bare"``: the model card's prompt, byte for byte (default);
            ``"answer_tag"``: the SophiaVL-R1 training code's variant, which asks for
            ``<answer>score</answer>``.
        raise_on_error: Raise the typed error of a failed judgment instead of returning
            a ``ThinkingScore`` with ``score=None``.
        neutralize_special_tokens: Break chat control tokens (``<|im_end|>``,
            ``<|image_pad|>``...) written in the question or the response, so that a
            response cannot end its turn or add image slots (see :mod:`judge.core.sanitize`).
            On by default; turn it off to send the text exactly as given.
        cache: A :class:`~judge.cache.JudgmentCache` (or the path of its SQLite file):
            inputs judged before with the same model, prompt, images, sampling and
            options are answered from it without a model call, and successful new
            judgments are stored. ``metadata["cache"]`` says ``"hit"`` or ``"miss"``.
            None (default): no cache.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Backend
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    repetition_penalty: float | None = 1.0
    max_pixels: int | None = Field(default=None, ge=1)
    constrained: bool = False
    raise_on_error: bool = False
    expected_score: bool = False
    top_logprobs: int = Field(default=20, ge=1, le=20)
    output_format: OutputFormat = "bare"
    neutralize_special_tokens: bool = True
    cache: JudgmentCache | None = None

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_from_path(cls, value: Any) -> Any:
        if isinstance(value, str | os.PathLike):
            return JudgmentCache(value)
        return value

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
        originals = list(inputs)
        if not _has_callbacks(configs):
            return _outputs(self._judge_batch(originals, configs), return_exceptions)
        # Traces show the inputs with their images described, never their bytes; the
        # judgment itself uses the originals.
        return self._batch_with_config(
            lambda _shown, config: self._judge_batch(originals, config),
            [traced_input(item) for item in originals],
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
        originals = list(inputs)
        if not _has_callbacks(configs):
            return _outputs(await self._ajudge_batch(originals, configs), return_exceptions)
        return await self._abatch_with_config(
            lambda _shown, config: self._ajudge_batch(originals, config),
            [traced_input(item) for item in originals],
            configs,
            return_exceptions=return_exceptions,
            run_type="llm",
        )

    # -- the two I/O paths: the only code that differs between sync and async -----------

    def _judge_batch(
        self, inputs: list[JudgeInput], config: list[RunnableConfig]
    ) -> list[ThinkingScore | Exception]:
        steps, limit = self._steps(inputs), _max_concurrency(config)
        done, value = _advance(steps, None)
        while not done:
            results = self.backend.generate(value, max_concurrency=limit) if value else []
            done, value = _advance(steps, results)
        scores: list[ThinkingScore | Exception] = value
        return scores

    async def _ajudge_batch(
        self, inputs: list[JudgeInput], config: list[RunnableConfig]
    ) -> list[ThinkingScore | Exception]:
        steps, limit = self._steps(inputs), _max_concurrency(config)
        # Cache lookups and stores are file I/O: keep them off the event loop.
        cached = self.cache is not None
        if cached or any(
            "image" in item or "images" in item for item in inputs if isinstance(item, dict)
        ):
            # Image encoding is CPU work: keep it off the event loop too.
            done, value = await asyncio.to_thread(_advance, steps, None)
        else:
            done, value = _advance(steps, None)
        while not done:
            results = await self.backend.agenerate(value, max_concurrency=limit) if value else []
            if cached:
                done, value = await asyncio.to_thread(_advance, steps, results)
            else:
                done, value = _advance(steps, results)
        scores: list[ThinkingScore | Exception] = value
        return scores

    # -- the batch as a dialogue with the backend ------------------------------------------

    def _steps(self, inputs: Sequence[JudgeInput]) -> _Steps:
        """Prepare, ask, and (for the expected score) ask the continuations still needed.

        With a cache, the inputs it holds are not asked: only the misses are sent.
        """
        prepared, requests = self._prepare_all(inputs)
        if self.cache is not None:
            self._look_up(prepared)
            requests = [p.request for p in prepared if p.request is not None and p.hit is None]
        results = yield requests
        pending = iter(results)
        for item in prepared:
            if item.request is not None and item.hit is None:
                item.result = next(pending)
        if self.expected_score:
            for item in prepared:
                self._start_trace(item)
            for _ in range(2):  # "0" then, only if still needed, "0."
                missing = [(item, item.trace.missing()) for item in prepared if item.trace]
                waiting = [(item, after) for item, after in missing if after is not None]
                if not self.backend.supports_continuation:
                    for item, _after in waiting:
                        item.expected["reason"] = (
                            f"the {self.backend.name!r} backend cannot continue an assistant "
                            "message, which this answer needs (supports_continuation=False)"
                        )
                    break
                if not waiting:
                    break
                continuations = yield [self._continuation(item, after) for item, after in waiting]
                for (item, after), result in zip(waiting, continuations, strict=True):
                    self._add_continuation(item, after, result)
        return self._finish(prepared)

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
        if self.neutralize_special_tokens:
            question = neutralize_special_tokens(question)
            response = neutralize_special_tokens(response)
        messages = render_messages(question, response, parts, output_format=self.output_format)
        try:
            sha256 = prompt_sha256(messages)
        except TypeError as exc:  # orjson refuses lone surrogates: not sendable as JSON
            return _Prepared(error=InputError(f"the input text is not valid Unicode: {exc}"))
        request = JudgeRequest(
            messages=messages,
            max_tokens=self._max_tokens,
            temperature=self.temperature,
            repetition_penalty=self._repetition_penalty,
            top_logprobs=self.top_logprobs if self.expected_score else None,
            extra=self._constraint(),
        )
        return _Prepared(request=request, sha256=sha256)

    @property
    def _max_tokens(self) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        return 32 if self.output_format == "answer_tag" else 16

    @property
    def _repetition_penalty(self) -> float | None:
        return self.repetition_penalty if self.backend.supports_repetition_penalty else None

    def _tags(self) -> tuple[str, str]:
        return ANSWER_TAG if self.output_format == "answer_tag" else ("", "")

    def _constraint(self, after: str = "") -> dict[str, Any]:
        """The ``structured_outputs`` for the answer (or its rest after ``after``)."""
        if not self.constrained:
            return {}
        prefix, suffix = self._tags()
        if after:
            return {"structured_outputs": {"choice": constraint_choices("", suffix, after)}}
        return {"structured_outputs": {"choice": constraint_choices(prefix, suffix)}}

    # -- the expected score ---------------------------------------------------------------

    def _start_trace(self, item: _Prepared) -> None:
        """Read the score's distributions off a parsed answer's logprobs."""
        result = item.result
        if not isinstance(result, Completion) or _parsed(result.text) is None:
            return  # a failed judgment has no expected score
        if not result.logprobs:
            item.expected["reason"] = "the backend returned no logprobs"
            return
        item.trace = trace_answer(result.logprobs)
        if item.trace is None:
            item.expected["reason"] = "the answer has no digit token"

    def _continuation(self, item: _Prepared, after: str) -> JudgeRequest:
        """A request continuing the answer from its prefix + ``after`` ("0" or "0.")."""
        assert item.request is not None
        assert item.trace is not None
        prefix = {"role": "assistant", "content": item.trace.prefix + after}
        return JudgeRequest(
            messages=[*item.request.messages, prefix],
            max_tokens=2 if after == "0" else 1,
            temperature=0.0,
            repetition_penalty=item.request.repetition_penalty,
            top_logprobs=self.top_logprobs,
            extra=self._constraint(after),
            continue_final_message=True,
        )

    @staticmethod
    def _add_continuation(item: _Prepared, after: str, result: Result) -> None:
        assert item.trace is not None
        record: dict[str, Any] = {"after": item.trace.prefix + after}
        if isinstance(result, Completion):
            record.update(text=result.text, prompt_tokens=result.prompt_tokens)
            if result.logprobs:
                item.trace.add_continuation(after, result.logprobs)
            else:
                item.expected["reason"] = "the continuation came back without logprobs"
                item.trace = None
        else:
            record["error"] = str(result)
            item.expected["reason"] = f"the continuation request failed: {result}"
            item.trace = None
        item.expected.setdefault("continuations", []).append(record)

    def _expected(self, item: _Prepared) -> float | None:
        """Compute the expected score into ``item.expected``; None when there is none."""
        trace = item.trace
        if trace is None:
            return None
        item.expected.update(trace.details())
        try:
            value = expected_score(trace.first, trace.after_zero, trace.after_point)
        except ValueError as exc:
            item.expected.setdefault("reason", str(exc))
            return None
        item.expected.pop("reason", None)
        return value

    # -- scoring ----------------------------------------------------------------------------

    def _finish(self, prepared: Sequence[_Prepared]) -> list[ThinkingScore | Exception]:
        """Score every prepared input from its backend result."""
        info = self.backend.describe()
        common: dict[str, Any] = {
            "template_version": TEMPLATE_VERSIONS[self.output_format],
            "output_format": self.output_format,
            **info,
        }
        scores = [self._score(item, info, common) for item in prepared]
        if self.cache is not None:
            scores = self._store(prepared, scores)
        return scores

    # -- the cache --------------------------------------------------------------------------

    def _look_up(self, prepared: Sequence[_Prepared]) -> None:
        """Key every valid input and attach the judgments the cache holds."""
        cache = self.cache
        assert cache is not None
        info = self.backend.describe()
        model, revision = info.get("model"), info.get("model_revision") or info.get("revision")
        options = {
            "output_format": self.output_format,
            "constrained": self.constrained,
            "expected_score": self.expected_score,
            "top_logprobs": self.top_logprobs if self.expected_score else None,
        }
        keyed = [item for item in prepared if item.request is not None]
        for item in keyed:
            assert item.request is not None
            assert item.sha256 is not None
            item.key = cache.key(
                model=model,
                revision=revision,
                prompt_sha256=item.sha256,
                sampling=self.backend.sent_sampling(item.request),
                options=options,
            )
        hits = cache.get_many([item.key for item in keyed if item.key is not None])
        for item in keyed:
            item.hit = hits.get(item.key)  # type: ignore[arg-type]

    def _store(
        self, prepared: Sequence[_Prepared], scores: list[ThinkingScore | Exception]
    ) -> list[ThinkingScore | Exception]:
        """Store the new successful judgments (hits come marked ``"hit"`` by the cache)."""
        assert self.cache is not None
        self.cache.put_many(
            (item.key, score)
            for item, score in zip(prepared, scores, strict=True)
            if item.key is not None
            and item.hit is None
            and isinstance(score, ThinkingScore)
            and score.ok
            and _cacheable(item)
        )
        return scores

    def _score(
        self, item: _Prepared, info: Mapping[str, Any], common: Mapping[str, Any]
    ) -> ThinkingScore | Exception:
        if item.hit is not None:
            return item.hit
        result = item.result
        base: dict[str, Any] = {
            "backend": info.get("backend"),
            "model": info.get("model"),
            "prompt_sha256": item.sha256,
        }
        metadata: dict[str, Any] = dict(common)
        if item.request is not None:
            metadata["sampling"] = self.backend.sent_sampling(item.request)
        if item.key is not None:
            metadata["cache"] = "miss"  # looked up, not found (not stored with the score)
        error: ThinkingJudgeError
        if isinstance(result, Completion):
            base.update(
                raw=result.text,
                model=result.model or base["model"],
                latency_s=result.latency_s,
                usage=result.usage(),
            )
            metadata.update(finish_reason=result.finish_reason, attempts=result.attempts)
            try:
                score = self._parse(result)
            except ThinkingJudgeError as exc:
                error = exc
            else:
                expected = self._expected(item) if self.expected_score else None
                if self.expected_score:
                    metadata["expected_score"] = item.expected
                return ThinkingScore(
                    score=score, expected_score=expected, metadata=metadata, **base
                )
        elif isinstance(result, BackendError):
            metadata["attempts"] = result.attempts
            error = result
        elif item.error is not None:
            error = item.error
        else:
            error = BackendError("the backend returned no result for this request")
        if self.raise_on_error:
            return error
        return ThinkingScore.failure(error, metadata=metadata, **base)

    def _parse(self, result: Completion) -> float:
        """Parse an answer; under a constraint, refuse one the constraint does not allow."""
        score = parse_score(result.text)
        if self.constrained and result.text not in constraint_choices(*self._tags()):
            raise ConstraintError(
                f"the answer {result.text[:40]!r} is not one the constraint allows: the "
                f"{self.backend.name!r} backend did not honour structured outputs"
            )
        return score

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

    # -- evaluators (see judge.integrations) ---------------------------------------------

    def as_langsmith_evaluator(
        self,
        *,
        key: str = "thinking_reward",
        prepare: Prepare | None = None,
        use_expected_score: bool = True,
    ) -> ThinkingRunEvaluator:
        """This judge as a LangSmith ``RunEvaluator``, for ``langsmith.evaluate``.

        Args:
            key: The feedback key.
            prepare: Maps ``inputs``, ``outputs``, ``reference_outputs`` and
                ``attachments`` to the judge input; the default finds the question,
                the response and images (see :mod:`judge.integrations.evaluators`).
            use_expected_score: Report the expected score when this judge computes one.

        Returns:
            A :class:`~judge.integrations.evaluators.ThinkingRunEvaluator`. A failed judgment is an
            evaluation error (``score=None``, the reason in ``comment``), never a score.
        """
        from judge.integrations.evaluators import ThinkingRunEvaluator

        return ThinkingRunEvaluator(
            self, key=key, prepare=prepare, use_expected_score=use_expected_score
        )

    def as_evaluator(
        self,
        *,
        key: str = "thinking_reward",
        prepare: Prepare | None = None,
        use_expected_score: bool = True,
        asynchronous: bool = False,
    ) -> Callable[..., Any]:
        """This judge as an openevals-style evaluator function.

        Args:
            key: The feedback key.
            prepare: As for :meth:`as_langsmith_evaluator`.
            use_expected_score: Report the expected score when this judge computes one.
            asynchronous: Return the ``async def`` form (for ``langsmith.aevaluate``).

        Returns:
            ``evaluator(*, inputs, outputs, reference_outputs=None, attachments=None,
            **kwargs) -> {"key", "score", "comment", "metadata"}`` (see
            :func:`judge.integrations.evaluators.create_thinking_evaluator`).
        """
        from judge.integrations import evaluators

        create = (
            evaluators.create_async_thinking_evaluator
            if asynchronous
            else evaluators.create_thinking_evaluator
        )
        return create(self, key=key, prepare=prepare, use_expected_score=use_expected_score)

    def as_string_evaluator(
        self, *, key: str = "thinking_reward", use_expected_score: bool = True
    ) -> Any:
        """This judge as langchain-classic's ``StringEvaluator`` (needs langchain-classic).

        Returns:
            A ``ThinkingStringEvaluator`` (see :mod:`judge.integrations.evaluators`).

        Raises:
            ImportError: langchain-classic is not installed.
        """
        from judge.integrations.evaluators import create_string_evaluator

        return create_string_evaluator(self, key=key, use_expected_score=use_expected_score)

    # -- RL rewards (see judge.rl.rewards) -------------------------------------------------

    def as_reward_func(
        self,
        outcome_reward: Callable[..., Any] | None = None,
        *,
        asynchronous: bool = True,
        **options: Any,
    ) -> Callable[..., Any]:
        """This judge as a TRL ``GRPOTrainer`` reward function.

        Args:
            outcome_reward: A TRL reward function giving the outcome reward; with it the
                reward is Trust-GRPO's (SophiaVL-R1), else the thinking score alone.
            asynchronous: Return the ``async`` form, which TRL awaits concurrently with
                its other async rewards; False for a plain function.
            **options: The options of :class:`~judge.rl.rewards.GRPOReward` (``alpha``,
                ``anneal_steps``, ``trust``, ``include_outcome``, ``num_generations``,
                ``name``...).

        Returns:
            A :class:`~judge.rl.rewards.GRPOReward` (or ``SyncGRPOReward``): called as TRL
            calls it, it returns one reward per completion, None where the judgment
            failed.
        """
        from judge.rl.rewards import GRPOReward, SyncGRPOReward

        kind = GRPOReward if asynchronous else SyncGRPOReward
        return kind(self, outcome_reward=outcome_reward, **options)


def _parsed(text: str) -> float | None:
    try:
        return parse_score(text)
    except ThinkingJudgeError:
        return None


def _advance(steps: _Steps, results: list[Result] | None) -> tuple[bool, Any]:
    """Send ``results`` into the dialogue: ``(False, requests)``, or ``(True, scores)``.

    StopIteration does not cross threads (``asyncio.to_thread``), so it ends here.
    """
    try:
        return False, steps.send(results)  # type: ignore[arg-type]  # None starts it
    except StopIteration as done:
        return True, done.value


def _cacheable(item: _Prepared) -> bool:
    """Whether a successful judgment may be cached: not when a continuation failed."""
    return not any("error" in record for record in item.expected.get("continuations", ()))


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
            hint = " (decode it to text first)" if got in ("bytes", "bytearray") else ""
            raise InputError(f"judge input field {key!r} must be a string, got {got}{hint}")
        if not item[key] or item[key].isspace():
            raise InputError(f"judge input field {key!r} is empty")
    if item.get("image") is not None and item.get("images") is not None:
        raise InputError("give either 'image' or 'images', not both")
    images = item.get("images") if item.get("images") is not None else item.get("image")
    return item["question"], item["response"], images


__all__ = ["ThinkingRewardJudge"]
