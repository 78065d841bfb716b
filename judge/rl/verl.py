"""The thinking judge as verl's ``compute_score``: per sample (sync, async) and batched.

verl 0.9.1's trainer reaches rewards only through its reward loop, which calls a
``compute_score`` once per sample (the ``naive`` manager): there Trust-GRPO has no group
to weigh, so :meth:`VerlReward.compute_score` leaves the trust weight and the
saturated-group rule out (``R_o + alpha * exp(-step / T) * R_t``). Trust-GRPO on whole
groups inside verl's reward loop is :class:`judge.rl.verl_manager.ThinkingRewardManager`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from judge.rl.base import close_awaitable
from judge.rl.framework import FrameworkReward, step_from
from judge.rl.planner import Plan, Planner, RewardStep, outcome_value
from judge.types import JudgeRunnable, ThinkingScore

__all__ = ["VerlReward"]


class VerlReward(FrameworkReward):
    """The thinking judge as verl's ``compute_score``, per sample or batched.

    In a reward file for verl's naive reward manager (``reward.custom_reward_function.path``
    / ``.name``)::

        reward = VerlReward(judge, outcome_reward=default_compute_score)
        compute_score = reward.acompute_score   # verl awaits coroutine functions

    * :meth:`compute_score` / :meth:`acompute_score`: one sample, as verl 0.9.1's reward
      loop calls it. One sample is no group: the trust weight and the saturated-group
      rule do not apply (``gamma`` = 1), the ``skip_below`` rule does. For Trust-GRPO on
      whole groups, use :class:`judge.rl.verl_manager.ThinkingRewardManager`.
    * :meth:`compute_score_batch`: a batch in one judge call, with Trust-GRPO on the
      groups (consecutive responses of one question), for callers that hold whole
      groups (verl releases before the reward loop had a ``batch`` manager).

    The question travels in ``extra_info["question"]`` (or ``"prompt"``), images in
    ``extra_info["images"]`` / ``["image"]`` (paths, bytes, PIL images, URLs, or
    ``{"bytes", "path"}`` dicts as Parquet stores them). The step, for the annealing, is
    ``global_step`` (or ``global_steps``, ``step``) from the keyword arguments or
    ``extra_info``, else the number of earlier batched calls. Each result is a dict:
    ``score`` and the details (``thinking``, ``gamma``, ``outcome``, ``judged``,
    ``thinking_failed``), which verl logs and averages: none is NaN (``thinking`` is 0.0
    where not judged or failed; ``thinking_failed`` = 1 tells a failure). A failed
    judgment leaves the response its outcome reward alone; without an outcome reward,
    a per-sample call returns ``failure_score`` (flagged) and a batched call raises
    :class:`~judge.errors.JudgmentError`.

    Args:
        judge: The judge.
        outcome_reward: verl's ``compute_score(data_source, solution_str, ground_truth,
            extra_info)`` giving ``R_o`` (a number, or a dict with ``"score"``); None
            for the thinking score alone.
        alpha: As in :class:`GRPOReward`.
        anneal_steps: As in :class:`GRPOReward`.
        trust: As in :class:`GRPOReward` (batched calls only).
        skip_saturated: As in :class:`GRPOReward` (batched calls only).
        skip_below: As in :class:`GRPOReward`.
        use_expected_score: As in :class:`GRPOReward`.
        num_generations: Rollouts per prompt; None finds groups as runs of one question.
        max_concurrency: As in :class:`GRPOReward`.
        question_keys: The ``extra_info`` keys to take the question from, in turn.
        name: The name in logs.
        failure_score: A per-sample call's score for a failed judgment when there is
            no outcome reward (flagged ``thinking_failed`` = 1); None raises
            :class:`~judge.errors.JudgmentError` instead, which stops verl's step.
    """

    def __init__(
        self,
        judge: JudgeRunnable,
        *,
        outcome_reward: Callable[..., Any] | None = None,
        alpha: float = 0.3,
        anneal_steps: float | None = None,
        trust: bool = True,
        skip_saturated: bool = True,
        skip_below: float | None = 0.2,
        use_expected_score: bool = True,
        num_generations: int | None = None,
        max_concurrency: int | None = None,
        question_keys: Sequence[str] = ("question", "prompt"),
        name: str = "thinking_reward",
        failure_score: float | None = 0.0,
    ) -> None:
        super().__init__(
            judge,
            outcome_reward=outcome_reward,
            alpha=alpha,
            anneal_steps=anneal_steps,
            trust=trust,
            skip_saturated=skip_saturated,
            skip_below=skip_below,
            use_expected_score=use_expected_score,
            num_generations=num_generations,
            max_concurrency=max_concurrency,
            question_keys=question_keys,
            name=name,
        )
        if failure_score is not None and not math.isfinite(failure_score):
            raise ValueError(f"failure_score must be finite, got {failure_score}")
        self.failure_score = failure_score
        group_rules = self.planner.trust
        self.sample_planner = Planner(
            trust=None
            if group_rules is None
            else dataclasses.replace(group_rules, trust=False, skip_saturated=False),
            include_outcome=True,
            use_expected_score=use_expected_score,
            num_generations=None,
        )
        """One sample's planner: Trust-GRPO without the group rules."""

    def _outcome(
        self, data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any
    ) -> float | None:
        assert self.outcome_reward is not None
        value = self.outcome_reward(
            data_source=data_source,
            solution_str=solution_str,
            ground_truth=ground_truth,
            extra_info=extra_info,
        )
        if inspect.isawaitable(value):
            close_awaitable(value)
            raise TypeError("verl's outcome reward must be a plain function")
        return outcome_value(value, "the outcome reward")

    def _plan_one(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> Plan:
        sample = self._sample(solution_str, extra_info, "extra_info")
        outcome = None
        if self.outcome_reward is not None:
            outcome = [self._outcome(data_source, solution_str, ground_truth, extra_info)]
        step = step_from(kwargs, extra_info)
        return self.sample_planner.plan([sample], [range(1)], outcome, step)

    def compute_score(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Score one sample (verl's per-sample ``compute_score``)."""
        plan = self._plan_one(data_source, solution_str, ground_truth, extra_info, kwargs)
        return self._one(self.sample_planner.finish(plan, self._judge_sync(plan)))

    async def acompute_score(
        self,
        data_source: Any,
        solution_str: str,
        ground_truth: Any,
        extra_info: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Async :meth:`compute_score`, for verl's reward loop."""
        plan = self._plan_one(data_source, solution_str, ground_truth, extra_info, kwargs)
        return self._one(self.sample_planner.finish(plan, await self._judge_async(plan)))

    def compute_score_batch(
        self,
        data_sources: Sequence[Any],
        solution_strs: Sequence[str],
        ground_truths: Sequence[Any],
        extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, float]]:
        """Score a batch (verl's batch ``compute_score``), one judge call for all."""
        n = len(solution_strs)
        infos = list(extra_infos) if extra_infos is not None else [None] * n
        if not len(data_sources) == len(ground_truths) == len(infos) == n:
            raise ValueError(
                "data_sources, solution_strs, ground_truths and extra_infos differ in length"
            )
        samples = [
            self._sample(s, info, f"extra_infos[{i}]")
            for i, (s, info) in enumerate(zip(solution_strs, infos, strict=True))
        ]
        outcome = None
        if self.outcome_reward is not None:
            outcome = [
                self._outcome(d, s, g, info)
                for d, s, g, info in zip(
                    data_sources, solution_strs, ground_truths, infos, strict=True
                )
            ]
        step = step_from(kwargs, infos[0] if infos else None)
        plan = self._plan_batch(samples, outcome, step)
        return self._results(self._run(plan), "score")

    def _judge_sync(self, plan: Plan) -> Sequence[ThinkingScore | BaseException]:
        inputs = plan.inputs()
        if not inputs:
            return []
        return self.judge.batch(inputs, self._config(), return_exceptions=True)

    async def _judge_async(self, plan: Plan) -> Sequence[ThinkingScore | BaseException]:
        inputs = plan.inputs()
        if not inputs:
            return []
        return await self.judge.abatch(inputs, self._config(), return_exceptions=True)

    def _one(self, step: RewardStep) -> dict[str, float]:
        """One sample's result dict; without an outcome, a failure gets ``failure_score``."""
        if step.outcome is None and step.rewards[0] is None and self.failure_score is not None:
            self._report(step, None)
            return {
                "score": self.failure_score,
                "thinking": 0.0,
                "thinking_failed": 1.0,
                "judged": 1.0,
                "gamma": 1.0,
            }
        return self._results(step, "score")[0]
