"""RL rewards against the real vLLM server: TRL's call, calls saved, prefix caching, GRPO.

The server is the session's tiny random-weight Qwen2.5-VL (see ``conftest.py``); with
``constrained=True`` its answers are on the score grid. What the server did is read from
its Prometheus ``/metrics``: finished requests (for the calls Trust-GRPO saves) and
prefix-cache queries and hits, in tokens (for the effect of sending a group's
completions together). Numbers are printed (``pytest -s``), never asserted on timing.
"""

from __future__ import annotations

import asyncio
import random
import re
import urllib.request

import pytest
from PIL import Image
from recipe_files import load_recipe

from backends import FakeBackend
from backends.vllm_server import VLLMServerBackend
from judge import GRPOReward, ThinkingRewardJudge


def metrics(backend: VLLMServerBackend) -> dict[str, float]:
    """The server's counters, summed over their labels."""
    root = str(backend.base_urls[0]).rstrip("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)$", line)
        if match:
            totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def trainer_state(step: int = 0):
    from transformers import TrainerState

    state = TrainerState()
    state.global_step = step
    return state


def call_as_trl(reward, prompts, completions, *, step=0, **columns):
    """Await the reward exactly as TRL's GRPOTrainer does (keywords, state, loggers)."""
    logged: dict[str, list[float]] = {}
    result = asyncio.run(
        reward(
            prompts=prompts,
            completions=completions,
            completion_ids=[[0]] * len(completions),
            trainer_state=trainer_state(step),
            log_extra=lambda column, values: None,
            log_metric=lambda name, value: logged.setdefault(name, []).append(value),
            **columns,
        )
    )
    return result, logged


def rendered_hashes(inputs):
    """The prompt hashes the judge computes for these inputs, in order (no model)."""
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5]))
    return [score.prompt_sha256 for score in judge.batch(inputs)]


@pytest.fixture
def judge(vllm_server: VLLMServerBackend) -> ThinkingRewardJudge:
    return ThinkingRewardJudge(backend=vllm_server, constrained=True)


def test_trl_call_both_formats_with_images(judge):
    """TRL's keyword call, standard and conversational, images from both columns."""
    reward = judge.as_reward_func(name="thinking", num_generations=3)
    assert isinstance(reward, GRPOReward)
    colours = ["red", "green"]
    pictures = [Image.new("RGB", (32, 32), c) for c in colours for _ in range(3)]
    completions = [
        f"<think>It looks {c}, try {i}.</think><answer>{c}</answer>"
        for c in colours
        for i in range(3)
    ]

    # Standard format, one image per row in the "image" column.
    prompts = [f"<image> What colour is this? ({c})" for c in colours for _ in range(3)]
    rewards, logged = call_as_trl(reward, prompts, completions, image=pictures)
    assert len(rewards) == 6
    assert all(r is None or (isinstance(r, float) and 0.0 <= r <= 1.0) for r in rewards)
    assert sum(r is not None for r in rewards) >= 5  # the constraint keeps answers on the grid
    assert logged["thinking/judge_calls"] == [6.0]
    inputs = [
        {"question": p, "response": c, "image": i}
        for p, c, i in zip(prompts, completions, pictures, strict=True)
    ]
    assert [s.prompt_sha256 for _, s in sorted(reward.last_step.scores.items())] == rendered_hashes(
        inputs
    )

    # Conversational format, "images" column (a list per row), image placeholders.
    conversation = [
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": f"Colour? ({c})"}],
            }
        ]
        for c in colours
        for _ in range(3)
    ]
    messages = [[{"role": "assistant", "content": c}] for c in completions]
    rewards, _ = call_as_trl(reward, conversation, messages, images=[[p] for p in pictures], step=1)
    assert len(rewards) == 6
    assert all(r is None or isinstance(r, float) for r in rewards)
    assert reward.last_step.metrics["judge_calls"] == 6.0


def test_trust_grpo_calls_saved_counted_at_the_server(judge, vllm_server):
    """The skip rules' savings, seen as requests the server never got."""
    outcome = {
        # Group A: every answer right -> saturated, 4 calls saved.
        **{f"a{i}": 1.0 for i in range(4)},
        # Group B: partial credit; b3 scores < 0.2 -> 1 call saved.
        "b0": 1.0,
        "b1": 0.6,
        "b2": 0.3,
        "b3": 0.0,
    }

    def accuracy(prompts, completions, **kwargs):
        return [outcome[c] for c in completions]

    reward = judge.as_reward_func(accuracy, anneal_steps=100, num_generations=4, name="thinking")
    before = metrics(vllm_server)
    rewards, logged = call_as_trl(
        reward, ["Question A"] * 4 + ["Question B"] * 4, list(outcome), step=3
    )
    after = metrics(vllm_server)
    served = delta(before, after, "vllm:request_success_total")
    print(
        f"\nTrust-GRPO: 8 completions, {served:.0f} requests served, {8 - served:.0f} calls saved"
    )
    assert served == 3
    assert logged["thinking/calls_saved"] == [5.0]
    assert rewards[:4] == [1.0] * 4  # saturated group: the outcome alone
    assert rewards[7] == 0.0
    assert all(r is None or r >= outcome[c] for r, c in zip(rewards, outcome, strict=True))


def test_prefix_cache_effect_of_grouped_sending(judge, vllm_server):
    """Prefix-cache hits for one step's judge requests, sent three ways; printed."""
    rng = random.Random(0)
    groups, size = 4, 8
    words = ["alpha", "beta", "gamma", "delta", "omega"]

    def step_inputs(tag: str):
        # A fresh, long-ish question per group, so that no earlier request cached it.
        questions = [f"{tag}{g} " + " ".join(rng.choices(words, k=60)) for g in range(groups)]
        prompts = [q for q in questions for _ in range(size)]
        completions = [
            f"<think>step {i} of the reasoning</think><answer>{i}</answer>"
            for i in range(groups * size)
        ]
        return prompts, completions

    def measured(run):
        before = metrics(vllm_server)
        run()
        after = metrics(vllm_server)
        queries = delta(before, after, "vllm:prefix_cache_queries_total")
        hits = delta(before, after, "vllm:prefix_cache_hits_total")
        return queries, hits

    # The rubric alone: a fresh question's first request finds only the rubric cached.
    judge.invoke({"question": "warm-up", "response": "warm-up"})
    _, rubric = measured(lambda: judge.invoke({"question": "Fresh question?", "response": "r"}))

    runs = {}
    prompts, completions = step_inputs("Shuffled")
    pairs = list(zip(prompts, completions, strict=True))
    rng.shuffle(pairs)
    shuffled = [{"question": q, "response": r} for q, r in pairs]
    runs["shuffled, one batch"] = measured(lambda: judge.batch(shuffled))

    prompts, completions = step_inputs("Grouped")
    grouped = judge.as_reward_func(num_generations=size)
    runs["reward func (grouped)"] = measured(lambda: call_as_trl(grouped, prompts, completions))

    prompts, completions = step_inputs("Limited")
    limited = judge.as_reward_func(num_generations=size, max_concurrency=4)
    runs["reward func, 4 in flight"] = measured(lambda: call_as_trl(limited, prompts, completions))

    n = groups * size
    print(
        f"\nprefix cache, {groups} groups x {size} completions; rubric alone: {rubric:.0f} tokens"
    )
    print(
        f"  {'sent as':26s} {'prompt':>7s} {'hits':>7s} {'computed':>8s} {'hit rate':>8s} {'question hits':>13s}"
    )
    for name, (queries, hits) in runs.items():
        beyond = (hits - n * rubric) / (n - groups)  # question tokens hit per later completion
        print(
            f"  {name:26s} {queries:7.0f} {hits:7.0f} {queries - hits:8.0f} {hits / queries:8.3f} {beyond:13.1f}"
        )
    assert all(queries > 0 and hits > 0 for queries, hits in runs.values())


def test_grpo_recipe_runs_real_trl_steps(vllm_server, tiny_model, tmp_path):
    """recipes/grpo_trl.py: real TRL GRPO steps on the CPU, the judge on the vLLM server."""
    pytest.importorskip("trl")
    from trl.trainer.utils import get_callable_name, is_async_callable

    recipe = load_recipe("grpo_trl")
    judge = ThinkingRewardJudge(backend=vllm_server, constrained=True)
    probe = judge.as_reward_func(name="thinking")
    assert is_async_callable(probe)
    assert get_callable_name(probe) == "thinking"

    before = metrics(vllm_server)
    result = recipe.train(judge, tokenizer_dir=tiny_model, output_dir=tmp_path / "grpo", steps=2)
    served = delta(before, metrics(vllm_server), "vllm:request_success_total")
    logs = [entry for entry in result.log_history if "rewards/thinking/mean" in entry]
    print(f"\nGRPO recipe: 2 steps in {result.seconds:.1f} s, {served:.0f} judge requests served")
    for entry in logs:
        print({k: round(v, 4) for k, v in entry.items() if k.startswith(("rewards/", "thinking/"))})
    assert result.trainer.state.global_step == 2
    assert result.weights_changed
    assert len(logs) == 2
    judged = sum(entry["thinking/judge_calls"] for entry in logs)
    saved = sum(entry["thinking/calls_saved"] for entry in logs)
    assert judged + saved > 0
    assert served == judged  # the judge's requests all reached the server (no expected score)
