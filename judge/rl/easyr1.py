"""The thinking judge as EasyR1's batch reward function (``compute_score(reward_inputs)``)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from judge.rl.base import close_awaitable
from judge.rl.framework import FrameworkReward, step_from
from judge.rl.planner import outcome_value

__all__ = ["EasyR1Reward"]


class EasyR1Reward(FrameworkReward):
    """The thinking judge as EasyR1's batch reward function.

    In a reward file for EasyR1 (``worker.reward.reward_function=./thinking.py:compute_score``)::

        REWARD_NAME = "thinking"
        REWARD_TYPE = "batch"
        compute_score = EasyR1Reward(judge, outcome_reward=math_compute_score)

    EasyR1 calls ``compute_score(reward_inputs)`` with one dict per response and takes
    one dict per response with ``"overall"`` (the reward) and more keys, which it logs
    as metrics. Its stock reward manager passes ``response``, ``response_length`` and
    ``ground_truth`` only: the judge also needs the question (``"question"`` or
    ``"prompt"``) and any image (``"images"``, ``"image"`` or ``"multi_modal_data"``),
    which a reward manager that passes them must add. The step is ``global_step`` (or
    ``global_steps``, ``step``) of the first input or the keyword arguments, else the
    number of earlier calls (validation calls included). Groups, Trust-GRPO and failures
    are as in :class:`VerlReward`.

    Args:
        judge: The judge.
        outcome_reward: An EasyR1 batch reward function (``reward_inputs -> list``)
            giving ``R_o`` per input, as numbers or dicts with ``"overall"``; None for
            the thinking score alone.
        alpha: As in :class:`GRPOReward`.
        anneal_steps: As in :class:`GRPOReward`.
        trust: As in :class:`GRPOReward`.
        skip_saturated: As in :class:`GRPOReward`.
        skip_below: As in :class:`GRPOReward`.
        use_expected_score: As in :class:`GRPOReward`.
        num_generations: Rollouts per prompt; None finds groups as runs of one question.
        max_concurrency: As in :class:`GRPOReward`.
        question_keys: The input keys to take the question from, in turn.
        name: The name in logs.
    """

    def __call__(
        self, reward_inputs: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> list[dict[str, float]]:
        """Score a batch of EasyR1 reward inputs, one judge call for all."""
        samples = [
            self._sample(str(item.get("response", "")), item, f"reward_inputs[{i}]")
            for i, item in enumerate(reward_inputs)
        ]
        outcome = None
        if self.outcome_reward is not None:
            values = self.outcome_reward(list(reward_inputs))
            if inspect.isawaitable(values):
                close_awaitable(values)
                raise TypeError("EasyR1's outcome reward must be a plain function")
            outcome = [outcome_value(v, "the outcome reward") for v in values]
        step = step_from(kwargs, reward_inputs[0] if reward_inputs else None)
        plan = self._plan_batch(samples, outcome, step)
        return self._results(self._run(plan), "overall")
