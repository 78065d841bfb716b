"""The judge's input and result types."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import NotRequired, TypedDict

from judge.failures import FailureKind, failure_kind, is_retryable


class JudgeInput(TypedDict):
    """One thing to judge.

    Attributes:
        question: The (multimodal) question the policy answered.
        response: The whole response: reasoning, ``<think>``/``<answer>`` tags included.
        image: One image: a path, bytes, a PIL image, an http(s) URL or a data URL.
        images: Several images, each as for ``image``.
    """

    question: str
    response: str
    image: NotRequired[Any]
    images: NotRequired[list[Any]]


class ThinkingScore(BaseModel):
    """The judgment of one response's thinking.

    ``score`` is None exactly when the judgment failed, and then ``error`` says why; a
    failure is never reported as a score of 0.

    Attributes:
        score: The thinking score in [0, 1], or None when the judgment failed.
        raw: What the model said, when it said anything.
        error: Why the judgment failed, or None.
        error_kind: The failure's machine-readable kind (:class:`~judge.failures.FailureKind`):
            what commands, the batch runner and the adapters dispatch on.
        retryable: Whether judging the same input again may succeed (a timeout, a 5xx),
            set exactly when the judgment failed.
        error_type: The failure's error class name (e.g. ``"ScoreParseError"``), for people;
            dispatch on ``error_kind``.
        expected_score: The probability-weighted score, when logprobs were used.
        model: The model that judged.
        backend: The backend's registry name.
        latency_s: Wall time of the request (for a batch-native backend, of its batch).
        usage: Token usage, when the backend reports it.
        prompt_sha256: SHA-256 of the rendered messages (see ``judge.core.prompt``).
        metadata: Provenance: template version, sampling sent, backend details.
    """

    model_config = ConfigDict(frozen=True)

    score: float | None = Field(default=None, ge=0.0, le=1.0)
    raw: str | None = None
    error: str | None = None
    error_kind: FailureKind | None = None
    retryable: bool | None = None
    error_type: str | None = None
    expected_score: float | None = Field(default=None, ge=0.0, le=1.0)
    model: str | None = None
    backend: str | None = None
    latency_s: float | None = None
    usage: dict[str, int] | None = None
    prompt_sha256: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _failure_says_why(self) -> ThinkingScore:
        if (self.score is None) == (self.error is None):
            raise ValueError("a ThinkingScore has either a score or an error, not both or neither")
        if (self.error is None) != (self.error_kind is None):
            raise ValueError("a failed ThinkingScore says its error_kind, and only a failed one")
        return self

    @classmethod
    def failure(cls, error: BaseException, **fields: Any) -> ThinkingScore:
        """The failed judgment for ``error``: its message, kind, retryability and class.

        Args:
            error: Why the judgment failed.
            **fields: Other fields (``raw``, ``backend``, ``model``, ``metadata``...).
        """
        return cls(
            error=str(error) or type(error).__name__,
            error_kind=failure_kind(error),
            retryable=is_retryable(error),
            error_type=type(error).__name__,
            **fields,
        )

    @property
    def ok(self) -> bool:
        """Whether the judgment produced a score."""
        return self.score is not None

    def value(self, use_expected: bool = False) -> float | None:
        """The number a reward or a ranking takes from this judgment.

        Args:
            use_expected: Take ``expected_score`` when there is one.

        Returns:
            ``expected_score`` (asked for and present) or ``score``; None when the
            judgment failed, never 0.
        """
        if self.score is None:
            return None
        if use_expected and self.expected_score is not None:
            return self.expected_score
        return self.score

    def __float__(self) -> float:
        if self.score is None:
            raise ValueError(f"the judgment failed: {self.error}")
        return self.score


JudgeRunnable = Runnable[JudgeInput, ThinkingScore]
"""What the evaluators, rerankers, RL rewards and the batch runner take: any Runnable from a
judge input to a ThinkingScore (a ThinkingRewardJudge, or one wrapped with ``with_config``,
``with_retry``...). They call ``invoke`` / ``ainvoke`` / ``batch`` / ``abatch`` on it."""

__all__ = ["JudgeInput", "JudgeRunnable", "ThinkingScore"]
