"""What verl's reward workers load in the verl integration test: the judges and the outcome reward.

verl loads these by path (``reward.thinking_judge.judge_path`` / ``judge_name``, and
``reward.custom_reward_function.path`` / ``name``) inside its ``RewardLoopWorker`` Ray
actors, in the verl virtual environment. The URLs come from the environment that
``verl_reward_loop.py`` gives the Ray workers.
"""

from __future__ import annotations

import os

from backends import VLLMServerBackend
from judge import ThinkingRewardJudge


def live_judge():
    """The judge on the session's real tiny vLLM server."""
    backend = VLLMServerBackend(
        os.environ["THINKING_JUDGE_BASE_URL"],
        os.environ.get("THINKING_JUDGE_MODEL", "thinking-reward-model"),
        max_retries=1,
        timeout=120,
    )
    return ThinkingRewardJudge(backend=backend, constrained=True)


def dead_judge():
    """A judge whose server is gone: every judgment fails (connection refused)."""
    backend = VLLMServerBackend(
        os.environ["THINKING_JUDGE_DEAD_URL"], "thinking-reward-model", max_retries=0, timeout=5
    )
    return ThinkingRewardJudge(backend=backend)


DEAD_MARK = "(judged by a dead server)"
"""A question with this mark goes to :func:`dead_judge`'s server in :class:`RoutedJudge`."""


class RoutedJudge:
    """The live judge, except for questions with :data:`DEAD_MARK`: a failing group beside
    working ones in one batch, on the same reward workers."""

    def __init__(self):
        self.live = live_judge()
        self.dead = dead_judge()

    def pick(self, item):
        return self.dead if DEAD_MARK in item["question"] else self.live

    async def ainvoke(self, item, config=None, **kwargs):
        return await self.pick(item).ainvoke(item, config, **kwargs)

    async def abatch(self, items, config=None, *, return_exceptions=False, **kwargs):
        results = []
        for item in items:
            found = await self.pick(item).abatch(
                [item], config, return_exceptions=return_exceptions, **kwargs
            )
            results.extend(found)
        return results


def routed_judge():
    """The judge the test's reward workers load."""
    return RoutedJudge()


def outcome(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's ``compute_score``: 1 for the right answer, 0.3 for a wrong one, 0 for none."""
    if "<answer>" not in solution_str:
        return 0.0
    answer = solution_str.split("<answer>", 1)[1].split("</answer>", 1)[0].strip()
    return 1.0 if answer == str(ground_truth) else 0.3
