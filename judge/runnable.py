"""``ThinkingRewardJudge``: the thinking reward model as a LangChain Runnable.

The judging itself is :class:`~judge.core.pipeline.JudgmentPipeline`, a dialogue without
I/O (inputs -> requests -> scores). This module only drives it: the sync path runs each
list of requests through ``backend.generate``, the async path through
``backend.agenerate`` (image encoding, which is CPU work, in a worker thread); and it
traces. A cache (``cache=``) is a backend wrapper, :class:`backends.caching.CachingBackend`.

Every input gets its own traced run (``run_type="llm"``, with LangSmith's ``ls_*``
metadata), but a batch reaches the backend as ONE call, so a batch-native backend (the
in-process vLLM engine) sees the whole batch and an HTTP backend keeps
``max_concurrency`` requests in flight.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_callback_manager_for_config, get_config_list
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from backends.base import Backend
from backends.caching import CachingBackend, JudgmentCache
from judge.core.images import traced_input
from judge.core.inputs import IMAGE_KEYS
from judge.core.pipeline import JudgeOptions, JudgmentPipeline, advance
from judge.core.prompt import OutputFormat
from judge.core.sources import MAX_IMAGE_BYTES, ImagePolicy, UrlPolicy
from judge.types import JudgeInput, ThinkingScore

if TYPE_CHECKING:
    from collections.abc import Callable

    from judge.integrations import Prepare, ThinkingRunEvaluator


class ThinkingRewardJudge(RunnableSerializable[JudgeInput, ThinkingScore]):
    """Scores the thinking in a response with the SophiaVL-R1 Thinking Reward Model.

    Example:
        ```python
        from backends import VLLMServerBackend
        from judge import ThinkingRewardJudge

        judge = ThinkingRewardJudge(
            backend=VLLMServerBackend(base_url="http://127.0.0.1:8000/v1",
                                      model="thinking-reward-model"))
        s = judge.invoke({"question": "What is 2+2?",
                          "response": "<think>2+2=4</think><answer>4</answer>"})
        s.score  # a float in [0, 1], or None with s.error saying why
        ```

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
            tokens' top logprobs (see :func:`judge.core.expected.expected_score`), into
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
        cache: A :class:`~backends.caching.JudgmentCache` (or the path of its SQLite
            file): the backend is wrapped in a :class:`~backends.caching.CachingBackend`,
            so requests sent before (same model, messages with their images, sampling,
            constraint; continuations too) are answered from it without a model call,
            and new answers that are scores are stored. ``metadata["cache"]`` says
            ``"hit"`` or ``"miss"``. None (default): no cache.
        image_root: The folder image file paths are read from: a relative path resolves
            against it, and a path that leaves it (an absolute path elsewhere, ``../``,
            a symlink pointing out) fails that judgment with an
            :class:`~judge.errors.ImageError`. None (default): paths are read as given,
            so give a root whenever the inputs come from data you do not control
            (``thinking-judge batch`` uses the input file's folder).
        image_urls: What to do with http(s) image URLs: ``"pass"`` (default) sends them
            for the server to fetch (limit what vLLM fetches with its
            ``--allowed-media-domains``); ``"public"`` sends only those whose host is a
            public address (loopback, private, link-local such as ``169.254.169.254``
            and names resolving to them are refused: ``thinking-judge batch``'s
            default); ``"refuse"`` refuses them all. See :mod:`judge.core.sources`.
        max_image_bytes: The largest image file read (50 MB by default); only regular
            files are read, so ``/dev/zero`` or a FIFO fails that judgment at once.
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
    image_root: Path | None = None
    image_urls: UrlPolicy = "pass"
    max_image_bytes: int = Field(default=MAX_IMAGE_BYTES, ge=1)

    _built: tuple[tuple[Any, ...], JudgmentPipeline, Backend] | None = PrivateAttr(default=None)

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

    # -- the pure core, and the two I/O paths driving it -------------------------------------

    def options(self) -> JudgeOptions:
        """This judge's settings, as the pipeline reads them."""
        return JudgeOptions(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            repetition_penalty=self.repetition_penalty,
            max_pixels=self.max_pixels,
            constrained=self.constrained,
            expected_score=self.expected_score,
            top_logprobs=self.top_logprobs,
            output_format=self.output_format,
            neutralize_special_tokens=self.neutralize_special_tokens,
            raise_on_error=self.raise_on_error,
            cache_in_use=self.cache is not None,
            images=ImagePolicy(self.image_root, self.image_urls, self.max_image_bytes),
        )

    def pipeline(self) -> tuple[JudgmentPipeline, Backend]:
        """The judging dialogue for this judge's settings, and the backend to run it on.

        The backend is :attr:`backend`, wrapped in a
        :class:`~backends.caching.CachingBackend` when a :attr:`cache` is set.
        """
        # Built once per settings (a pipeline holds no per-batch state), not per call: the
        # settings are read on every call, so a field changed or a copy made afterwards
        # gets a pipeline of its own.
        settings = (
            self.backend,
            self.backend.supports_repetition_penalty,  # read when the pipeline is built
            self.cache,
            self.max_tokens,
            self.temperature,
            self.repetition_penalty,
            self.max_pixels,
            self.constrained,
            self.expected_score,
            self.top_logprobs,
            self.output_format,
            self.neutralize_special_tokens,
            self.raise_on_error,
            self.image_root,
            self.image_urls,
            self.max_image_bytes,
        )
        # Read straight from pydantic's private store: ``self._built`` goes through
        # BaseModel.__getattr__, which costs about as much as building a pipeline.
        built = self.__pydantic_private__.get("_built") if self.__pydantic_private__ else None
        if built is not None and built[0] == settings:
            return built[1], built[2]
        pipeline = JudgmentPipeline(self.options(), self.backend)
        backend = self.backend
        if self.cache is not None:
            backend = CachingBackend(backend, self.cache, cacheable=pipeline.cacheable)
        self._built = (settings, pipeline, backend)
        return pipeline, backend

    def _judge_batch(
        self, inputs: list[JudgeInput], config: list[RunnableConfig]
    ) -> list[ThinkingScore | Exception]:
        pipeline, backend = self.pipeline()
        steps, limit = pipeline.run(inputs), _max_concurrency(config)
        done, value = advance(steps, None)
        while not done:
            results = backend.generate(value, max_concurrency=limit) if value else []
            done, value = advance(steps, results)
        scores: list[ThinkingScore | Exception] = value
        return scores

    async def _ajudge_batch(
        self, inputs: list[JudgeInput], config: list[RunnableConfig]
    ) -> list[ThinkingScore | Exception]:
        pipeline, backend = self.pipeline()
        steps, limit = pipeline.run(inputs), _max_concurrency(config)
        if any(key in item for item in inputs if isinstance(item, dict) for key in IMAGE_KEYS):
            # Image encoding is CPU work: keep it off the event loop.
            done, value = await asyncio.to_thread(advance, steps, None)
        else:
            done, value = advance(steps, None)
        while not done:
            results = await backend.agenerate(value, max_concurrency=limit) if value else []
            done, value = advance(steps, results)
        scores: list[ThinkingScore | Exception] = value
        return scores

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
                the response and images (see :mod:`judge.integrations`).
            use_expected_score: Report the expected score when this judge computes one.

        Returns:
            A :class:`~judge.integrations.ThinkingRunEvaluator`. A failed judgment is an
            evaluation error (``score=None``, the reason in ``comment``), never a score.
        """
        from judge.integrations import ThinkingRunEvaluator

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
            :func:`judge.integrations.create_thinking_evaluator`).
        """
        from judge.integrations import create_async_thinking_evaluator, create_thinking_evaluator

        create = create_async_thinking_evaluator if asynchronous else create_thinking_evaluator
        return create(self, key=key, prepare=prepare, use_expected_score=use_expected_score)

    def as_string_evaluator(
        self, *, key: str = "thinking_reward", use_expected_score: bool = True
    ) -> Any:
        """This judge as langchain-classic's ``StringEvaluator`` (needs langchain-classic).

        Returns:
            A ``ThinkingStringEvaluator`` (see :mod:`judge.integrations`).

        Raises:
            ImportError: langchain-classic is not installed.
        """
        from judge.integrations import create_string_evaluator

        return create_string_evaluator(self, key=key, use_expected_score=use_expected_score)

    # -- RL rewards (see judge.rl) ---------------------------------------------------------

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
            **options: The options of :class:`~judge.rl.GRPOReward` (``alpha``,
                ``anneal_steps``, ``trust``, ``include_outcome``, ``num_generations``,
                ``name``...).

        Returns:
            A :class:`~judge.rl.GRPOReward` (or ``SyncGRPOReward``): called as TRL
            calls it, it returns one reward per completion, None where the judgment
            failed.
        """
        from judge.rl import GRPOReward, SyncGRPOReward

        kind = GRPOReward if asynchronous else SyncGRPOReward
        return kind(self, outcome_reward=outcome_reward, **options)


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


__all__ = ["ThinkingRewardJudge"]
