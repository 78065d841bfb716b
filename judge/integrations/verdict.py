"""What every evaluator reports for one judgment: the verdict, its comment and its band.

Pure: no LangSmith, no Runnable. Each evaluator shape (:mod:`judge.integrations.langsmith`,
:mod:`judge.integrations.openevals`, :mod:`judge.integrations.classic`) turns a
:class:`~judge.types.ThinkingScore` into a :class:`Verdict` here and then into its own
result type.

**The comment.** The model gives only a number, so the comment states the score, its
band in the model card's words and the rubric the model was trained on, e.g.
``"0.3/1: partial correctness or minor errors (rubric: logical soundness, correct
reasoning, error identification, language consistency, redundancy)"``.

**Failures.** A failed judgment is never reported as a score: the verdict has
``score=None``, a comment that starts with ``"evaluation error"`` and says why, the
error, its kind and its type in the metadata, and ``error=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from judge.types import ThinkingScore

EVALUATION_KEY = "thinking_reward"
"""The feedback key the evaluators report under by default."""

RUBRIC: tuple[str, ...] = (
    "logical soundness",
    "correct reasoning",
    "error identification",
    "language consistency",
    "redundancy",
)
"""The criteria the model was trained to judge the thinking on (its model card)."""

FEEDBACK_CONFIG: dict[str, Any] = {"type": "continuous", "min": 0, "max": 1}
"""LangSmith's feedback configuration for the score: continuous, in [0, 1]."""

MAX_RAW_SHOWN = 200
"""How many characters of the model's raw answer a verdict's metadata keeps."""


def band(value: float) -> str:
    """The model card's words for a score.

    Args:
        value: A score in [0, 1].

    Returns:
        ``"completely flawed reasoning"`` (about 0), ``"perfectly sound reasoning"``
        (about 1) or ``"partial correctness or minor errors"``.
    """
    if value <= 0.05:
        return "completely flawed reasoning"
    if value >= 0.95:
        return "perfectly sound reasoning"
    return "partial correctness or minor errors"


def score_comment(score: float, *, expected_from: float | None = None) -> str:
    """The comment for a score: the value, its band and the rubric.

    Args:
        score: The reported score in [0, 1].
        expected_from: The model's own answer, when ``score`` is the expected score.

    Returns:
        E.g. ``"0.3/1: partial correctness or minor errors (rubric: logical
        soundness, correct reasoning, error identification, language consistency,
        redundancy)"``.
    """
    shown = f"{score:g}" if expected_from is None else f"{score:.3g}"
    how = (
        "" if expected_from is None else f" (expected score; the model answered {expected_from:g})"
    )
    return f"{shown}/1{how}: {band(score)} (rubric: {', '.join(RUBRIC)})"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an evaluator reports for one judgment, whatever its shape.

    Attributes:
        key: The feedback key.
        score: The score, or None when the judgment failed.
        comment: Never empty: the score's band and rubric, or why there is no score.
        metadata: The judgment's details (no prompt, no image).
        error: Whether this is an evaluation error.
    """

    key: str
    score: float | None
    comment: str
    metadata: dict[str, Any]
    error: bool

    def as_dict(self) -> dict[str, Any]:
        """As an openevals ``EvaluatorResult`` (``extra`` added on an error)."""
        result: dict[str, Any] = {
            "key": self.key,
            "score": self.score,
            "comment": self.comment,
            "metadata": self.metadata,
        }
        if self.error:
            result["extra"] = {"error": True}
        return result


def verdict(
    result: ThinkingScore,
    *,
    key: str = EVALUATION_KEY,
    use_expected_score: bool = True,
) -> Verdict:
    """Turn a judgment into what evaluators report.

    Args:
        result: The judge's ``ThinkingScore`` (an error raised before or instead of a
            judgment is given as ``ThinkingScore.failure(error)``).
        key: The feedback key.
        use_expected_score: Report the expected score when the judge computed one
            (``ThinkingRewardJudge(expected_score=True)``), else the model's answer.

    Returns:
        The verdict; ``score`` is None exactly when the judgment failed.
    """
    details = _details(result)
    if result.score is None:
        kind = str(result.error_kind)
        error_type = result.error_type or kind
        details.update(error=result.error, error_kind=kind, error_type=error_type)
        comment = f"evaluation error, no score: {error_type}: {result.error}"
        return Verdict(key, None, comment, details, error=True)
    if use_expected_score and result.expected_score is not None:
        value = result.expected_score
        comment = score_comment(value, expected_from=result.score)
    else:
        value, comment = result.score, score_comment(result.score)
    return Verdict(key, value, comment, details, error=False)


def _details(score: ThinkingScore) -> dict[str, Any]:
    raw = score.raw if score.raw is None else score.raw[:MAX_RAW_SHOWN]
    details = {
        "score": score.score,
        "expected_score": score.expected_score,
        "raw": raw,
        "model": score.model,
        "backend": score.backend,
        "prompt_sha256": score.prompt_sha256,
        "latency_s": score.latency_s,
    }
    return {k: v for k, v in details.items() if v is not None}


__all__ = [
    "EVALUATION_KEY",
    "FEEDBACK_CONFIG",
    "MAX_RAW_SHOWN",
    "RUBRIC",
    "Verdict",
    "band",
    "score_comment",
    "verdict",
]
