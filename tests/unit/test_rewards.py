"""RL rewards: TRL's reward-function call, Trust-GRPO arithmetic, verl and EasyR1 adapters."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from types import SimpleNamespace

import pytest
from PIL import Image

from backends import FakeBackend
from backends.errors import BackendError
from judge import (
    EasyR1Reward,
    GRPOReward,
    InputError,
    JudgmentError,
    SyncGRPOReward,
    ThinkingRewardJudge,
    TrustGRPO,
    VerlReward,
    trust_weight,
)

# -- helpers ----------------------------------------------------------------------------


class CountingFake(FakeBackend):
    """A FakeBackend that also counts its batched calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def generate(self, requests, *, max_concurrency=None):
        self.batches.append(len(requests))
        return super().generate(requests, max_concurrency=max_concurrency)


def response_of(request) -> str:
    """The response a judge request asks about (the text after "Reasoning process: ")."""
    text = request.messages[1]["content"][0]["text"]
    return text.split("\n    Reasoning process: ", 1)[1].rsplit("\n    ", 1)[0]


def question_of(request) -> str:
    text = request.messages[1]["content"][0]["text"]
    return text.split("\n    Question: ", 1)[1].split("\n    Reasoning process: ", 1)[0]


def by_response(table):
    """Fake scores looked up by the response the judge is asked about."""
    return lambda request: table[response_of(request)]


def state(step=0):
    return SimpleNamespace(global_step=step)


class Metrics:
    def __init__(self):
        self.logged: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name, value):
        self.logged.setdefault(name, []).append(value)

    def log_extra(self, column, values):
        self.extra.setdefault(column, []).extend(values)


def call_as_trl(reward, prompts, completions, *, step=0, metrics=None, **columns):
    """Call a reward function exactly as TRL's GRPOTrainer does."""
    metrics = metrics or Metrics()
    kwargs = dict(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(completions),
        trainer_state=state(step),
        log_extra=metrics.log_extra,
        log_metric=metrics.log_metric,
        **columns,
    )
    if inspect.iscoroutinefunction(reward) or inspect.iscoroutinefunction(reward.__call__):
        return asyncio.run(reward(**kwargs))
    return reward(**kwargs)


def image(color="red", size=(8, 8)):
    return Image.new("RGB", size, color)


# -- TRL: the call, formats, order, failures ---------------------------------------------------


def test_standard_format_one_batched_call_in_order():
    table = {f"<think>r{i}</think><answer>{i}</answer>": i / 10 for i in range(8)}
    backend = CountingFake(scores=by_response(table))
    reward = ThinkingRewardJudge(backend=backend).as_reward_func()
    assert isinstance(reward, GRPOReward)
    assert reward.__name__ == "thinking_reward"
    prompts = ["What is 1+1?"] * 4 + ["What is 2+2?"] * 4
    completions = list(table)
    rewards = call_as_trl(reward, prompts, completions, answer=["2"] * 4 + ["4"] * 4)
    assert rewards == pytest.approx([i / 10 for i in range(8)])
    assert all(isinstance(r, float) for r in rewards)
    assert backend.batches == [8]  # one batched judge call for the step
    assert [question_of(r) for r in backend.requests] == prompts
    assert [response_of(r) for r in backend.requests] == completions


def test_async_and_sync_forms_and_names():
    # TRL awaits a reward whose __call__ is a coroutine function and logs it by __name__
    # (the real TRL check runs in the integration tests, where TRL is imported anyway).
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5]))
    reward = judge.as_reward_func(name="thinking")
    assert inspect.iscoroutinefunction(reward.__call__)
    assert reward.__name__ == "thinking"
    sync = judge.as_reward_func(asynchronous=False, name="thinking_sync")
    assert isinstance(sync, SyncGRPOReward)
    assert not inspect.iscoroutinefunction(sync.__call__)
    assert sync.__name__ == "thinking_sync"
    assert "thinking" in repr(reward)


def test_conversational_format_with_image_column():
    backend = CountingFake(scores=[0.7])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func()
    prompt = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]},
    ]
    completions = [[{"role": "assistant", "content": f"<think>t{i}</think>red"}] for i in range(2)]
    pictures = [image("red"), image("red")]
    rewards = call_as_trl(reward, [prompt, prompt], completions, image=pictures)
    assert rewards == pytest.approx([0.7, 0.7])
    first = backend.requests[0]
    # The training code's question: the decoded chat-templated prompt, role words included.
    assert question_of(first) == (
        "<image> system\nAnswer briefly.\nuser\nWhat colour?\nassistant\n"
    )
    assert response_of(first) == "<think>t0</think>red"
    parts = first.messages[1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_images_column_and_images_inside_the_prompt():
    backend = CountingFake(scores=[0.4])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(question="user")
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Same?"}]}]
    completion = [{"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]
    call_as_trl(reward, [prompt], [completion], images=[[image("red"), image("blue")]])
    parts = backend.requests[-1].messages[1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert question_of(backend.requests[-1]) == "<image> Same?"
    # Without an image column, images carried in the prompt's parts are used.
    inline = [{"role": "user", "content": [{"type": "image", "image": image()}, "Colour?"]}]
    call_as_trl(reward, [inline], [completion])
    assert [p["type"] for p in backend.requests[-1].messages[1]["content"]] == [
        "text",
        "image_url",
    ]


def test_failures_are_none_never_zero_and_logged(caplog):
    backend = CountingFake(["0.3", BackendError("server down"), "not a score", "1.0"])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(name="tr")
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="judge.rl.base"):
        rewards = call_as_trl(reward, ["q"] * 4, ["a", "b", "c", "d"], metrics=metrics)
    assert rewards == [pytest.approx(0.3), None, None, pytest.approx(1.0)]
    assert metrics.logged["tr/failures"] == [2.0]
    assert metrics.extra["tr"] == [pytest.approx(0.3), None, None, pytest.approx(1.0)]
    assert "2 of 4 judgments failed" in caplog.text
    assert "server down" in caplog.text


def test_an_empty_completion_is_a_failed_judgment():
    reward = ThinkingRewardJudge(backend=FakeBackend(scores=[0.9])).as_reward_func()
    assert call_as_trl(reward, ["q", "q"], ["", "fine"]) == [None, pytest.approx(0.9)]


def test_raise_on_error_judge_still_gives_none():
    judge = ThinkingRewardJudge(backend=FakeBackend(["junk"]), raise_on_error=True)
    assert call_as_trl(judge.as_reward_func(), ["q"], ["a"]) == [None]


def test_sync_form():
    backend = CountingFake(scores=[0.2, 0.6])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(asynchronous=False)
    assert call_as_trl(reward, ["q", "q"], ["a", "b"]) == pytest.approx([0.2, 0.6])
    assert backend.batches == [2]


def test_expected_score_is_used_when_present():
    dist = {0.6: 0.5, 0.8: 0.5}  # greedy 0.6, expected 0.7
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=lambda r: dist), expected_score=True)
    assert call_as_trl(judge.as_reward_func(), ["q"], ["a"]) == pytest.approx([0.7])
    greedy = judge.as_reward_func(use_expected_score=False)
    assert call_as_trl(greedy, ["q"], ["a"]) == pytest.approx([0.6])


def test_max_concurrency_reaches_the_backend():
    seen = []

    class Spy(FakeBackend):
        def generate(self, requests, *, max_concurrency=None):
            seen.append(max_concurrency)
            return super().generate(requests, max_concurrency=max_concurrency)

    judge = ThinkingRewardJudge(backend=Spy(scores=[0.5]))
    call_as_trl(judge.as_reward_func(max_concurrency=3), ["q"], ["a"])
    assert seen == [3]


# -- Trust-GRPO arithmetic on hand-made groups -------------------------------------------------


def test_trust_weight_is_one_when_correct_responses_think_better():
    assert trust_weight([1.0, 0.5, 0.3, 0.4], [0.9, 0.7, 0.2, 0.4]) == 1.0
    assert trust_weight([1.0, 1.0], [0.1, 0.2]) == 1.0  # no wrong response
    assert trust_weight([0.3, 0.0], [0.9, 0.1]) == 1.0  # no correct response
    assert trust_weight([1.0, 0.3], [0.5, 0.5]) == 1.0  # a tie is trusted


def test_trust_weight_below_one():
    # mu_correct = (0.2 + 0.4) / 2 = 0.3, mu_wrong = (0.9 + 0.7) / 2 = 0.8
    assert trust_weight([1.0, 0.5, 0.3, 0.4], [0.2, 0.4, 0.9, 0.7]) == pytest.approx(math.exp(-0.5))
    # Unknown thinking rewards (failed judgments) are left out of the means.
    assert trust_weight([1.0, 0.3, 0.3], [0.2, 0.8, None]) == pytest.approx(math.exp(-0.6))


def test_group_rewards_gamma_one():
    group = TrustGRPO().group([1.0, 0.5, 0.3, 0.4], [0.9, 0.7, 0.2, 0.4], step=0)
    assert group.gamma == 1.0
    assert group.scale == pytest.approx(0.3)
    assert group.rewards == pytest.approx((1.27, 0.71, 0.36, 0.52))
    assert group.bonus == pytest.approx((0.27, 0.21, 0.06, 0.12))
    assert (group.judged, group.saved, group.failed, group.saturated) == (4, 0, 0, False)


def test_group_rewards_gamma_below_one_and_annealing():
    cfg = TrustGRPO(alpha=0.3, anneal_steps=100)
    group = cfg.group([1.0, 0.5, 0.3, 0.4], [0.2, 0.4, 0.9, 0.7], step=50)
    gamma = math.exp(-0.5)
    scale = 0.3 * math.exp(-50 / 100)
    assert group.gamma == pytest.approx(gamma)
    assert group.scale == pytest.approx(scale)
    expected = [
        r_o + gamma * scale * r_t for r_o, r_t in [(1.0, 0.2), (0.5, 0.4), (0.3, 0.9), (0.4, 0.7)]
    ]
    assert group.rewards == pytest.approx(tuple(expected))
    assert cfg.scale(0) == pytest.approx(0.3)
    assert cfg.scale(1000) == pytest.approx(0.3 * math.exp(-10))
    with pytest.raises(ValueError, match="training step"):
        cfg.scale(None)


def test_trust_off_keeps_gamma_one():
    group = TrustGRPO(trust=False).group([1.0, 0.3], [0.1, 0.9], step=0)
    assert group.gamma == 1.0
    assert group.rewards == pytest.approx((1.03, 0.57))


@pytest.mark.parametrize(
    "outcome",
    [[1.0, 0.95, 0.9, 1.0], [0.0, 0.1, 0.05, 0.0]],
    ids=["all-right", "all-wrong"],
)
def test_saturated_group_is_not_judged(outcome):
    cfg = TrustGRPO()
    assert cfg.to_judge(outcome) == [False] * 4
    group = cfg.group(outcome, [0.9] * 4, step=0)  # thinking of skipped responses is ignored
    assert group.rewards == pytest.approx(tuple(outcome))
    assert group.thinking == (0.0, 0.0, 0.0, 0.0)
    assert (group.judged, group.saved, group.saturated) == (0, 4, True)
    assert not TrustGRPO(skip_saturated=False).saturated(outcome)


def test_low_outcome_is_not_judged_and_counts_as_zero():
    cfg = TrustGRPO()
    outcome = [1.0, 0.1, 0.6, 0.19, 0.2]
    assert cfg.to_judge(outcome) == [True, False, True, False, True]
    group = cfg.group(outcome, [0.5, None, 0.5, None, 0.9], step=0)
    assert group.thinking == (0.5, 0.0, 0.5, 0.0, 0.9)
    # mu_correct = 0.5; mu_wrong = (0 + 0 + 0.9) / 3 = 0.3 -> trusted
    assert group.gamma == 1.0
    assert (group.judged, group.saved) == (3, 2)
    assert TrustGRPO(skip_below=None).to_judge(outcome) == [True] * 5


def test_failed_judgment_is_none_and_left_out():
    group = TrustGRPO().group([1.0, 0.3, 0.4], [0.2, None, 0.6], step=0)
    assert group.rewards[1] is None
    assert group.bonus[1] is None
    assert group.gamma == pytest.approx(math.exp(0.2 - 0.6))
    assert group.failed == 1


def test_bad_settings():
    with pytest.raises(ValueError, match="alpha"):
        TrustGRPO(alpha=-1)
    with pytest.raises(ValueError, match="anneal_steps"):
        TrustGRPO(anneal_steps=0)
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5]))
    with pytest.raises(ValueError, match="outcome"):
        judge.as_reward_func(include_outcome=False)
    with pytest.raises(ValueError, match="outcome_reward"):
        judge.as_reward_func(anneal_steps=10)
    with pytest.raises(ValueError, match="question"):
        judge.as_reward_func(question="nope")


# -- Trust-GRPO through the TRL reward function ------------------------------------------------


def outcome_from(values):
    def accuracy(prompts, completions, **kwargs):
        return [values[c] for c in completions]

    return accuracy


def test_trust_grpo_end_to_end_saves_calls_and_logs():
    # Group A: all right (saturated, 4 calls saved); group B: partial credit, one < 0.2.
    r_o = {"a0": 1.0, "a1": 1.0, "a2": 0.9, "a3": 1.0, "b0": 1.0, "b1": 0.5, "b2": 0.3, "b3": 0.0}
    r_t = {"b0": 0.2, "b1": 0.4, "b2": 0.9}
    backend = CountingFake(scores=by_response(r_t))
    judge = ThinkingRewardJudge(backend=backend)
    reward = judge.as_reward_func(outcome_from(r_o), anneal_steps=10, num_generations=4, name="t")
    metrics = Metrics()
    completions = list(r_o)
    rewards = call_as_trl(reward, ["A"] * 4 + ["B"] * 4, completions, step=5, metrics=metrics)
    assert [response_of(r) for r in backend.requests] == ["b0", "b1", "b2"]
    assert backend.batches == [3]
    saved = len(completions) - len(backend.requests)
    assert saved == 5
    # Group B: mu_correct = (0.2 + 0.4) / 2 = 0.3, mu_wrong = (0.9 + 0) / 2 = 0.45
    gamma = math.exp(0.3 - 0.45)
    scale = 0.3 * math.exp(-5 / 10)
    expected = [
        1.0,
        1.0,
        0.9,
        1.0,
        1.0 + gamma * scale * 0.2,
        0.5 + gamma * scale * 0.4,
        0.3 + gamma * scale * 0.9,
        0.0,
    ]
    assert rewards == pytest.approx(expected)
    assert metrics.logged["t/calls_saved"] == [5.0]
    assert metrics.logged["t/judge_calls"] == [3.0]
    assert metrics.logged["t/gamma"] == [pytest.approx(gamma)]
    assert metrics.logged["t/thinking_mean"] == [pytest.approx(0.5)]
    assert metrics.logged["t/scale"] == [pytest.approx(scale)]
    assert metrics.logged["t/failures"] == [0.0]
    step = reward.last_step
    assert step.gamma == pytest.approx([1.0] * 4 + [gamma] * 4)


def test_include_outcome_false_returns_the_thinking_term():
    r_o = {"x0": 1.0, "x1": 0.0, "x2": 0.6, "x3": 0.3}
    backend = CountingFake(scores=by_response({"x0": 0.8, "x2": BackendError("boom"), "x3": 0.5}))
    judge = ThinkingRewardJudge(backend=backend)
    reward = judge.as_reward_func(outcome_from(r_o), include_outcome=False)
    rewards = call_as_trl(reward, ["q"] * 4, list(r_o))
    # x1 not judged (R_o < 0.2): term 0.0; x2 failed: None (the outcome still counts in TRL).
    assert rewards == [pytest.approx(0.3 * 0.8), 0.0, None, pytest.approx(0.3 * 0.5)]


def test_an_all_saved_step_makes_no_judge_call():
    backend = CountingFake(scores=[0.5])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(outcome_from({"a": 1, "b": 1}))
    assert call_as_trl(reward, ["q", "q"], ["a", "b"]) == [1.0, 1.0]
    assert backend.batches == []


def test_async_outcome_reward_is_awaited():
    async def accuracy(prompts, completions, **kwargs):
        await asyncio.sleep(0)
        return [1.0, 0.0]

    backend = CountingFake(scores=[0.5])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(accuracy, skip_below=None)
    assert call_as_trl(reward, ["q", "q"], ["a", "b"]) == pytest.approx([1.15, 0.15])
    sync = ThinkingRewardJudge(backend=backend).as_reward_func(accuracy, asynchronous=False)
    with pytest.raises(TypeError, match="async"):
        call_as_trl(sync, ["q"], ["a"])


def test_annealing_needs_trainer_state():
    reward = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])).as_reward_func(
        outcome_from({"a": 1.0, "b": 0.5}), anneal_steps=100
    )
    with pytest.raises(ValueError, match="training step"):
        asyncio.run(reward(prompts=["q", "q"], completions=["a", "b"]))


def test_groups_found_as_runs_of_equal_prompts_and_images():
    r_o = {"a": 1.0, "b": 0.3, "c": 1.0, "d": 1.0}
    backend = CountingFake(scores=[0.5])
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(outcome_from(r_o))
    # Same text, different images: two groups; the second is saturated.
    call_as_trl(reward, ["q"] * 4, list(r_o), image=[image("red")] * 2 + [image("blue")] * 2)
    assert [response_of(r) for r in backend.requests] == ["a", "b"]
    assert reward.last_step.metrics["calls_saved"] == 2.0


def test_num_generations_must_divide_the_batch():
    reward = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])).as_reward_func(
        num_generations=4
    )
    with pytest.raises(ValueError, match="num_generations=4"):
        call_as_trl(reward, ["q"] * 6, ["a"] * 6)


# -- verl ---------------------------------------------------------------------------------------


def png() -> bytes:
    import io

    buffer = io.BytesIO()
    image().save(buffer, format="PNG")
    return buffer.getvalue()


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


def test_verl_per_sample_refuses_group_rules():
    reward = VerlReward(
        ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])), outcome_reward=verl_outcome
    )
    with pytest.raises(ValueError, match="no group"):
        reward.compute_score("s", "4", "4", {"question": "q"})


def test_verl_needs_the_question():
    reward = VerlReward(ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])))
    with pytest.raises(InputError, match="question"):
        reward.compute_score("s", "4", "4", {"answer": "4"})


def test_verl_thinking_alone_and_failures():
    reward = VerlReward(ThinkingRewardJudge(backend=FakeBackend(["0.8", "junk"])))
    assert reward.compute_score("s", "r", "g", {"question": "q"})["score"] == pytest.approx(0.8)
    with pytest.raises(JudgmentError, match="no outcome"):
        reward.compute_score("s", "r", "g", {"question": "q"})


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
    assert math.isnan(results[0]["thinking"])
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
