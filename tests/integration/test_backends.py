"""The judge end to end on real vLLM (server and in-process engine), tiny random model."""

from __future__ import annotations

import pytest

from backends.base import Backend, JudgeRequest
from judge import SCORE_GRID, ThinkingRewardJudge, render_messages
from judge.core.prompt import render_prompt

ITEM = {"question": "What is 2+2?", "response": "<think>2+2=4</think><answer>4</answer>"}


def test_random_weights_answer_junk_and_the_judge_says_so(backend: Backend):
    result = ThinkingRewardJudge(backend=backend).invoke(ITEM)
    assert result.score is None
    assert result.error_type == "ScoreParseError"
    assert isinstance(result.raw, str)
    assert result.usage["prompt_tokens"] > 200  # the whole rubric reached the model
    assert 1 <= result.usage["completion_tokens"] <= 16
    assert result.backend == backend.name
    assert result.latency_s > 0


def test_the_image_reaches_the_model(backend: Backend, make_png):
    judge = ThinkingRewardJudge(backend=backend)
    text_only, small, large, two = judge.batch(
        [
            ITEM,
            {**ITEM, "image": make_png((56, 56))},
            {**ITEM, "image": make_png((224, 224))},
            {**ITEM, "images": [make_png((56, 56)), make_png((56, 56), "blue")]},
        ]
    )
    tokens = [r.usage["prompt_tokens"] for r in (text_only, small, large, two)]
    # 56x56 is 2x2 merged patches = 4 image tokens (+ vision start/end and the "<image> "
    # prefix); 224x224 is 8x8 = 64; two images twice one.
    assert tokens[1] > tokens[0]
    assert tokens[2] - tokens[1] == 64 - 4
    assert tokens[3] - tokens[1] == tokens[1] - tokens[0] - _prefix_tokens(backend)


def _prefix_tokens(backend: Backend) -> int:
    """Tokens of the "<image> " prefix, which only the first image brings."""
    plain = ThinkingRewardJudge(backend=backend).invoke(ITEM).usage["prompt_tokens"]
    prefixed = (
        ThinkingRewardJudge(backend=backend)
        .invoke({**ITEM, "question": "<image> " + ITEM["question"]})
        .usage["prompt_tokens"]
    )
    return prefixed - plain


def test_constrained_answers_are_scores_on_the_grid(backend: Backend, make_png):
    judge = ThinkingRewardJudge(backend=backend, constrained=True)
    results = judge.batch([ITEM, {**ITEM, "image": make_png((56, 56))}])
    for result in results:
        assert result.error is None, result.error
        assert result.raw in SCORE_GRID
        assert result.score == float(result.raw)
        assert result.metadata["sampling"]["structured_outputs"]["choice"] == list(SCORE_GRID)


def test_batch_keeps_order(backend: Backend):
    items = [{"question": "q", "response": "step " * (5 * i)} for i in range(1, 13)]
    results = ThinkingRewardJudge(backend=backend).batch(items, config={"max_concurrency": 4})
    tokens = [r.usage["prompt_tokens"] for r in results]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)


async def test_abatch_keeps_order(backend: Backend):
    items = [{"question": "q", "response": "step " * (5 * i)} for i in range(1, 13)]
    results = await ThinkingRewardJudge(backend=backend).abatch(
        items, config={"max_concurrency": 8}
    )
    tokens = [r.usage["prompt_tokens"] for r in results]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)


def test_a_too_long_prompt_fails_alone(backend: Backend):
    items = [ITEM, {"question": "q", "response": "word " * 6000}, ITEM]
    results = ThinkingRewardJudge(backend=backend, constrained=True).batch(items)
    assert results[0].ok
    assert results[2].ok
    assert results[1].score is None
    assert results[1].error_type == "BackendContextLengthError", results[1].error
    assert "base64" not in results[1].error


def test_server_and_engine_see_the_same_tokens(vllm_server, offline_backend, make_png):
    item = {**ITEM, "image": make_png((112, 84))}
    served = ThinkingRewardJudge(backend=vllm_server).invoke(item)
    local = ThinkingRewardJudge(backend=offline_backend).invoke(item)
    assert served.prompt_sha256 == local.prompt_sha256
    assert served.usage["prompt_tokens"] == local.usage["prompt_tokens"]
    # Same weights, same greedy decoding, same answer.
    assert served.raw == local.raw


def test_the_chat_template_renders_the_cards_layout(offline_backend):
    tokenizer = offline_backend.llm.get_tokenizer()
    messages = render_messages(ITEM["question"], ITEM["response"])
    text = tokenizer.apply_chat_template(
        [
            {
                "role": m["role"],
                "content": m["content"]
                if isinstance(m["content"], str)
                else m["content"][0]["text"],
            }
            for m in messages
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{render_prompt(ITEM['question'], ITEM['response'])}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_offline_batch_is_one_engine_call(offline_backend, monkeypatch):
    calls = []
    llm = offline_backend.llm
    original = llm.chat

    def counting_chat(conversations, *args, **kwargs):
        calls.append(len(conversations))
        return original(conversations, *args, **kwargs)

    monkeypatch.setattr(llm, "chat", counting_chat)
    ThinkingRewardJudge(backend=offline_backend).batch([ITEM] * 5)
    assert calls == [5]


def test_requests_carry_the_default_sampling(vllm_server):
    result = ThinkingRewardJudge(backend=vllm_server).invoke(ITEM)
    assert result.metadata["sampling"] == {
        "temperature": 0.0,
        "max_tokens": 16,
        "repetition_penalty": 1.0,
    }
    assert result.model == "thinking-reward-model"


def test_server_health_and_version(vllm_server):
    assert vllm_server.health()
    assert vllm_server.version().startswith("0.")


def test_a_dead_server_is_a_connection_failure_not_a_score():
    from backends.vllm_server import VLLMServerBackend

    with VLLMServerBackend(
        base_url="http://127.0.0.1:9/v1", model="m", max_retries=2, backoff_base=0.001
    ) as dead:
        result = ThinkingRewardJudge(backend=dead).invoke(ITEM)
        assert not dead.health()
    assert result.score is None
    assert result.error_type == "BackendConnectionError"
    assert result.metadata["attempts"] == 3


def test_direct_backend_request(backend: Backend):
    request = JudgeRequest(
        messages=render_messages("q", "r"),
        max_tokens=4,
        extra={"structured_outputs": {"choice": ["0.5"]}},
    )
    (completion,) = backend.generate([request])
    assert completion.text == "0.5"
    assert completion.finish_reason == "stop"


@pytest.mark.parametrize("top", [5])
def test_logprobs_come_back(backend: Backend, top):
    request = JudgeRequest(messages=render_messages("q", "r"), max_tokens=3, top_logprobs=top)
    (completion,) = backend.generate([request])
    assert completion.logprobs is not None
    assert len(completion.logprobs) == completion.completion_tokens
    for position in completion.logprobs:
        assert len(position.top) >= top
        assert position.logprob <= 0.0


def test_offline_metadata_names_the_vllm_version(offline_backend):
    result = ThinkingRewardJudge(backend=offline_backend).invoke(ITEM)
    assert result.metadata["vllm_version"].startswith("0.")
    assert result.metadata["backend"] == "vllm-offline"
