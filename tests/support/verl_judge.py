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


def outcome(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl's ``compute_score``: 1 for the right answer, 0.3 for a wrong one, 0 for none."""
    if "<answer>" not in solution_str:
        return 0.0
    answer = solution_str.split("<answer>", 1)[1].split("</answer>", 1)[0].strip()
    return 1.0 if answer == str(ground_truth) else 0.3
