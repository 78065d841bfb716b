"""The judge as a LangSmith ``RunEvaluator``, for ``langsmith.evaluate`` / ``aevaluate``.

:class:`ThinkingRunEvaluator` (from ``judge.as_langsmith_evaluator()``) returns an
``EvaluationResult`` with ``key="thinking_reward"``, the score, a comment and a
continuous 0..1 ``feedback_config``. A failed judgment has ``score=None``, a comment that
starts with ``"evaluation error"`` and ``extra={"error": True}`` (what LangSmith itself
records for an evaluator that failed). See :mod:`judge.integrations.evaluation` for where
the question, the response and the images are found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from langchain_core.runnables import RunnableConfig
from langsmith.evaluation.evaluator import EvaluationResult, RunEvaluator

from judge.integrations.evaluation import Prepare, evaluation
from judge.integrations.verdict import EVALUATION_KEY, FEEDBACK_CONFIG, Verdict
from judge.types import JudgeInput, JudgeRunnable, ThinkingScore

if TYPE_CHECKING:
    from langsmith.schemas import Example, Run


def evaluation_result(found: Verdict, source_run_id: UUID | None = None) -> EvaluationResult:
    """A verdict as a LangSmith ``EvaluationResult``.

    Args:
        found: The verdict.
        source_run_id: The judge's run, which the feedback links to.
    """
    return EvaluationResult(
        key=found.key,
        score=found.score,
        comment=found.comment,
        metadata=found.metadata,
        feedback_config=FEEDBACK_CONFIG,
        source_run_id=source_run_id,
        extra={"error": True} if found.error else None,
    )


class ThinkingRunEvaluator(RunEvaluator):
    """The judge as a LangSmith ``RunEvaluator``.

    Build it with ``judge.as_langsmith_evaluator()``. Each run is judged once; the
    result is an ``EvaluationResult`` under ``key`` with a continuous 0..1
    ``feedback_config``, or, when the judgment failed, one with ``score=None``, the
    reason in ``comment`` and ``extra={"error": True}``.

    Args:
        judge: The judge (any Runnable from a judge input to a ``ThinkingScore``).
        key: The feedback key.
        prepare: Maps ``inputs`` (the example's, else the run's), ``outputs`` (the
            run's), ``reference_outputs`` and ``attachments`` (the example's) to the
            judge input; defaults to :func:`judge.core.inputs.prepare_judge_input`.
        use_expected_score: Report the expected score when the judge computes one.

    Example:
        ```python
        from langsmith import evaluate

        evaluate(target, data="my-dataset", evaluators=[judge.as_langsmith_evaluator()])
        ```
    """

    def __init__(
        self,
        judge: JudgeRunnable,
        *,
        key: str = EVALUATION_KEY,
        prepare: Prepare | None = None,
        use_expected_score: bool = True,
    ) -> None:
        self.judge = judge
        self._evaluation = evaluation(key, prepare, use_expected_score)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, judge={self.judge!r})"

    @property
    def key(self) -> str:
        """The feedback key."""
        return self._evaluation.key

    @property
    def feedback_keys(self) -> list[str]:
        """The one feedback key this evaluator reports (LangSmith reads it on errors)."""
        return [self.key]

    def _item(self, run: Run, example: Example | None) -> JudgeInput | ThinkingScore:
        inputs = example.inputs if example is not None else run.inputs
        return self._evaluation.item(
            inputs,
            run.outputs,
            example.outputs if example is not None else None,
            example.attachments if example is not None else None,
        )

    @staticmethod
    def _config(evaluator_run_id: UUID | None) -> RunnableConfig | None:
        return None if evaluator_run_id is None else {"run_id": evaluator_run_id}

    def evaluate_run(
        self,
        run: Run,
        example: Example | None = None,
        evaluator_run_id: UUID | None = None,
    ) -> EvaluationResult:
        """Judge one run.

        Args:
            run: The run whose outputs hold the response.
            example: The dataset example (its inputs hold the question).
            evaluator_run_id: The id to give the judge's run (it becomes the
                result's ``source_run_id``).

        Returns:
            The evaluation result; ``score`` is None when the judgment failed.
        """
        item = self._item(run, example)
        found = self._evaluation.judge(self.judge, item, self._config(evaluator_run_id))
        return evaluation_result(found, evaluator_run_id)

    async def aevaluate_run(
        self,
        run: Run,
        example: Example | None = None,
        evaluator_run_id: UUID | None = None,
    ) -> EvaluationResult:
        """Judge one run (async); as :meth:`evaluate_run`."""
        item = self._item(run, example)
        found = await self._evaluation.ajudge(self.judge, item, self._config(evaluator_run_id))
        return evaluation_result(found, evaluator_run_id)


__all__ = ["ThinkingRunEvaluator", "evaluation_result"]
