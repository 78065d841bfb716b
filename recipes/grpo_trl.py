"""GRPO with TRL: the thinking judge as a reward beside an accuracy reward, Trust-GRPO on.

A complete, small GRPO run that needs no GPU and downloads nothing:

* the **policy** is a tiny random-weight Qwen2 text model built here, on the tokenizer of
  the tiny test model (:func:`judge.testing.build_tiny_model`);
* the **judge** is the thinking reward model behind a vLLM server: by default the tiny
  random-weight Qwen2.5-VL, served on this machine by ``VLLMServerBackend.launch``;
  ``--base-url`` points at a server of the real model instead;
* the **task** is one a random policy sometimes gets right, so that the outcome reward
  varies inside a group: "write something containing the letter X"; the accuracy reward
  is 1.0 when the completion contains the letter;
* the **rewards** are that accuracy reward and the judge's Trust-GRPO thinking term
  (``include_outcome=False``: TRL adds the two, weighted, per completion), with the
  SophiaVL-R1 annealing and skip rules. TRL logs ``rewards/accuracy``,
  ``rewards/thinking`` and the judge's ``thinking/gamma``, ``thinking/calls_saved``...

Run it::

    python recipes/grpo_trl.py --steps 3
    python recipes/grpo_trl.py --base-url http://127.0.0.1:8000/v1 --model thinking-reward-model

It needs the ``rl`` and ``cpu`` extras (``pip install -e ".[cpu,rl]"``). With the
tiny judge the scores are noise (the model has random weights, so ``constrained=True``
keeps its answers on the grid); the mechanics are those of a real run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends import VLLMServerBackend
from judge import ThinkingRewardJudge
from judge.testing import build_tiny_model

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import GRPOTrainer

LETTERS = "bfgmwxyk"
"""Letters a random policy's 16 tokens contain some of the time (about 20-60%)."""


def letter_dataset(repeats: int = 4) -> Dataset:
    """The task: conversational prompts asking for a given letter, and that letter."""
    from datasets import Dataset

    rows = [
        {
            "prompt": [
                {"role": "user", "content": f"Write something that contains the letter {c!r}."}
            ],
            "letter": c,
        }
        for _ in range(repeats)
        for c in LETTERS
    ]
    return Dataset.from_list(rows)


def accuracy(
    prompts: Sequence[Any], completions: Sequence[Any], letter: Sequence[str], **kwargs: Any
) -> list[float]:
    """The outcome reward: 1.0 when the completion contains the asked letter."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [1.0 if want in text else 0.0 for text, want in zip(texts, letter, strict=True)]


def build_policy(
    tokenizer_dir: str | Path, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A tiny random-weight Qwen2 causal LM and its tokenizer.

    The tokenizer is the tiny test model's (built locally: Qwen2.5-VL's tokenizer and
    chat template), so nothing is downloaded; the embedding covers its whole vocabulary
    (about 10M parameters, nearly all of them the tied embedding).
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(
        vocab_size=len(tokenizer),  # every token id the tokenizer can give
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config), tokenizer


@dataclass
class RunResult:
    """What a run did: the trainer, its log, and whether the weights moved."""

    trainer: GRPOTrainer
    log_history: list[dict[str, Any]]
    weights_changed: bool
    seconds: float


def train(
    judge: ThinkingRewardJudge,
    *,
    tokenizer_dir: str | Path,
    output_dir: str | Path,
    steps: int = 3,
    num_generations: int = 4,
    prompts_per_step: int = 2,
    anneal_steps: float = 500,
    seed: int = 0,
) -> RunResult:
    """Train the tiny policy for ``steps`` GRPO steps on the CPU.

    Args:
        judge: The thinking judge. Its HTTP sessions on TRL's reward loop are closed
            when training ends; the backend stays usable (the caller closes it).
        tokenizer_dir: A model folder whose tokenizer the policy uses.
        output_dir: TRL's output folder (nothing is saved there but logs).
        steps: Optimizer steps.
        num_generations: Completions per prompt (a GRPO group).
        prompts_per_step: Prompts (groups) per step.
        anneal_steps: ``T`` of the thinking term's annealing ``exp(-step / T)``.
        seed: Seed of the policy's weights and of the run.

    Returns:
        The trainer, its log history, whether the weights changed, and the time taken.
    """
    import torch
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = build_policy(tokenizer_dir, seed)
    before = [p.detach().clone() for p in model.parameters()]
    thinking = judge.as_reward_func(
        accuracy,
        alpha=0.3,
        anneal_steps=anneal_steps,
        trust=True,
        include_outcome=False,  # the accuracy reward is its own reward function
        num_generations=num_generations,
        name="thinking",
    )
    args = GRPOConfig(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,  # TRL's defaults are for GPUs
        fp16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=num_generations * prompts_per_step,
        num_generations=num_generations,
        max_completion_length=16,
        max_steps=steps,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        beta=0.0,
        seed=seed,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[accuracy, thinking],
        args=args,
        train_dataset=letter_dataset(),
        # TRL awaits the reward on a loop of its own that it never closes: close the
        # judge's HTTP sessions there when training ends (no "Unclosed connector" at exit)
        callbacks=[thinking.callback()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    changed = any(
        not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True)
    )
    return RunResult(trainer, list(trainer.state.log_history), changed, seconds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-url", help="a running judge server's /v1 root (default: launch one)"
    )
    parser.add_argument("--model", default="thinking-reward-model", help="its served model name")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--anneal-steps", type=float, default=500)
    parser.add_argument("--expected-score", action="store_true", help="continuous R_t")
    parser.add_argument("--work-dir", type=Path, help="where the tiny models and logs go")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the recipe; print the per-step log and a summary."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="grpo-trl-"))
    tiny = build_tiny_model(work / "tiny-qwen2.5-vl")
    if args.base_url:
        backend = VLLMServerBackend(base_url=args.base_url, model=args.model)
    else:
        print("launching the judge: vLLM on the tiny model (about a minute on a CPU)...")
        backend = VLLMServerBackend.launch(
            str(tiny),
            served_model_name=args.model,
            log_file=work / "vllm-server.log",
            max_model_len=4096,
            dtype="bfloat16",
            enforce_eager=True,
            skip_mm_profiling=True,
            limit_mm_per_prompt={"image": 1, "video": 0},
        )
    with backend:
        judge = ThinkingRewardJudge(
            backend=backend, constrained=True, expected_score=args.expected_score
        )
        result = train(
            judge,
            tokenizer_dir=tiny,
            output_dir=work / "grpo",
            steps=args.steps,
            num_generations=args.num_generations,
            prompts_per_step=args.prompts_per_step,
            anneal_steps=args.anneal_steps,
        )
    for entry in result.log_history:
        if "rewards/thinking/mean" in entry:
            shown = {k: v for k, v in entry.items() if k.startswith(("rewards/", "thinking/"))}
            print(f"step {entry.get('step')}: {shown}")
    print(
        f"{result.trainer.state.global_step} GRPO steps in {result.seconds:.1f} s; "
        f"policy weights changed: {result.weights_changed}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
