"""OpenRLHF's reward protocol: the query split, the answer's shape, failures, the server."""

from __future__ import annotations

import math

import pytest

from backends import FakeBackend
from backends.errors import BackendError
from judge import ThinkingRewardJudge
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
