"""The half every evaluator shares: an example and a run in, a verdict out.

:class:`Evaluation` maps what an evaluator is given to a judge input (with ``prepare``,
by default :func:`judge.core.inputs.prepare_judge_input`), runs the judge with
:func:`keep_runs_local`, and turns the result (or the error that prevented one) into a
:class:`~judge.integrations.verdict.Verdict`. The judge is any
:data:`~judge.types.JudgeRunnable`.

**Input.** The question is ``inputs["question"]``, else the last user message of
``inputs["messages"]``, else the only string input; the response is
``outputs["response"]``, else ``outputs["output"]``, else the last AI message of
``outputs["messages"]``, else the only string or message output (a message's reasoning,
kept apart by reasoning parsers, is put back as ``<think>…</think>``); images are
``inputs["image"]`` / ``inputs["images"]``, else the example's image attachments (see
:mod:`judge.core.inputs`). Give ``prepare=`` (called with the same keyword arguments,
returning a :class:`~judge.types.JudgeInput`) to map it your own way, as LangChain's
``prepare_data`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langsmith.run_helpers import get_tracing_context, tracing_context

from judge.core.inputs import prepare_judge_input
from judge.errors import InputError, ThinkingJudgeError
from judge.integrations.verdict import Verdict, verdict
from judge.types import JudgeInput, JudgeRunnable, ThinkingScore

Prepare = Callable[..., JudgeInput]
"""``prepare(*, inputs, outputs, reference_outputs, attachments) -> JudgeInput``.

Maps an example and a run's outputs to the judge's input;
:func:`judge.core.inputs.prepare_judge_input` is the default.
"""


@contextlib.contextmanager
def keep_runs_local() -> Iterator[None]:
    """Keep LangChain runs off the network while LangSmith traces in "local" mode.

    ``langsmith.evaluate(..., upload_results=False)`` runs the target and the evaluators
    with tracing ``enabled="local"``, which langchain-core's callback manager takes for
    "on": its tracer would send every LangChain run made there (a chat model in the
    target, the judge in an evaluator) to LangSmith. Inside this context manager
    LangChain tracing is off in that mode; in any other mode it changes nothing. The
    evaluators use it around the judge; wrap a LangChain target's body in it.
    """
    if get_tracing_context().get("enabled") != "local":
        yield
        return
    with tracing_context(enabled=False):
        yield


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The pure half of every evaluator: what to judge, and what to report.

    Build it with :func:`evaluation` (which checks the key).

    Attributes:
        key: The feedback key.
        prepare: Maps the evaluator's arguments to the judge input.
        use_expected_score: Report the expected score when the judge computes one.
    """

    key: str
    prepare: Prepare
    use_expected_score: bool

    def item(
        self, inputs: Any, outputs: Any, reference_outputs: Any, attachments: Any
    ) -> JudgeInput | ThinkingScore:
        """The judge input, or the failed judgment when none can be made.

        Args:
            inputs: The example's (or the run's) inputs.
            outputs: The run's outputs.
            reference_outputs: The example's reference outputs.
            attachments: The example's attachments.
        """
        try:
            return self.prepare(
                inputs=inputs,
                outputs=outputs,
                reference_outputs=reference_outputs,
                attachments=attachments,
            )
        except InputError as exc:
            return ThinkingScore.failure(exc)

    def judge(
        self,
        judge: JudgeRunnable,
        item: JudgeInput | ThinkingScore,
        config: RunnableConfig | None = None,
    ) -> Verdict:
        """Judge ``item`` (unless it is already a failure) and return the verdict."""
        if isinstance(item, ThinkingScore):
            return self.verdict(item)
        try:
            with keep_runs_local():
                score = judge.invoke(item, config)
        except ThinkingJudgeError as exc:  # a judge built with raise_on_error=True
            score = ThinkingScore.failure(exc)
        return self.verdict(score)

    async def ajudge(
        self,
        judge: JudgeRunnable,
        item: JudgeInput | ThinkingScore,
        config: RunnableConfig | None = None,
    ) -> Verdict:
        """Judge ``item`` (unless it is already a failure) and return the verdict; async."""
        if isinstance(item, ThinkingScore):
            return self.verdict(item)
        try:
            with keep_runs_local():
                score = await judge.ainvoke(item, config)
        except ThinkingJudgeError as exc:
            score = ThinkingScore.failure(exc)
        return self.verdict(score)

    def verdict(self, score: ThinkingScore) -> Verdict:
        """What to report for a judgment."""
        return verdict(score, key=self.key, use_expected_score=self.use_expected_score)


def evaluation(key: str, prepare: Prepare | None, use_expected_score: bool) -> Evaluation:
    """An :class:`Evaluation`, with the default ``prepare``.

    Raises:
        ValueError: ``key`` is empty.
    """
    if not key:
        raise ValueError("an evaluator needs a non-empty feedback key")
    return Evaluation(key, prepare or prepare_judge_input, use_expected_score)


__all__ = ["Evaluation", "Prepare", "evaluation", "keep_runs_local"]
