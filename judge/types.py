"""The judge's input and result types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import NotRequired, TypedDict


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
        error_type: The failure's error class name (e.g. ``"ScoreParseError"``).
        expected_score: The probability-weighted score, when logprobs were used.
        model: The model that judged.
        backend: The backend's registry name.
        latency_s: Wall time of the request (for a batch-native backend, of its batch).
        usage: Token usage, when the backend reports it.
        prompt_sha256: SHA-256 of the rendered messages (see ``judge.prompt``).
        metadata: Provenance: template version, sampling sent, backend details.
    """

    model_config = ConfigDict(frozen=True)

    score: float | None = Field(default=None, ge=0.0, le=1.0)
    raw: str | None = None
    error: str | None = None
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
        return self

    @property
    def ok(self) -> bool:
        """Whether the judgment produced a score."""
        return self.score is not None

    def __float__(self) -> float:
        if self.score is None:
            raise ValueError(f"the judgment failed: {self.error}")
        return self.score


__all__ = ["JudgeInput", "ThinkingScore"]
