"""What every trainer adapter shares: its settings, the judge call of a step, the report.

Each adapter (:mod:`judge.rl.trl`, :mod:`judge.rl.verl`, :mod:`judge.rl.easyr1`) reads
its framework's arguments, plans the step with a :class:`~judge.rl.planner.Planner`,
judges what the plan asks in ONE batched judge call (``batch`` / ``abatch`` with
``return_exceptions=True``, never one request after another) and finishes the step.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from judge.rl.planner import Plan, Planner, RewardStep
from judge.rl.trust import TrustGRPO
from judge.types import JudgeRunnable, ThinkingScore

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

logger = logging.getLogger(__name__)

__all__ = ["RewardAdapter", "close_awaitable"]


class RewardAdapter:
    """The base of the trainer adapters: a planner, the judge call, logging.

    Args:
        judge: The judge: any Runnable from a judge input to a ThinkingScore.
        trust: The Trust-GRPO settings, or None for the thinking score alone.
        include_outcome: Reward ``R_o + term`` (True) or the term alone (False).
        use_expected_score: Take ``ThinkingScore.expected_score`` as ``R_t`` when present.
        num_generations: Group size; None finds groups as runs of equal keys.
        max_concurrency: Judge requests in flight; None leaves it to the backend.
        name: The reward's name (its ``__name__``), in logs and metrics.

    Raises:
        ValueError: Settings that do not fit together.
    """

    __name__: str

    def __init__(
        self,
        judge: JudgeRunnable,
        *,
        trust: TrustGRPO | None,
        include_outcome: bool,
        use_expected_score: bool,
        num_generations: int | None,
        max_concurrency: int | None,
        name: str,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.planner = Planner(
            trust=trust,
            include_outcome=include_outcome,
            use_expected_score=use_expected_score,
            num_generations=num_generations,
        )
        self.judge = judge
        self.max_concurrency = max_concurrency
        self.__name__ = name
        self.last_step: RewardStep | None = None
        """The last call's details (rewards, thinking scores, gammas, metrics)."""

    @property
    def trust(self) -> TrustGRPO | None:
        """The Trust-GRPO settings, or None without an outcome reward."""
        return self.planner.trust

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, trust={self.trust!r})"

    # -- the judge call, once sync and once async ----------------------------------------

    def _run(self, plan: Plan) -> RewardStep:
        """Judge what the plan asks in one batched call (none when nothing is asked)."""
        inputs = plan.inputs()
        results: Sequence[ThinkingScore | BaseException] = ()
        if inputs:
            results = self.judge.batch(inputs, self._config(), return_exceptions=True)
        return self.planner.finish(plan, results)

    async def _arun(self, plan: Plan) -> RewardStep:
        """Async :meth:`_run`."""
        inputs = plan.inputs()
        results: Sequence[ThinkingScore | BaseException] = ()
        if inputs:
            results = await self.judge.abatch(inputs, self._config(), return_exceptions=True)
        return self.planner.finish(plan, results)

    def _config(self) -> RunnableConfig | None:
        if self.max_concurrency is None:
            return None
        return {"max_concurrency": self.max_concurrency}

    def _report(self, step: RewardStep, log_metric: Callable[[str, float], Any] | None) -> None:
        """Keep the step as ``last_step``; log its failures and metrics (and to ``log_metric``)."""
        self.last_step = step
        if step.errors:
            logger.warning(
                "%s: %d of %d judgments failed (their thinking reward is None); first: %s",
                self.__name__,
                len(step.errors),
                len(step.scores),
                step.errors[0],
            )
        logger.debug("%s: %s", self.__name__, step.metrics)
        if log_metric is not None:
            for key, value in step.metrics.items():
                log_metric(f"{self.__name__}/{key}", value)


def close_awaitable(awaitable: Awaitable[Any]) -> None:
    """Close an awaitable that will not be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
