"""The judging dialogue without I/O: judge inputs -> backend requests -> ThinkingScores.

A :class:`JudgmentPipeline` holds everything a batch of judgments needs to know
(:class:`JudgeOptions` and the backend's capabilities, :class:`BackendInfo`) and runs the
batch as a generator: it yields the requests to send, is sent their results (one per
request, in order), and returns one :class:`~judge.types.ThinkingScore` per input (or
the typed error, with ``raise_on_error``). It sends nothing itself, so the sync and
async paths (:class:`~judge.runnable.ThinkingRewardJudge`) differ only in how they run a
list of requests, as httpx's ``BaseClient`` is shared by its ``Client`` and
``AsyncClient``::

    pipeline = JudgmentPipeline(options, backend)
    steps = pipeline.run(inputs)
    done, value = advance(steps, None)            # value: the first requests
    while not done:
        done, value = advance(steps, backend.generate(value))
    scores = value

The dialogue for a batch:

1. every input is checked (:func:`judge.core.inputs.checked_fields`), its images
   encoded, its text neutralised and rendered (the model card's prompt); an input error
   becomes that input's failed judgment, and the valid inputs are asked at once;
2. with ``expected_score``, the answers' logprobs are read (:mod:`judge.core.expected`);
   where an answer does not pass through ``"0."``, one or two rounds of short
   continuation requests (``"0"``, then ``"0."``) read the missing distributions;
3. each answer is parsed (:func:`judge.core.parse.parse_score`; text that is no score is
   a :class:`~judge.errors.ScoreParseError`); one that reads as a score but that the
   model did not finish (``finish_reason`` ``"length"``, ``"abort"``...) is a
   :class:`~judge.errors.TruncatedAnswerError` (:func:`judge.core.parse.check_finished`;
   a continuation is cut by its ``max_tokens`` on purpose and is not checked); under a
   constraint, an answer outside it is a :class:`~judge.errors.ConstraintError`.

Pure: no network, no Runnable, no tracing.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.base import Completion, JudgeRequest, Result
from backends.errors import BackendError, BackendResponseError, ThinkingJudgeError
from judge.core.expected import ScoreTrace, expected_score, trace_answer, usable
from judge.core.images import image_parts
from judge.core.inputs import checked_fields
from judge.core.parse import check_finished, constraint_choices, malformed_completion, parse_score
from judge.core.prompt import (
    ANSWER_TAG,
    TEMPLATE_VERSIONS,
    OutputFormat,
    prompt_sha256,
    render_messages,
)
from judge.core.sanitize import neutralize_special_tokens
from judge.core.sources import DEFAULT_POLICY, ImagePolicy
from judge.errors import ConstraintError, InputError
from judge.types import ThinkingScore

Steps = Generator[list[JudgeRequest], list[Result], list["ThinkingScore | Exception"]]
"""A batch's dialogue: yields requests, is sent their results, returns the judgments."""


@dataclass(frozen=True, slots=True)
class JudgeOptions:
    """How to judge: the judge's settings, as the pipeline reads them.

    Attributes:
        max_tokens: Most tokens the answer may take; None: 16 (``"bare"``) or 32
            (``"answer_tag"``).
        temperature: Sampling temperature.
        repetition_penalty: Sent where the backend supports it.
        max_pixels: Pixel budget for images (None: no downsizing).
        images: What may be read and sent for images given as file paths or http(s) URLs
            (:class:`~judge.core.sources.ImagePolicy`: image root, file size limit, URL
            policy); by default paths are read as given and URLs passed through.
        constrained: Constrain the answer to the score grid (structured outputs), and
            refuse an answer outside it.
        expected_score: Also compute the probability-weighted score from logprobs.
        top_logprobs: Alternatives asked per token for the expected score.
        output_format: ``"bare"`` (the model card's prompt) or ``"answer_tag"``.
        neutralize_special_tokens: Break chat control tokens in the question and response.
        raise_on_error: Return a failed judgment's typed error instead of a failed score.
        cache_in_use: The backend answers from a cache: ``metadata["cache"]`` then says
            ``"hit"`` or ``"miss"`` (from :attr:`~backends.base.Completion.cached`).
    """

    max_tokens: int | None = None
    temperature: float = 0.0
    repetition_penalty: float | None = 1.0
    max_pixels: int | None = None
    constrained: bool = False
    expected_score: bool = False
    top_logprobs: int = 20
    output_format: OutputFormat = "bare"
    neutralize_special_tokens: bool = True
    raise_on_error: bool = False
    cache_in_use: bool = False
    images: ImagePolicy = DEFAULT_POLICY


class BackendInfo(Protocol):
    """What the pipeline reads of a backend: its capabilities, never its I/O."""

    @property
    def name(self) -> str:
        """The backend's registry name."""

    @property
    def supports_repetition_penalty(self) -> bool:
        """Whether ``repetition_penalty`` is sent."""

    @property
    def supports_continuation(self) -> bool:
        """Whether a request may continue an assistant message."""

    def describe(self) -> dict[str, Any]:
        """Provenance for metadata (``backend``, ``model``...)."""

    def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
        """The sampling fields sent for ``request``, as recorded in metadata."""


@dataclass(slots=True)
class Judgment:
    """One input on its way through a batch: its request, its result, its score trace."""

    request: JudgeRequest | None = None
    sha256: str | None = None
    error: InputError | None = None
    result: Result | None = None
    trace: ScoreTrace | None = None
    expected: dict[str, Any] = field(default_factory=dict)


class JudgmentPipeline:
    """The sans-I/O judging dialogue for a batch (see the module docstring).

    Args:
        options: How to judge.
        backend: The capabilities of the backend the requests go to (any
            :class:`~backends.base.Backend` is one); only read, never called for I/O.
    """

    __slots__ = (
        "_choices",
        "_extra",
        "_repetition_penalty",
        "_suffix",
        "backend",
        "max_tokens",
        "options",
    )

    def __init__(self, options: JudgeOptions, backend: BackendInfo) -> None:
        self.options = options
        self.backend = backend
        tagged = options.output_format == "answer_tag"
        # The tag may be spelt one character a token under a constraint: room for it.
        self.max_tokens: int = options.max_tokens or (32 if tagged else 16)
        self._repetition_penalty = (
            options.repetition_penalty if backend.supports_repetition_penalty else None
        )
        prefix, self._suffix = ANSWER_TAG if tagged else ("", "")
        self._choices: frozenset[str] = frozenset()
        self._extra: dict[str, Any] = {}
        if options.constrained:
            choices = constraint_choices(prefix, self._suffix)
            self._choices = frozenset(choices)
            self._extra = {"structured_outputs": {"choice": choices}}

    # -- the dialogue -------------------------------------------------------------------------

    def run(self, inputs: Sequence[Any]) -> Steps:
        """Judge ``inputs``: yield requests, take their results, return the judgments."""
        judgments = [self.prepare(item) for item in inputs]
        asked = [(judgment, judgment.request) for judgment in judgments if judgment.request]
        results = yield [request for _judgment, request in asked]
        _check_count(results, len(asked), self.backend.name)
        for (judgment, _request), result in zip(asked, results, strict=True):
            judgment.result = result
        if self.options.expected_score:
            yield from self._read_distributions(judgments)
        return self.finish(judgments)

    def _read_distributions(
        self, judgments: Sequence[Judgment]
    ) -> Generator[list[JudgeRequest], list[Result], None]:
        """Trace each answer's distributions, then ask the continuations still needed."""
        for judgment in judgments:
            self._start_trace(judgment)
        for _ in range(2):  # "0" then, only if still needed, "0."
            waiting = [
                (judgment, after)
                for judgment in judgments
                if judgment.trace is not None and (after := judgment.trace.missing()) is not None
            ]
            if not waiting:
                return
            if not self.backend.supports_continuation:
                for judgment, _after in waiting:
                    judgment.expected["reason"] = (
                        f"the {self.backend.name!r} backend cannot continue an assistant "
                        "message, which this answer needs (supports_continuation=False)"
                    )
                return
            results = yield [self.continuation(judgment, after) for judgment, after in waiting]
            _check_count(results, len(waiting), self.backend.name)
            for (judgment, after), result in zip(waiting, results, strict=True):
                self.add_continuation(judgment, after, result)

    # -- requests ---------------------------------------------------------------------------

    def requests(self, inputs: Sequence[Any]) -> list[JudgeRequest]:
        """The requests the first round of :meth:`run` sends: the valid inputs', in order."""
        return [j.request for j in map(self.prepare, inputs) if j.request is not None]

    def prepare(self, item: Any) -> Judgment:
        """Check one input and render its request; an input error becomes a value."""
        options = self.options
        try:
            question, response, images = checked_fields(item)
            parts = image_parts(images, max_pixels=options.max_pixels, policy=options.images)
        except InputError as exc:
            return Judgment(error=exc)
        if options.neutralize_special_tokens:
            question = neutralize_special_tokens(question)
            response = neutralize_special_tokens(response)
        messages = render_messages(question, response, parts, output_format=options.output_format)
        try:
            sha256 = prompt_sha256(messages)
        except TypeError as exc:  # orjson refuses lone surrogates: not sendable as JSON
            return Judgment(error=InputError(f"the input text is not valid Unicode: {exc}"))
        request = JudgeRequest(
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=options.temperature,
            repetition_penalty=self._repetition_penalty,
            top_logprobs=options.top_logprobs if options.expected_score else None,
            extra=self._extra,
        )
        return Judgment(request=request, sha256=sha256)

    def constraint(self, after: str = "") -> dict[str, Any]:
        """The request fields constraining the answer (or its rest after ``after``).

        Args:
            after: The part of the number already written, for a continuation.

        Returns:
            ``{"structured_outputs": {"choice": [...]}}``, or ``{}`` when unconstrained.
        """
        if not self.options.constrained:
            return {}
        if not after:
            return self._extra
        return {"structured_outputs": {"choice": constraint_choices("", self._suffix, after)}}

    def continuation(self, judgment: Judgment, after: str) -> JudgeRequest:
        """A request continuing the answer from its prefix + ``after`` (``"0"`` or ``"0."``)."""
        assert judgment.request is not None
        assert judgment.trace is not None
        prefix = {"role": "assistant", "content": judgment.trace.prefix + after}
        return JudgeRequest(
            messages=[*judgment.request.messages, prefix],
            max_tokens=2 if after == "0" else 1,
            temperature=0.0,
            repetition_penalty=judgment.request.repetition_penalty,
            top_logprobs=self.options.top_logprobs,
            extra=self.constraint(after),
            continue_final_message=True,
        )

    def cacheable(self, request: JudgeRequest, completion: Completion) -> bool:
        """Whether a cache may keep ``completion``: a judgment's answer only when it is a
        score (and one the constraint allows), a continuation only with its logprobs.
        """  # noqa: D205
        if request.continue_final_message:
            return bool(completion.logprobs)
        return self._scores(completion)

    def _scores(self, completion: Completion) -> bool:
        if malformed_completion(completion):
            return False
        try:
            self.parse(completion)
        except ThinkingJudgeError:
            return False
        return True

    # -- the expected score -------------------------------------------------------------------

    def _start_trace(self, judgment: Judgment) -> None:
        """Read the score's distributions off a parsed answer's logprobs."""
        result, expected = judgment.result, judgment.expected
        if not isinstance(result, Completion) or not self._scores(result):
            return  # a failed judgment has no expected score
        missing = "the backend returned no logprobs"
        if not usable(result.text, result.logprobs, what="answer", missing=missing, into=expected):
            return
        judgment.trace = trace_answer(result.logprobs or ())
        if judgment.trace is None:
            judgment.expected["reason"] = "the answer has no digit token"

    @staticmethod
    def add_continuation(judgment: Judgment, after: str, result: Result) -> None:
        """Fold a continuation's result into the judgment's trace (or say why it cannot)."""
        assert judgment.trace is not None
        record: dict[str, Any] = {"after": judgment.trace.prefix + after}
        what = f"continuation after {record['after']!r}"
        if isinstance(result, Completion) and (problem := malformed_completion(result)):
            result = BackendResponseError(f"a malformed completion: {problem}")
        if isinstance(result, Completion):
            record.update(text=result.text, prompt_tokens=result.prompt_tokens)
            missing = "the continuation came back without logprobs"
            into = judgment.expected
            if not usable(result.text, result.logprobs, what=what, missing=missing, into=into):
                judgment.trace = None
            else:
                judgment.trace.add_continuation(after, result.logprobs or ())
        else:
            record["error"] = str(result)
            judgment.expected["reason"] = f"the continuation request failed: {result}"
            judgment.trace = None
        judgment.expected.setdefault("continuations", []).append(record)

    @staticmethod
    def expected(judgment: Judgment) -> float | None:
        """Compute the expected score into ``judgment.expected``; None when there is none."""
        trace = judgment.trace
        if trace is None:
            return None
        judgment.expected.update(trace.details())
        try:
            value = expected_score(trace.first, trace.after_zero, trace.after_point)
        except ValueError as exc:
            judgment.expected.setdefault("reason", str(exc))
            return None
        judgment.expected.pop("reason", None)
        return value

    # -- scoring ------------------------------------------------------------------------------

    def finish(self, judgments: Sequence[Judgment]) -> list[ThinkingScore | Exception]:
        """Score every judgment from its backend result."""
        info = self.backend.describe()
        common: dict[str, Any] = {
            "template_version": TEMPLATE_VERSIONS[self.options.output_format],
            "output_format": self.options.output_format,
            **info,
        }
        scores: list[ThinkingScore | Exception] = []
        for judgment in judgments:
            try:
                scores.append(self.score(judgment, info, common))
            except Exception as exc:  # a bug: reported as this judgment's failure (internal)
                failed = ThinkingScore.failure(
                    exc, backend=info.get("backend"), metadata=dict(common)
                )
                scores.append(exc if self.options.raise_on_error else failed)
        return scores

    def score(
        self, judgment: Judgment, info: Mapping[str, Any], common: Mapping[str, Any]
    ) -> ThinkingScore | Exception:
        """One judgment's ThinkingScore (or its error, with ``raise_on_error``)."""
        options = self.options
        result = judgment.result
        if isinstance(result, Completion) and (problem := malformed_completion(result)):
            name = self.backend.name
            message = f"the {name!r} backend returned a malformed completion: {problem}"
            attempts = result.attempts if type(result.attempts) is int else 1
            result = BackendResponseError(message, backend=name, attempts=attempts)
        base: dict[str, Any] = {
            "backend": info.get("backend"),
            "model": info.get("model"),
            "prompt_sha256": judgment.sha256,
        }
        metadata: dict[str, Any] = dict(common)
        if judgment.request is not None:
            metadata["sampling"] = self.backend.sent_sampling(judgment.request)
            if options.cache_in_use:
                cached = isinstance(result, Completion) and result.cached
                metadata["cache"] = "hit" if cached else "miss"
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
                score = self.parse(result)
            except ThinkingJudgeError as exc:
                error = exc
            else:
                expected = None
                if options.expected_score:
                    expected = self.expected(judgment)
                    metadata["expected_score"] = judgment.expected
                return ThinkingScore(
                    score=score, expected_score=expected, metadata=metadata, **base
                )
        elif isinstance(result, BackendError):
            metadata["attempts"] = result.attempts
            error = result
        elif judgment.error is not None:
            error = judgment.error
        else:
            error = BackendError("the backend returned no result for this request")
        if options.raise_on_error:
            return error
        return ThinkingScore.failure(error, metadata=metadata, **base)

    def parse(self, result: Completion) -> float:
        """Parse an answer; under a constraint, refuse one the constraint does not allow.

        Raises:
            ScoreParseError: The answer is not a score.
            TruncatedAnswerError: It reads as one, but the model did not finish it.
            ConstraintError: The answer is a score the constraint does not allow (the
                backend ignored structured outputs).
        """
        score = parse_score(result.text)  # junk stays a parse error, cut off or not
        check_finished(result.finish_reason)
        if self.options.constrained and result.text not in self._choices:
            raise ConstraintError(
                f"the answer {result.text[:40]!r} is not one the constraint allows: the "
                f"{self.backend.name!r} backend did not honour structured outputs"
            )
        return score


def advance(steps: Steps, results: list[Result] | None) -> tuple[bool, Any]:
    """Send ``results`` into the dialogue: ``(False, requests)``, or ``(True, judgments)``.

    Start it with ``results=None``. StopIteration does not cross threads
    (``asyncio.to_thread``), so it ends here.
    """
    try:
        return False, steps.send(results)  # type: ignore[arg-type]  # None starts it
    except StopIteration as done:
        return True, done.value


def _check_count(results: Sequence[Result], asked: int, backend: str) -> None:
    if len(results) != asked:
        raise RuntimeError(
            f"the {backend!r} backend returned {len(results)} results for {asked} requests"
        )


__all__ = ["BackendInfo", "JudgeOptions", "Judgment", "JudgmentPipeline", "Steps", "advance"]
