"""Real TRL GRPO steps on several processes, with the thinking reward recorded per process.

Run by ``tests/integration/test_trl_two_processes.py`` as::

    torchrun --nproc_per_node 2 tests/support/trl_two_processes.py --tokenizer-dir DIR --out DIR

Each process trains the recipe's tiny Qwen2 policy (``recipes/grpo_trl.py``) with TRL's
``GRPOTrainer`` on the CPU (gloo), per-device batch 4 and ``num_generations=8``: every
group of 8 completions is split 4 + 4 over the two processes. The rewards are the
recipe's accuracy and ``judge.as_reward_func(accuracy, num_generations=8, ...)``, the
documented call; a thin wrapper around the latter writes, per process and per call, the
prompts, completions, letters and rewards that TRL got to ``rank<N>.jsonl``.

The judge answers from :func:`scripted_score`, a deterministic function of the question
and the completion (see the test's docstring for why), built so that a group's wrong
completions out-think its right ones: its trust weight gamma is below 1 whenever it has
both, and each half of a group alone gives another gamma.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recipe_files import load_recipe
from rl_calls import question_of, response_of

from judge import ThinkingRewardJudge
from judge.testing import FakeBackend

NUM_GENERATIONS = 8
PER_DEVICE_BATCH = 4
NAME = "thinking"


def scripted_score(request: Any) -> float:
    """The judge's score of a request: low for a right completion, high for a wrong one.

    Right (the completion contains the asked letter): 0.1 to 0.4; wrong: 0.6 to 0.9; the
    step within each band is a hash of the completion's text.
    """
    letter = re.search(r"letter '(.)'", question_of(request))
    response = response_of(request)
    jitter = hashlib.sha256(response.encode()).digest()[0] % 4 / 10
    right = letter is not None and letter.group(1) in response
    return round((0.1 if right else 0.6) + jitter, 1)


def make_reward(**options: Any) -> Any:
    """The thinking reward both runs use: the documented call on the scripted judge."""
    recipe = load_recipe("grpo_trl")
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=scripted_score))
    settings: dict[str, Any] = {
        "num_generations": NUM_GENERATIONS,
        "include_outcome": False,  # accuracy is its own reward function, as in the recipe
        "anneal_steps": 500,
        "skip_below": None,  # wrong completions are judged too: gamma is in play
        "name": NAME,
    }
    return judge.as_reward_func(recipe.accuracy, **{**settings, **options})


class Recorded:
    """The reward as TRL sees it (same name, async), writing each call to a file."""

    def __init__(self, reward: Any, path: Path, rank: int) -> None:
        self.reward = reward
        self.path = path
        self.rank = rank
        self.__name__ = reward.__name__

    async def __call__(self, **kwargs: Any) -> list[float | None]:
        rewards: list[float | None] = await self.reward(**kwargs)
        record = {
            "rank": self.rank,
            "step": kwargs["trainer_state"].global_step,
            "prompts": kwargs["prompts"],
            "completions": kwargs["completions"],
            "letter": kwargs["letter"],
            "rewards": rewards,
        }
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        return rewards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer-dir", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)

    import torch.distributed as dist
    from trl import GRPOConfig, GRPOTrainer

    recipe = load_recipe("grpo_trl")
    model, tokenizer = recipe.build_policy(args.tokenizer_dir, seed=0)
    thinking = make_reward()
    config = GRPOConfig(
        output_dir=str(args.out / "grpo"),
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=PER_DEVICE_BATCH,
        num_generations=NUM_GENERATIONS,
        max_completion_length=12,
        max_steps=args.steps,
        learning_rate=1e-3,
        logging_steps=1,
        log_completions=True,
        report_to="none",
        save_strategy="no",
        beta=0.0,
        seed=0,
        dataloader_num_workers=0,
        ddp_backend="gloo",
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[
            recipe.accuracy,
            Recorded(thinking, args.out / f"rank{_rank()}.jsonl", _rank()),
        ],
        args=config,
        train_dataset=recipe.letter_dataset(),
        callbacks=[thinking.callback()],
    )
    trainer.train()
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _rank() -> int:
    """This process's rank, as torchrun tells it (before TRL sets up the process group)."""
    return int(os.environ.get("RANK", "0"))


def half_groups(records: list[dict[str, Any]], make: Callable[..., Any]) -> list[Any]:
    """What one process alone computes on its half of the groups (the bug being fixed)."""
    from rl_calls import call_as_trl

    return [
        call_as_trl(
            make(num_generations=None),
            r["prompts"],
            r["completions"],
            step=r["step"],
            letter=r["letter"],
        )
        for r in records
    ]


if __name__ == "__main__":
    sys.exit(main())
