"""The judge as langchain-classic's ``StringEvaluator`` (``evaluate_strings``).

From ``judge.as_string_evaluator()``, when ``langchain-classic`` is installed: the class
:class:`ThinkingStringEvaluator` is defined on first use, so this module imports without
it. The interface has no error shape, so a failed judgment raises the typed error of its
kind (:func:`failure_error`), never a score, whatever judge Runnable it wraps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from judge.core.inputs import image_fields, question_text, response_text
from judge.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConstraintError,
    InputError,
    ScoreParseError,
    ThinkingJudgeError,
)
from judge.failures import FailureKind
from judge.integrations.evaluation import evaluation, keep_runs_local
from judge.integrations.verdict import EVALUATION_KEY, band
from judge.types import JudgeInput, JudgeRunnable, ThinkingScore

_ERRORS: dict[FailureKind, Callable[[str, ThinkingScore], ThinkingJudgeError]] = {
    FailureKind.INPUT: lambda message, _score: InputError(message),
    FailureKind.PARSE: lambda message, score: ScoreParseError(message, llm_output=score.raw or ""),
    FailureKind.CONSTRAINT: lambda message, _score: ConstraintError(message),
    # vLLM and OpenAI refuse a prompt that does not fit with 400
    FailureKind.CONTEXT_LENGTH: lambda message, score: BackendContextLengthError(
        message, status=400, backend=score.backend
    ),
    FailureKind.CONNECTION: lambda message, score: BackendConnectionError(
        message, backend=score.backend
    ),
    FailureKind.TIMEOUT: lambda message, score: BackendTimeoutError(message, backend=score.backend),
    FailureKind.SERVER: lambda message, score: BackendError(message, backend=score.backend),
    FailureKind.UNAVAILABLE: lambda message, score: BackendUnavailableError(
        message, backend=score.backend
    ),
    FailureKind.INTERNAL: lambda message, _score: ThinkingJudgeError(message),
}


def failure_error(score: ThinkingScore) -> ThinkingJudgeError:
    """The typed error of a failed judgment, by its ``error_kind``.

    Args:
        score: A failed ``ThinkingScore``.

    Returns:
        An error of the class its kind is raised as (see :mod:`judge.failures`), with
        the judgment's message: ``ScoreParseError`` for ``parse``, ``InputError`` for
        ``input``, ``BackendConnectionError`` for ``connection``...
    """
    kind = FailureKind(score.error_kind or FailureKind.INTERNAL)
    message = score.error or kind.value
    error = _ERRORS[kind](message, score)
    error.args = (message,)  # the message as it was: not extended a second time
    return error


def _scored(score: ThinkingScore) -> ThinkingScore:
    if score.score is None:
        raise failure_error(score)
    return score


def create_string_evaluator(
    judge: JudgeRunnable, *, key: str = EVALUATION_KEY, use_expected_score: bool = True
) -> Any:
    """The judge as langchain-classic's ``StringEvaluator`` (see ``ThinkingStringEvaluator``).

    Args:
        judge: The judge (any Runnable from a judge input to a ``ThinkingScore``).
        key: The evaluation name.
        use_expected_score: Report the expected score when the judge computes one.

    Raises:
        ImportError: langchain-classic is not installed.
        ValueError: ``key`` is empty.
    """
    return _string_evaluator_class()(judge, key=key, use_expected_score=use_expected_score)


@functools.cache
def _string_evaluator_class() -> type:
    """Define ``ThinkingStringEvaluator`` on first use: langchain-classic is optional."""
    try:
        from langchain_classic.evaluation.schema import StringEvaluator
    except ImportError as exc:
        raise ImportError(
            "the StringEvaluator interface needs langchain-classic: "
            "pip install 'thinking-reward-judge[langchain]'"
        ) from exc

    class ThinkingStringEvaluator(StringEvaluator):
        """The judge as langchain-classic's ``StringEvaluator``.

        ``input`` is the question (required), ``prediction`` the response (a string,
        a message or a generation); ``reference`` is not used. Pass ``image=`` or
        ``images=`` as keyword arguments for a multimodal question. Returns
        ``{"score", "value", "reasoning"}`` (``value`` is the score's band). The
        interface has no error shape, so a failed judgment raises its typed error
        (:class:`~judge.errors.JudgmentError`, :class:`~judge.errors.BackendError`,
        :class:`~judge.errors.InputError`), never a score.
        """

        def __init__(
            self,
            judge: JudgeRunnable,
            *,
            key: str = EVALUATION_KEY,
            use_expected_score: bool = True,
        ) -> None:
            self.judge = judge
            self._evaluation = evaluation(key, None, use_expected_score)

        @property
        def evaluation_name(self) -> str:
            return self._evaluation.key

        @property
        def requires_input(self) -> bool:
            return True

        @property
        def requires_reference(self) -> bool:
            return False

        def _item(self, prediction: Any, input: Any, kwargs: Mapping[str, Any]) -> JudgeInput:
            item: dict[str, Any] = {
                "question": question_text(input),
                "response": response_text(prediction),
                **image_fields(kwargs),
            }
            return item  # type: ignore[return-value]

        def _result(self, score: ThinkingScore) -> dict[str, Any]:
            found = self._evaluation.verdict(_scored(score))
            assert found.score is not None  # a failed judgment raised above
            return {"score": found.score, "value": band(found.score), "reasoning": found.comment}

        def _evaluate_strings(
            self,
            *,
            prediction: Any,
            reference: Any = None,
            input: Any = None,
            **kwargs: Any,
        ) -> dict[str, Any]:
            item = self._item(prediction, input, kwargs)
            with keep_runs_local():
                score = self.judge.invoke(item, {"callbacks": kwargs.get("callbacks")})
            return self._result(score)

        async def _aevaluate_strings(
            self,
            *,
            prediction: Any,
            reference: Any = None,
            input: Any = None,
            **kwargs: Any,
        ) -> dict[str, Any]:
            item = self._item(prediction, input, kwargs)
            with keep_runs_local():
                score = await self.judge.ainvoke(item, {"callbacks": kwargs.get("callbacks")})
            return self._result(score)

    ThinkingStringEvaluator.__module__ = __name__
    return ThinkingStringEvaluator


def __getattr__(name: str) -> Any:
    if name == "ThinkingStringEvaluator":
        return _string_evaluator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_string_evaluator", "failure_error"]
