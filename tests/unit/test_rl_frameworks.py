"""verl's and EasyR1's reward functions: per sample and batched, Trust-GRPO, failures, step."""

from __future__ import annotations

import asyncio
import inspect
import math

import pytest
from easyr1_convention import AutoRewardManager, dataset_example
from rl_calls import CountingFake, by_response, png, question_of

from backends import FakeBackend
from backends.errors import BackendError
from judge import EasyR1Reward, InputError, JudgmentError, ThinkingRewardJudge, VerlReward
from judge.rl.easyr1 import ENVELOPE_KEY, easyr1_row, pack_ground_truth, unpack_ground_truth

# -- verl ---------------------------------------------------------------------------------------


def verl_outcome(data_source, solution_str, ground_truth, extra_info=None):
    return {"score": 1.0 if ground_truth in solution_str else 0.0}


def test_verl_per_sample_sync_and_async():
    backend = CountingFake(scores=[0.6])
    judge = ThinkingRewardJudge(backend=backend)
    reward = VerlReward(judge, outcome_reward=verl_outcome, trust=False, skip_saturated=False)
    info = {"question": "What is shown?", "images": [{"bytes": png(), "path": None}]}
    result = reward.compute_score("geo3k", "<think>x</think>4", "4", info)
    assert result["score"] == pytest.approx(1.0 + 0.3 * 0.6)
    assert result["thinking"] == pytest.approx(0.6)
    assert result["outcome"] == 1.0
    assert [p["type"] for p in backend.requests[0].messages[1]["content"]] == ["text", "image_url"]
    assert inspect.iscoroutinefunction(reward.acompute_score)  # what verl's reward loop checks
    result = asyncio.run(reward.acompute_score("geo3k", "<think>x</think>5", "4", info))
    assert result["score"] == 0.0  # wrong answer, R_o < 0.2: not judged
    assert result["judged"] == 0.0
    assert len(backend.requests) == 1


def test_verl_per_sample_with_default_settings_is_one_sample_no_group():
    # verl 0.9.1's reward loop calls compute_score once per sample: default settings
    # (trust=True, skip_saturated=True) must score it, without the group rules.
    backend = CountingFake(scores=[0.5])
    reward = VerlReward(ThinkingRewardJudge(backend=backend), outcome_reward=verl_outcome)
    result = reward.compute_score("s", "4", "4", {"question": "q"})
    # R_o = 1 >= 0.9 would be a saturated group of one: judged anyway, gamma = 1
    assert result["score"] == pytest.approx(1.0 + 0.3 * 0.5)
    assert result["gamma"] == 1.0
    assert result["judged"] == 1.0
    assert backend.batches == [1]
    assert reward.trust is not None  # batched calls keep the group rules
    assert reward.trust.trust


def test_verl_needs_the_question():
    reward = VerlReward(ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])))
    with pytest.raises(InputError, match="question"):
        reward.compute_score("s", "4", "4", {"answer": "4"})


def test_verl_thinking_alone_and_failures():
    reward = VerlReward(ThinkingRewardJudge(backend=FakeBackend(["0.8", "junk"])))
    assert reward.compute_score("s", "r", "g", {"question": "q"})["score"] == pytest.approx(0.8)
    failed = reward.compute_score("s", "r", "g", {"question": "q"})  # never stops verl's step
    assert failed == {
        "score": 0.0,
        "thinking": 0.0,
        "thinking_failed": 1.0,
        "judged": 1.0,
        "gamma": 1.0,
    }
    strict = VerlReward(ThinkingRewardJudge(backend=FakeBackend(["junk"])), failure_score=None)
    with pytest.raises(JudgmentError, match="no outcome"):
        strict.compute_score("s", "r", "g", {"question": "q"})


def test_verl_per_sample_failure_keeps_the_outcome_and_no_nan():
    backend = CountingFake([BackendError("down")])
    reward = VerlReward(ThinkingRewardJudge(backend=backend), outcome_reward=verl_outcome)
    result = asyncio.run(reward.acompute_score("s", "4", "4", {"question": "q"}))
    assert result["score"] == 1.0
    assert result["thinking_failed"] == 1.0
    assert not any(math.isnan(value) for value in result.values())


def test_verl_batch_trust_grpo():
    r_t = {"<think>a</think>1": 0.2, "<think>b</think>1": 0.9, "<think>c</think>2": 0.7}
    backend = CountingFake(scores=by_response(r_t))
    reward = VerlReward(
        ThinkingRewardJudge(backend=backend), outcome_reward=verl_outcome, anneal_steps=100
    )
    solutions = ["<think>a</think>1", "<think>b</think>1", "<think>c</think>2", "<think>d</think>3"]
    infos = [{"question": "1?", "global_step": 20}] * 4
    results = reward.compute_score_batch(["s"] * 4, solutions, ["1"] * 4, infos)
    assert backend.batches == [2]  # c2 and d3 are wrong (R_o = 0 < 0.2): not judged
    scale = 0.3 * math.exp(-20 / 100)
    assert [r["score"] for r in results] == pytest.approx(
        [1.0 + scale * 0.2, 1.0 + scale * 0.9, 0.0, 0.0]
    )
    assert [r["judged"] for r in results] == [1.0, 1.0, 0.0, 0.0]
    assert reward.calls == 1


def test_verl_batch_failure_keeps_the_outcome_flagged():
    backend = CountingFake([BackendError("down"), "0.5"])
    reward = VerlReward(ThinkingRewardJudge(backend=backend), outcome_reward=verl_outcome)
    results = reward.compute_score_batch(
        ["s"] * 3, ["4", "4 too", "5"], ["4"] * 3, [{"question": "q"}] * 3
    )
    assert results[0]["score"] == 1.0
    assert results[0]["thinking_failed"] == 1.0
    assert results[0]["thinking"] == 0.0  # never NaN: verl averages it into its metrics
    assert results[1]["score"] == pytest.approx(1.15)
    assert results[1]["thinking_failed"] == 0.0
    assert results[2]["score"] == 0.0
    assert results[2]["judged"] == 0.0


# -- EasyR1 -------------------------------------------------------------------------------------


def easyr1_accuracy(reward_inputs):
    return [
        {"overall": 1.0 if item["ground_truth"] in item["response"] else 0.3, "accuracy": 1.0}
        for item in reward_inputs
    ]


def test_easyr1_batch():
    backend = CountingFake(scores=[0.5, 0.9, 0.1])
    reward = EasyR1Reward(ThinkingRewardJudge(backend=backend), outcome_reward=easyr1_accuracy)
    inputs = [
        {
            "response": r,
            "response_length": 3,
            "ground_truth": "7",
            "question": "3+4?",
            "image": png(),
        }
        for r in ("7", "seven", "7!")
    ]
    results = reward(inputs)
    assert backend.batches == [3]
    gamma = math.exp((0.5 + 0.1) / 2 - 0.9)  # the wrong answer thinks best: not trusted
    assert [r["overall"] for r in results] == pytest.approx(
        [1.0 + gamma * 0.3 * 0.5, 0.3 + gamma * 0.3 * 0.9, 1.0 + gamma * 0.3 * 0.1]
    )
    assert results[0]["gamma"] == pytest.approx(gamma)
    assert set(results[0]) >= {"overall", "thinking", "gamma", "outcome", "judged"}
    assert reward.calls == 1
    with pytest.raises(InputError, match="question"):
        reward([{"response": "7", "response_length": 1, "ground_truth": "7"}])


def test_easyr1_step_from_inputs_or_call_count():
    backend = CountingFake(scores=[0.5])
    reward = EasyR1Reward(
        ThinkingRewardJudge(backend=backend),
        outcome_reward=lambda inputs: [1.0, 0.5],
        anneal_steps=1,
    )
    item = {"response": "r", "ground_truth": "g", "question": "q"}
    first = reward([item, item])  # step 0 (no step given: calls so far)
    second = reward([item, item])  # step 1
    assert first[0]["overall"] == pytest.approx(1.0 + 0.3 * 0.5)
    assert second[0]["overall"] == pytest.approx(1.0 + 0.3 * math.exp(-1) * 0.5)
    third = reward([{**item, "global_step": 0}, item])
    assert third[0]["overall"] == pytest.approx(1.15)


# -- EasyR1 as it is: the question and images packed into the answer column ---------------------


def test_easyr1_through_its_reward_manager_with_packed_answers(tmp_path):
    (tmp_path / "geo.png").write_bytes(png())
    seen = []

    def accuracy(reward_inputs, bonus=0.0):
        seen.extend(item["ground_truth"] for item in reward_inputs)
        return [
            {"overall": float(i["ground_truth"] in i["response"]) + bonus} for i in reward_inputs
        ]

    backend = CountingFake(scores=[0.5, 0.9])
    judge = ThinkingRewardJudge(backend=backend, image_root=tmp_path)
    reward = EasyR1Reward(
        judge, outcome_reward=accuracy, trust=False, skip_saturated=False, skip_below=None
    )
    row = {"problem": "What is the angle?", "answer": "30", "images": ["geo.png"]}
    prepared = easyr1_row(row, prompt_key="problem", image_dir=str(tmp_path))
    assert prepared["problem"] == row["problem"]
    assert prepared["images"] == ["geo.png"]
    examples = [dataset_example(prepared)] * 2
    manager = AutoRewardManager(reward)
    tensor, metrics = manager.compute_reward(["30 degrees", "45"], [3, 2], examples)
    assert seen == ["30", "30"]  # the outcome reward gets the original answer
    assert backend.batches == [2]
    assert all(question_of(r).endswith("What is the angle?") for r in backend.requests)
    assert [p["type"] for p in backend.requests[0].messages[1]["content"]] == ["text", "image_url"]
    assert tensor[0][2] == pytest.approx(1.0 + 0.3 * 0.5)
    assert tensor[1][1] == pytest.approx(0.0 + 0.3 * 0.9)
    assert metrics["thinking"] == pytest.approx([0.5, 0.9])
    kwargs_manager = AutoRewardManager(reward, reward_function_kwargs={"bonus": 1.0})
    tensor, _ = kwargs_manager.compute_reward(["45"], [2], examples[:1])
    assert tensor[0][1] == pytest.approx(1.0 + 0.3 * 0.5)


def test_easyr1_failed_judgment_keeps_the_outcome_and_its_metric_means_finite(tmp_path):
    """EasyR1 averages every key of every score into its metrics: no NaN may reach them."""
    backend = FakeBackend(script=["0.5", "not a score"])
    reward = EasyR1Reward(
        ThinkingRewardJudge(backend=backend),
        outcome_reward=lambda inputs: [1.0 for _ in inputs],
        trust=False,
        skip_saturated=False,
        skip_below=None,
    )
    prepared = easyr1_row({"problem": "3+4?", "answer": "7"}, prompt_key="problem")
    examples = [dataset_example(prepared)] * 2
    tensor, metrics = AutoRewardManager(reward).compute_reward(["7", "7"], [1, 1], examples)
    assert tensor[0][0] == pytest.approx(1.0 + 0.3 * 0.5)
    assert tensor[1][0] == pytest.approx(1.0)  # the failed one keeps its outcome reward
    assert metrics["thinking_failed"] == [0.0, 1.0]
    for key, values in metrics.items():
        assert all(math.isfinite(value) for value in values), key


def test_easyr1_plain_answers_fail_with_the_way_out():
    reward = EasyR1Reward(ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])))
    example = dataset_example({"prompt": "3+4?", "answer": "7", "images": ["a.png"]})
    with pytest.raises(InputError, match="easyr1_row"):
        AutoRewardManager(reward).compute_reward(["7"], [1], [example])


def test_pack_and_unpack_ground_truth():
    packed = pack_ground_truth({"value": 7}, "3+4?", ["a.png", {"path": "b.png"}], image_dir="/d")
    answer, fields = unpack_ground_truth(packed)
    assert answer == {"value": 7}
    assert fields == {"question": "3+4?", "images": ["/d/a.png", "/d/b.png"]}
    url = pack_ground_truth("7", "q", ["https://x.org/a.png"], image_dir="/d")
    assert unpack_ground_truth(url)[1]["images"] == ["https://x.org/a.png"]
    for plain in ("7", '{"answer": 7}', "not json " + ENVELOPE_KEY, 7, None):
        assert unpack_ground_truth(plain) == (plain, None)
    with pytest.raises(ValueError, match="path or a URL"):
        pack_ground_truth("7", "q", [png()])
    with pytest.raises(ValueError, match="question"):
        easyr1_row({"answer": "7"})
