"""OpenRLHF's reward protocol: the query split, the answer's shape, failures, the server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from recipe_files import load_recipe

from backends import FakeBackend
from backends.errors import BackendError
from judge import ThinkingRewardJudge
from judge.cli.main import build_parser
from judge.cli.reward_server import app_from_args, create_app
from judge.errors import InputError
from judge.failures import FailureKind
from judge.rl.openrlhf import (
    JudgmentsFailed,
    judge_inputs,
    merge_results,
    reward_payload,
    split_query,
)
from judge.types import ThinkingScore

# A prompt as OpenRLHF's dataset renders it with Qwen's chat template, and the query its
# rollout builds: prompt + response decoded with special tokens (end of turn, padding).
PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is 2+3?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
RESPONSE = "<think>2 plus 3 is 5.</think><answer>5</answer>"
QUERY = PROMPT + RESPONSE + "<|im_end|>" + "<|endoftext|>" * 3


def test_split_takes_the_prompt_off_and_the_special_tokens_off_the_end():
    assert split_query(QUERY, PROMPT) == ("What is 2+3?", RESPONSE)


def test_split_without_the_exact_prompt_uses_the_last_assistant_header():
    # The decoded prompt may differ from prompts[i] (a truncated prompt, a round trip).
    assert split_query(QUERY, "something else") == ("What is 2+3?", RESPONSE)
    assert split_query(QUERY) == ("What is 2+3?", RESPONSE)


def test_split_keeps_special_tokens_inside_the_response():
    inner = "<think>a<|im_end|>b</think><answer>1</answer>"
    assert split_query(PROMPT + inner + "<|im_end|>", PROMPT)[1] == inner


def test_split_of_a_plain_prompt_keeps_it_as_the_question():
    assert split_query("Q: 2+3? A: 5<|endoftext|>", "Q: 2+3?") == ("Q: 2+3?", "A: 5")


@pytest.mark.parametrize(
    ("query", "prompt"),
    [
        ("no template here", None),
        (PROMPT + "<|im_end|><|endoftext|>", PROMPT),
        ("<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\nhi", None),
    ],
    ids=["no-response", "empty-response", "empty-question"],
)
def test_split_raises_an_input_error_when_it_cannot(query: str, prompt: str | None):
    with pytest.raises(InputError):
        split_query(query, prompt)


def test_judge_inputs_keeps_each_bad_query_as_its_error():
    inputs = judge_inputs([QUERY, "junk"], [PROMPT, "junk"])
    assert inputs[0] == {"question": "What is 2+3?", "response": RESPONSE}
    assert isinstance(inputs[1], InputError)
    with pytest.raises(InputError, match="2 queries but 1 prompts"):
        judge_inputs([QUERY, QUERY], [PROMPT])


def test_merge_puts_failures_in_place():
    inputs = judge_inputs(["junk", QUERY, QUERY], None)
    merged = merge_results(inputs, [ThinkingScore(score=0.5), BackendError("down")])
    assert merged[0].error_kind is FailureKind.INPUT
    assert merged[1].score == 0.5
    assert merged[2].score is None
    assert merged[2].error_kind is not None
    with pytest.raises(ValueError, match="2 inputs judged but 1 results"):
        merge_results(inputs, [ThinkingScore(score=0.5)])


def test_payload_has_openrlhfs_shape():
    payload = reward_payload([ThinkingScore(score=0.8), ThinkingScore(score=0.3)])
    assert payload == {
        "rewards": [0.8, 0.3],
        "scores": [0.8, 0.3],
        "extra_logs": {"judge_failed": [0.0, 0.0]},
    }


def test_payload_can_reward_the_expected_score():
    result = ThinkingScore(score=0.8, expected_score=0.65)
    assert reward_payload([result], use_expected_score=True)["rewards"] == [0.65]
    assert reward_payload([result])["rewards"] == [0.8]


def test_a_failure_is_never_a_reward_unless_the_user_chose_one():
    failed = ThinkingScore.failure(BackendError("timed out"))
    with pytest.raises(JudgmentsFailed) as caught:
        reward_payload([ThinkingScore(score=0.8), failed])
    assert caught.value.failures == [
        {
            "index": 1,
            "error_kind": failed.error_kind.value if failed.error_kind else None,
            "retryable": failed.retryable,
            "error": "timed out",
        }
    ]
    payload = reward_payload([ThinkingScore(score=0.8), failed], failure_reward=-1.0)
    assert payload["rewards"] == [0.8, -1.0]
    assert payload["extra_logs"] == {"judge_failed": [0.0, 1.0]}
    with pytest.raises(ValueError, match="finite"):
        reward_payload([failed], failure_reward=math.nan)


def test_judging_split_queries_end_to_end_with_the_fake_backend():
    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.7]))
    inputs = judge_inputs([QUERY], [PROMPT])
    good = [item for item in inputs if not isinstance(item, InputError)]
    results = merge_results(inputs, judge.batch(good, return_exceptions=True))
    assert reward_payload(results)["rewards"] == [0.7]
    sent = judge.backend.requests[0]  # type: ignore[attr-defined]
    assert "What is 2+3?" in str(sent)
    assert "2 plus 3 is 5." in str(sent)
    assert "<|im_end|>" not in str(sent)


# -- the reward server ------------------------------------------------------------------


class CountingBackend(FakeBackend):
    """A fake that records the size of each batch it is sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def generate(self, requests: Sequence[Any], *, max_concurrency: int | None = None) -> Any:
        self.batches.append(len(requests))
        return super().generate(requests, max_concurrency=max_concurrency)


def _app(backend: FakeBackend, **options: Any) -> Any:
    return create_app(ThinkingRewardJudge(backend=backend), **options)


def _openrlhf_body(count: int = 1) -> dict[str, list[str]]:
    # Exactly what OpenRLHF's rollout posts: three parallel lists.
    return {"query": [QUERY] * count, "prompts": [PROMPT] * count, "labels": ["5"] * count}


def test_server_answers_openrlhfs_request():
    with TestClient(_app(FakeBackend(scores=[0.6]))) as client:
        answer = client.post("/get_reward", json=_openrlhf_body(2))
        assert answer.status_code == 200
        assert answer.json() == {
            "rewards": [0.6, 0.6],
            "scores": [0.6, 0.6],
            "extra_logs": {"judge_failed": [0.0, 0.0]},
        }
        assert client.get("/health").json() == {"status": "ok"}


def test_server_answers_503_on_a_failure_so_openrlhf_retries():
    backend = FakeBackend([BackendError("down")])
    with TestClient(_app(backend)) as client:
        answer = client.post("/get_reward", json=_openrlhf_body())
    assert answer.status_code == 503
    assert answer.json()["failures"][0]["index"] == 0
    assert answer.json()["failures"][0]["error"] == "down"


def test_server_rewards_a_failure_only_as_told():
    with TestClient(_app(FakeBackend([BackendError("down")]), failure_reward=-0.5)) as client:
        answer = client.post("/get_reward", json=_openrlhf_body())
    assert answer.status_code == 200
    assert answer.json()["rewards"] == [-0.5]
    assert answer.json()["extra_logs"] == {"judge_failed": [1.0]}
    with pytest.raises(ValueError, match="finite"):
        _app(FakeBackend(scores=[0.5]), failure_reward=math.inf)


def test_server_judges_an_unsplittable_query_as_a_failed_input():
    with TestClient(_app(FakeBackend(scores=[0.5]))) as client:
        answer = client.post("/get_reward", json={"query": [QUERY, "junk"], "prompts": None})
    assert answer.status_code == 503
    assert answer.json()["failures"][0]["index"] == 1
    assert answer.json()["failures"][0]["error_kind"] == FailureKind.INPUT.value


@pytest.mark.parametrize(
    "body",
    [[1, 2], {"prompts": [PROMPT]}, {"query": "one string"}, {"query": [QUERY], "prompts": [1]}],
)
def test_server_refuses_what_is_not_openrlhfs_shape(body: Any):
    with TestClient(_app(FakeBackend(scores=[0.5]))) as client:
        assert client.post("/get_reward", json=body).status_code == 400


def test_concurrent_requests_are_judged_in_one_batch_and_counted():
    backend = CountingBackend(scores=[0.4])
    app = _app(backend, batch_wait_s=0.05)

    async def post_many() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.post("/get_reward", json=_openrlhf_body()) for _ in range(6))
            )

    answers = asyncio.run(post_many())
    assert [answer.json()["rewards"] for answer in answers] == [[0.4]] * 6
    assert backend.batches == [6]
    with TestClient(app) as client:
        client.post("/get_reward", json={"query": ["junk"]})
        metrics = client.get("/metrics").text
    assert "thinking_judge_judgments_total 7.0" in metrics
    assert 'thinking_judge_failures_total{kind="input"} 1.0' in metrics
    assert "thinking_judge_request_seconds_count 7.0" in metrics


def test_a_client_going_away_does_not_strand_the_rest_of_its_batch():
    app = _app(FakeBackend(scores=[0.4]), batch_wait_s=0.05)

    async def first_leaves() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = asyncio.create_task(client.post("/get_reward", json=_openrlhf_body()))
            await asyncio.sleep(0.01)  # the first request opened the batch
            second = asyncio.create_task(client.post("/get_reward", json=_openrlhf_body()))
            await asyncio.sleep(0.01)
            first.cancel()
            return await asyncio.wait_for(second, timeout=5)

    assert asyncio.run(first_leaves()).json()["rewards"] == [0.4]


def test_reward_server_command_parses_with_the_judge_options():
    args = build_parser().parse_args(
        ["reward-server", "--base-url", "http://127.0.0.1:8000/v1", "--failure-reward", "-1"]
    )
    assert (args.host, args.port, args.failure_reward) == ("127.0.0.1", 5000, -1.0)


# -- the local-mode recipe --------------------------------------------------------------


def test_recipe_reward_func_answers_in_openrlhfs_shape(monkeypatch: pytest.MonkeyPatch):
    recipe = load_recipe("openrlhf_reward_func")
    monkeypatch.setattr(recipe, "JUDGE", ThinkingRewardJudge(backend=FakeBackend(scores=[0.9])))
    result = recipe.reward_func([recipe.EXAMPLE_QUERY], [recipe.EXAMPLE_PROMPT], ["48"])
    assert result["rewards"].tolist() == pytest.approx([0.9])
    assert result["extra_logs"]["judge_failed"].tolist() == [0.0]
    monkeypatch.setattr(
        recipe, "JUDGE", ThinkingRewardJudge(backend=FakeBackend([BackendError("x")]))
    )
    with pytest.raises(JudgmentsFailed):
        recipe.reward_func([recipe.EXAMPLE_QUERY], [recipe.EXAMPLE_PROMPT], ["48"])
    monkeypatch.setenv("THINKING_JUDGE_FAILURE_REWARD", "-1")
    result = recipe.reward_func([recipe.EXAMPLE_QUERY], [recipe.EXAMPLE_PROMPT], ["48"])
    assert result["rewards"].tolist() == [-1.0]


def test_server_awaits_its_shutdown_hook_when_the_app_stops():
    closed: list[str] = []

    async def close() -> None:
        closed.append("closed")

    app = create_app(ThinkingRewardJudge(backend=FakeBackend(scores=[0.5])), on_shutdown=close)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert closed == []
    assert closed == ["closed"]


def test_app_from_args_serves_the_commands_options():
    args = build_parser().parse_args(
        [
            "reward-server",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--failure-reward",
            "-1",
            "--constrained",
        ]
    )
    app = app_from_args(args)
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/get_reward", "/health", "/metrics"} <= paths
    with TestClient(app) as client:  # nothing listens on port 9: a failed judgment
        answer = client.post("/get_reward", json=_openrlhf_body())
    assert answer.status_code == 200
    assert answer.json()["rewards"] == [-1.0]
    assert answer.json()["extra_logs"] == {"judge_failed": [1.0]}
