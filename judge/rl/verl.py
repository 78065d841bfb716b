"""The thinking judge as verl's ``compute_score``: per sample (sync, async) and batched."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from judge.rl.base import close_awaitable
from judge.rl.framework import FrameworkReward, step_from
from judge.rl.planner import Plan, outcome_value

__all__ = ["VerlReward"]


class VerlReward(FrameworkReward):
    """The thinking judge as verl's ``compute_score``, per sample or batched.

    In a reward file for verl (``custom_reward_function.path`` / ``.name``)::

        reward = VerlReward(judge, outcome_reward=default_compute_score, num_generations=8)
        compute_score = reward.compute_score_batch   # reward_model.reward_manager=batch

    * :meth:`compute_score_batch`: verl's batch manager's call, with Trust-GRPO on the
      groups (consecutive responses of one question: verl repeats a prompt's rollouts
      side by side) and one batched judge call;
    * :meth:`compute_score` / :meth:`acompute_score`: one sample (verl's naive manager,
      and its async reward loop, which runs the async one concurrently). With one
      sample there is no group: use ``trust=False, skip_saturated=False`` (the training
      code's per-item path: ``R_o + alpha * exp(-step / T) * R_t``).

    The question travels in ``extra_info["question"]`` (or ``"prompt"``), images in
    ``extra_info["images"]`` / ``["image"]`` (paths, bytes, PIL images, URLs, or
    ``{"bytes", "path"}`` dicts as Parquet stores them). The step, for the annealing, is
    ``global_step`` (or ``global_steps``, ``step``) from the keyword arguments or
    ``extra_info``, else the number of earlier batched calls. Each result is a dict:
    ``score`` and the details (``thinking``, ``gamma``, ``outcome``, ``judged``,
    ``thinking_failed``), which verl logs. A failed judgment leaves the response its
    outcome reward alone (``thinking_failed`` = 1); without an outcome reward it raises
    :class:`~judge.errors.JudgmentError`.

    Args:
        judge: The judge.
        outcome_reward: verl's ``compute_score(data_source, solution_str, ground_truth,
            extra_info)`` giving ``R_o`` (a number, or a dict with ``"score"``); None
            for the thinking score alone.
        alpha: As in :class:`GRPOReward`.
        anneal_steps: As in :class:`GRPOReward`.
        trust: As in :class:`GRPOReward`.
        skip_saturated: As in :class:`GRPOReward`.
        skip_below: As in :class:`GRPOReward`.
        use_expected_score: As in :class:`GRPOReward`.
        num_generations: Rollouts per prompt; None finds groups as runs of one question.
        max_concurrency: As in :class:`GRPOReward`.
        question_keys: The ``extra_info`` keys to take the question from, in turn.
        name: The name in logs.
    """

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
        trust = self.trust
        if trust is not None and (trust.trust or trust.skip_saturated):
            raise ValueError(
                "one sample is no group: per-sample compute_score needs trust=False and "
                "skip_saturated=False (or use compute_score_batch for Trust-GRPO)"
            )
        sample = self._sample(solution_str, extra_info, "extra_info")
        outcome = None
        if self.outcome_reward is not None:
            outcome = [self._outcome(data_source, solution_str, ground_truth, extra_info)]
        step = step_from(kwargs, extra_info)
        return self.planner.plan([sample], [range(1)], outcome, step)

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
        return self._results(self._run(plan), "score")[0]

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
        return self._results(await self._arun(plan), "score")[0]

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
