"""OpenRLHF's local reward mode: a ``reward_func`` file that scores thinking with the judge.

OpenRLHF loads ``reward_func(queries, prompts, labels)`` from a Python file given as
``--remote_rm_url`` and calls it per sample through ``asyncio.to_thread``; ``queries``
are prompt plus response decoded WITH special tokens (OpenRLHF 0.11.2,
``openrlhf/utils/agent.py``: ``SingleTurnAgentExecutor._fetch_rewards_via_func``, at
OpenRLHF/OpenRLHF commit 3c3be6234e0cb353e76bb8019947db9dfe99fca7; it reads ``scores``,
``rewards`` and ``extra_logs`` from the answer). This file splits each query into
question and response (:func:`judge.rl.openrlhf.split_query`), judges them in one batch
call against a vLLM server of the reward model, and answers in OpenRLHF's shape:
``{"rewards": tensor, "scores": tensor, "extra_logs": {"judge_failed": tensor}}``.

The server is ``$THINKING_JUDGE_BASE_URL`` (e.g. ``http://127.0.0.1:8000/v1``, from
``thinking-judge serve``), the served model name ``$THINKING_JUDGE_MODEL``
(``thinking-reward-model``); ``THINKING_JUDGE_CONSTRAINED=1`` constrains the answers to
the score grid (vLLM structured outputs). A failed judgment (after the backend's own retries) raises
:class:`judge.rl.openrlhf.JudgmentsFailed`, which stops OpenRLHF's step instead of
training on an invented reward (OpenRLHF logs the error, the sample has no reward, and
the step fails when its experiences are made); set ``$THINKING_JUDGE_FAILURE_REWARD`` to
a number to give failed samples that reward instead (flagged in
``extra_logs["judge_failed"]``).

Use it in OpenRLHF::

    python -m openrlhf.cli.train_ppo_ray ... --remote_rm_url recipes/openrlhf_reward_func.py

or judge one example query to try it::

    THINKING_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 python recipes/openrlhf_reward_func.py
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from backends import VLLMServerBackend
from judge import ThinkingRewardJudge
from judge.errors import InputError
from judge.rl.openrlhf import judge_inputs, merge_results, reward_payload
from judge.types import JudgeRunnable

JUDGE: JudgeRunnable | None = None
"""The judge; built from the environment on first use (tests set it directly)."""

_LOCK = threading.Lock()


def get_judge() -> JudgeRunnable:
    """The judge of this process, built once from ``$THINKING_JUDGE_BASE_URL``."""
    global JUDGE
    with _LOCK:
        if JUDGE is None:
            base_url = os.environ.get("THINKING_JUDGE_BASE_URL")
            if not base_url:
                raise RuntimeError("set THINKING_JUDGE_BASE_URL to the judge server's /v1 URL")
            model = os.environ.get("THINKING_JUDGE_MODEL", "thinking-reward-model")
            constrained = os.environ.get("THINKING_JUDGE_CONSTRAINED", "") not in ("", "0")
            JUDGE = ThinkingRewardJudge(
                backend=VLLMServerBackend(base_url, model), constrained=constrained
            )
        return JUDGE


def _failure_reward() -> float | None:
    text = os.environ.get("THINKING_JUDGE_FAILURE_REWARD")
    return float(text) if text else None


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    """OpenRLHF's reward function: the thinking score of each query's response.

    Args:
        queries: Prompt plus response, decoded with special tokens.
        prompts: The prompts, as in OpenRLHF's dataset (chat template applied).
        labels: The labels (unused: the thinking score needs no reference answer).
        **kwargs: Ignored (OpenRLHF's own reward functions accept more keywords).

    Raises:
        JudgmentsFailed: A judgment failed and no failure reward is set.
    """
    import torch

    inputs = judge_inputs(list(queries), list(prompts))
    good = [item for item in inputs if not isinstance(item, InputError)]
    judged = get_judge().batch(good, return_exceptions=True) if good else []
    payload = reward_payload(merge_results(inputs, judged), failure_reward=_failure_reward())
    return {
        "rewards": torch.tensor(payload["rewards"]),
        "scores": torch.tensor(payload["scores"]),
        "extra_logs": {
            name: torch.tensor(values) for name, values in payload["extra_logs"].items()
        },
    }


EXAMPLE_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWhat is 12 * 4?<|im_end|>\n<|im_start|>assistant\n"
)
EXAMPLE_QUERY = (
    EXAMPLE_PROMPT
    + "<think>12 * 4 = 48.</think><answer>48</answer><|im_end|><|endoftext|><|endoftext|>"
)


def main() -> int:
    """Judge the example query and print OpenRLHF's answer."""
    try:
        result = reward_func([EXAMPLE_QUERY], [EXAMPLE_PROMPT], ["48"])
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    print({key: value for key, value in result.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
