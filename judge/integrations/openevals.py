"""The judge as openevals-style evaluator functions, sync and async.

``evaluator(*, inputs, outputs, reference_outputs=None, attachments=None, **kwargs) ->
{"key", "score", "comment", "metadata"}`` (openevals' ``EvaluatorResult``), from
``judge.as_evaluator()``: usable in ``langsmith.evaluate`` / ``langsmith.aevaluate``, in
a ``@pytest.mark.langsmith`` test (where it logs its feedback, as openevals' evaluators
do) and wherever a reflection loop wants a score and a non-empty comment. A failed
judgment has ``score=None``, a comment that says why and ``extra={"error": True}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from judge.integrations.evaluation import Prepare, evaluation
from judge.integrations.verdict import EVALUATION_KEY
from judge.types import JudgeRunnable

EvaluatorResult = dict[str, Any]
"""``{"key", "score", "comment", "metadata"}`` (and ``"extra"`` on an error)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def _test_case_active() -> bool:
    """Whether this runs inside a ``@pytest.mark.langsmith`` test that tracks feedback."""
    try:
        from langsmith.testing._internal import _TEST_CASE
    except ImportError:  # a langsmith without pytest support
        return False
    return _TEST_CASE.get() is not None


@contextlib.contextmanager
def _test_feedback(key: str) -> Iterator[Callable[[EvaluatorResult], None]]:
    """Inside a ``@pytest.mark.langsmith`` test, trace the judgment as feedback and log it.

    As openevals' evaluators do; elsewhere it does nothing.
    """
    if not _test_case_active():
        yield lambda _result: None
        return
    from langsmith import testing

    def log(result: EvaluatorResult) -> None:
        testing.log_feedback(key=result["key"], score=result["score"], comment=result["comment"])

    with testing.trace_feedback(name=key):
        yield log


def _named(function: _F, key: str) -> _F:
    function.__name__ = key
    function.__qualname__ = key
    return function


def create_thinking_evaluator(
    judge: JudgeRunnable,
    *,
    key: str = EVALUATION_KEY,
    prepare: Prepare | None = None,
    use_expected_score: bool = True,
) -> Callable[..., EvaluatorResult]:
    """An openevals-style evaluator function around the judge.

    Args:
        judge: The judge (any Runnable from a judge input to a ``ThinkingScore``).
        key: The feedback key (also the function's ``__name__``, which LangSmith
            shows).
        prepare: Maps ``inputs``, ``outputs``, ``reference_outputs`` and ``attachments``
            to the judge input; defaults to :func:`judge.core.inputs.prepare_judge_input`.
        use_expected_score: Report the expected score when the judge computes one.

    Returns:
        ``evaluator(*, inputs=None, outputs, reference_outputs=None, attachments=None,
        **kwargs) -> {"key", "score", "comment", "metadata"}``; on a failed judgment
        ``score`` is None, ``comment`` says why and ``extra={"error": True}`` is added.

    Raises:
        ValueError: ``key`` is empty.

    Example:
        ```python
        evaluator = judge.as_evaluator()
        evaluator(inputs={"question": "What is 2+2?"},
                  outputs={"response": "<think>2+2=4</think><answer>4</answer>"})
        langsmith.evaluate(target, data=examples, evaluators=[evaluator])
        ```
    """
    found = evaluation(key, prepare, use_expected_score)

    def evaluator(
        *,
        inputs: Any = None,
        outputs: Any,
        reference_outputs: Any = None,
        attachments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> EvaluatorResult:
        with _test_feedback(found.key) as log:
            item = found.item(inputs, outputs, reference_outputs, attachments)
            result = found.judge(judge, item).as_dict()
            log(result)
        return result

    return _named(evaluator, found.key)


def create_async_thinking_evaluator(
    judge: JudgeRunnable,
    *,
    key: str = EVALUATION_KEY,
    prepare: Prepare | None = None,
    use_expected_score: bool = True,
) -> Callable[..., Coroutine[Any, Any, EvaluatorResult]]:
    """The async form of :func:`create_thinking_evaluator` (for ``langsmith.aevaluate``).

    Raises:
        ValueError: ``key`` is empty.
    """
    found = evaluation(key, prepare, use_expected_score)

    async def evaluator(
        *,
        inputs: Any = None,
        outputs: Any,
        reference_outputs: Any = None,
        attachments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> EvaluatorResult:
        with _test_feedback(found.key) as log:
            item = found.item(inputs, outputs, reference_outputs, attachments)
            result = (await found.ajudge(judge, item)).as_dict()
            log(result)
        return result

    return _named(evaluator, found.key)


__all__ = ["EvaluatorResult", "create_async_thinking_evaluator", "create_thinking_evaluator"]
