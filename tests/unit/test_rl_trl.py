"""TRL's reward-function call: formats, order, one batched call, failures, Trust-GRPO."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading

import pytest
from aiohttp import web
from rl_calls import (
    CountingFake,
    Metrics,
    by_response,
    call_as_trl,
    image,
    question_of,
    response_of,
)
from threaded_host import ThreadedHost
from trl_processes import ThreadRanks, split

from backends import FakeBackend, OpenAICompatibleBackend
from backends.errors import BackendError
from judge import GRPOReward, SyncGRPOReward, ThinkingRewardJudge
from judge.rl.processes import Part, ProcessFailed, TorchCollective, default_collective

# -- the call, formats, order, failures ----------------------------------------------------------


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
    assert metrics.extra["tr/thinking"] == [pytest.approx(0.3), None, None, pytest.approx(1.0)]
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


def test_bad_settings():
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


# -- what TRL logs, and closing on TRL's reward loop ------------------------------------------

TRL_COLUMNS = {"step", "prompt", "completion", "advantage", "image"}
"""GRPOTrainer's own columns of the completions table (TRL 1.16, ``log``)."""


def test_logged_extras_never_take_a_reward_or_trl_column():
    reward = ThinkingRewardJudge(backend=FakeBackend(scores=[0.4])).as_reward_func(name="thinking")
    metrics = Metrics()
    call_as_trl(reward, ["q", "q"], ["a", "b"], metrics=metrics)
    # TRL's table is {..., **rewards, **extra, ...}: an extra named like a reward replaces it
    assert set(metrics.extra) == {"thinking/thinking", "thinking/gamma"}
    assert not set(metrics.extra) & (TRL_COLUMNS | {reward.__name__, "accuracy"})
    assert metrics.extra["thinking/thinking"] == [pytest.approx(0.4)] * 2


class ScoreHost(ThreadedHost):
    """An OpenAI-compatible chat endpoint that always answers the score 0.7."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.complete)
        return app

    async def complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "0.7"},
                        "finish_reason": "stop",
                    }
                ],
            }
        )


@pytest.fixture
def score_host():
    host = ScoreHost()
    host.start()
    yield host
    host.stop()


def trl_reward_loop():
    """An event loop run forever in a daemon thread, as TRL 1.16 awaits async rewards
    (``trl.trainer.utils.start_event_loop_in_daemon``; stopped at exit, never closed)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def test_close_releases_the_sessions_opened_on_trls_loop(score_host):
    backend = OpenAICompatibleBackend(score_host.url, "m", max_retries=0)
    reward = ThinkingRewardJudge(backend=backend).as_reward_func(name="thinking")
    loop, thread = trl_reward_loop()
    try:
        call = reward(prompts=["q", "q"], completions=["a", "b"])
        rewards = asyncio.run_coroutine_threadsafe(call, loop).result(30)
        assert rewards == [pytest.approx(0.7)] * 2
        session = backend.transport.sessions[loop].session
        assert not session.closed
        reward.close()  # from the main thread, as on_train_end runs
        assert session.closed
        assert loop not in backend.transport.sessions
        reward.close()  # twice is harmless
        # the backend stays usable: a later call opens a new session
        again = asyncio.run_coroutine_threadsafe(reward(prompts=["q"], completions=["a"]), loop)
        assert again.result(30) == [pytest.approx(0.7)]
        pytest.importorskip("transformers")
        reward.callback().on_train_end(None, None, None)
        assert loop not in backend.transport.sessions
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        backend.close()


def test_close_without_a_call_or_a_backend_does_nothing():
    reward = ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])).as_reward_func()
    reward.close()
    call_as_trl(reward, ["q"], ["a"])  # asyncio.run: that loop is closed by now
    reward.close()


# -- several processes: groups that span them are weighted whole ------------------------------

SPANNING_R_O = {
    "c0": 1.0,
    "c1": 0.0,
    "c2": 1.0,
    "c3": 0.5,
    "c4": 0.0,
    "c5": 1.0,
    "c6": 0.3,
    "c7": 1.0,
}
SPANNING_R_T = {"c0": 0.1, "c2": 0.2, "c3": 0.3, "c5": 0.2, "c6": 0.9, "c7": 0.1}
"""One group of 8 whose wrong answers out-think its right ones (gamma < 1), unevenly:
each half alone gives another gamma, so a reward computed on half groups differs."""


def spanning_reward(backend, collective=None, **options):
    judge = ThinkingRewardJudge(backend=backend)
    settings = {"num_generations": 8, "name": "thinking", "collective": collective}
    return judge.as_reward_func(outcome_from(SPANNING_R_O), **{**settings, **options})


def run_ranks(world_size, prompts, completions, make_reward, **columns):
    """Call one reward per rank as TRL does, each on its part; rewards, metrics, rewards objects."""
    ranks = ThreadRanks(world_size)
    rewards = [make_reward(ranks.collective(r), r) for r in range(world_size)]
    metrics = [Metrics() for _ in range(world_size)]
    parts_p, parts_c = split(prompts, world_size), split(completions, world_size)
    parts_cols = {k: split(v, world_size) for k, v in columns.items()}

    def call(r):
        cols = {k: v[r] for k, v in parts_cols.items()}
        return lambda: call_as_trl(rewards[r], parts_p[r], parts_c[r], metrics=metrics[r], **cols)

    results = ranks.run([call(r) for r in range(world_size)])
    return results, metrics, rewards, ranks


def test_a_group_spanning_two_processes_is_weighted_whole():
    completions = list(SPANNING_R_O)
    prompts = ["P"] * 8
    single = spanning_reward(CountingFake(scores=by_response(SPANNING_R_T)))
    single_metrics = Metrics()
    expected = call_as_trl(single, prompts, completions, metrics=single_metrics)
    backends = [CountingFake(scores=by_response(SPANNING_R_T)) for _ in range(2)]
    results, metrics, rewards, ranks = run_ranks(
        2, prompts, completions, lambda c, r: spanning_reward(backends[r], c)
    )
    assert results[0] + results[1] == pytest.approx(expected)
    gamma = single.last_step.gamma[0]
    assert gamma < 1.0  # the group's trust weight is in play
    assert [s.gamma for s in (rewards[0].last_step, rewards[1].last_step)] == [[gamma] * 4] * 2
    # Each process judged only its own completions, in one batched call.
    assert [response_of(r) for r in backends[0].requests] == ["c0", "c2", "c3"]
    assert [response_of(r) for r in backends[1].requests] == ["c5", "c6", "c7"]
    assert [b.batches for b in backends] == [[3], [3]]
    assert ranks.gathers == [2, 2]
    # TRL gathers log_extra columns in rank order and averages log_metric over ranks.
    for column in ("thinking/thinking", "thinking/gamma"):
        joined = metrics[0].extra[column] + metrics[1].extra[column]
        assert joined == pytest.approx(single_metrics.extra[column])
    for m in metrics:
        assert set(m.logged) == set(single_metrics.logged)
        for name, values in single_metrics.logged.items():
            assert m.logged[name] == pytest.approx(values)
    # On half groups (what num_generations=None did per process) the rewards differ.
    halves = [
        call_as_trl(
            spanning_reward(CountingFake(scores=by_response(SPANNING_R_T)), num_generations=None),
            prompts[:4] if r == 0 else prompts[4:],
            completions[:4] if r == 0 else completions[4:],
        )
        for r in range(2)
    ]
    assert halves[0] + halves[1] != pytest.approx(expected)


def test_uneven_parts_and_several_groups_over_four_processes():
    # 4 processes of 6 completions, groups of 4: groups 2, 4 ... straddle processes.
    r_o = {f"g{g}c{i}": [1.0, 0.0, 0.6, 0.3][i] for g in range(6) for i in range(4)}
    r_t = {c: (len(c) * 7 + int(c[1]) * 3 + int(c[3])) % 10 / 10 for c in r_o}
    prompts = [f"P{g}" for g in range(6) for _ in range(4)]
    completions = list(r_o)

    def make(collective, rank):
        judge = ThinkingRewardJudge(backend=CountingFake(scores=by_response(r_t)))
        return judge.as_reward_func(
            outcome_from(r_o), num_generations=4, skip_below=None, collective=collective
        )

    expected = call_as_trl(make(None, 0), prompts, completions)
    results, _, _, ranks = run_ranks(4, prompts, completions, make)
    assert [len(r) for r in results] == [6] * 4
    assert [x for part in results for x in part] == pytest.approx(expected)
    assert ranks.gathers == [2] * 4


def test_groups_by_prompt_join_across_processes():
    # num_generations=None: runs of equal prompts, continued on the next process.
    completions = list(SPANNING_R_O)
    prompts = ["P"] * 6 + ["Q"] * 2
    r_o = dict(SPANNING_R_O)
    single = spanning_reward(CountingFake(scores=by_response(SPANNING_R_T)), num_generations=None)
    expected = call_as_trl(single, prompts, completions)
    results, _, rewards, _ = run_ranks(
        2,
        prompts,
        completions,
        lambda c, r: spanning_reward(
            CountingFake(scores=by_response(SPANNING_R_T)), c, num_generations=None
        ),
    )
    assert results[0] + results[1] == pytest.approx(expected)
    assert rewards[1].last_step.gamma == single.last_step.gamma[4:]
    assert r_o == SPANNING_R_O


def test_a_failed_judgment_on_one_process_is_none_there_only():
    r_t = {**SPANNING_R_T, "c6": BackendError("boom")}
    completions, prompts = list(SPANNING_R_O), ["P"] * 8
    expected = call_as_trl(
        spanning_reward(CountingFake(scores=by_response(r_t))), prompts, completions
    )
    results, metrics, _, ranks = run_ranks(
        2,
        prompts,
        completions,
        lambda c, r: spanning_reward(CountingFake(scores=by_response(r_t)), c),
    )
    assert results[1][2] is None
    assert results[0] + results[1] == pytest.approx(expected)
    assert metrics[0].logged["thinking/failures"] == [1.0]  # the whole batch's count
    assert ranks.gathers == [2, 2]


def test_an_error_on_one_process_is_raised_on_every_process():
    def broken(prompts, completions, **kwargs):
        raise KeyError("no answer column")

    def make(collective, rank):
        judge = ThinkingRewardJudge(backend=CountingFake(scores=by_response(SPANNING_R_T)))
        outcome = broken if rank == 1 else outcome_from(SPANNING_R_O)
        return judge.as_reward_func(outcome, num_generations=8, collective=collective)

    results, _, _, ranks = run_ranks(2, ["P"] * 8, list(SPANNING_R_O), make)
    assert isinstance(results[1], KeyError)
    assert isinstance(results[0], ProcessFailed)
    assert "process 1 failed" in str(results[0])
    assert "no answer column" in str(results[0])
    assert ranks.gathers == [1, 1]  # both gave up after the same gather


class RaisingJudge:
    """A judge whose whole batch call raises (not one failed judgment: the call)."""

    async def abatch(self, inputs, config=None, *, return_exceptions=False):
        raise RuntimeError("judge call broke")

    def batch(self, inputs, config=None, *, return_exceptions=False):
        raise RuntimeError("judge call broke")


@pytest.mark.parametrize("asynchronous", [True, False])
def test_a_judge_call_that_raises_on_one_process_stops_every_process(asynchronous):
    def make(collective, rank):
        judge = ThinkingRewardJudge(backend=CountingFake(scores=by_response(SPANNING_R_T)))
        reward = judge.as_reward_func(
            outcome_from(SPANNING_R_O),
            num_generations=8,
            collective=collective,
            asynchronous=asynchronous,
        )
        if rank == 0:
            reward.judge = RaisingJudge()
        return reward

    results, _, _, ranks = run_ranks(2, ["P"] * 8, list(SPANNING_R_O), make)
    assert isinstance(results[0], RuntimeError)
    assert not isinstance(results[0], ProcessFailed)
    assert isinstance(results[1], ProcessFailed)
    assert ranks.gathers == [2, 2]


def test_not_whole_groups_over_all_processes_fail_on_every_process():
    def make(collective, rank):
        return spanning_reward(CountingFake(scores=[0.5]), collective, num_generations=4)

    results, _, _, ranks = run_ranks(2, ["P"] * 6, list(SPANNING_R_O)[:6], make)
    assert all(isinstance(r, ValueError) for r in results)
    assert "6 completions over 2 processes" in str(results[0])
    assert ranks.gathers == [1, 1]


def test_sync_form_across_processes():
    completions, prompts = list(SPANNING_R_O), ["P"] * 8
    expected = call_as_trl(
        spanning_reward(CountingFake(scores=by_response(SPANNING_R_T))), prompts, completions
    )
    results, _, _, _ = run_ranks(
        2,
        prompts,
        completions,
        lambda c, r: spanning_reward(
            CountingFake(scores=by_response(SPANNING_R_T)), c, asynchronous=False
        ),
    )
    assert results[0] + results[1] == pytest.approx(expected)


def test_without_torch_distributed_a_reward_is_one_process():
    # No process group is set up in the unit tests: the call is the single-process one.
    reward = spanning_reward(CountingFake(scores=by_response(SPANNING_R_T)))
    assert reward._processes() is None
    with pytest.raises(ValueError, match="4 completions are not whole groups"):
        call_as_trl(reward, ["P"] * 4, list(SPANNING_R_O)[:4])


def test_torch_collective_over_gloo(tmp_path):
    # One real gloo process group (world size 1): the gather torchrun's processes use.
    dist = pytest.importorskip("torch.distributed")
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert default_collective() is None  # one process: the single-process call
        collective = TorchCollective()
        assert collective.rank == 0
        assert collective.all_gather(Part(count=2, outcome=[1.0, None])) == [
            Part(count=2, outcome=[1.0, None])
        ]
    finally:
        dist.destroy_process_group()
