"""ChatModelBackend around ChatOpenAI, against the session's real vLLM server (tiny model).

Every request is also sent through VLLMServerBackend, which talks to the same server
directly: the two must see the same prompt tokens and, decoding greedily, say the same.
"""

from __future__ import annotations

import openai
import pytest
from langchain_openai import ChatOpenAI

from backends import ChatModelBackend, VLLMServerBackend
from backends.base import Completion, JudgeRequest
from backends.errors import BackendError
from judge import SCORE_GRID, ThinkingRewardJudge, ThinkingScore, render_messages
from judge.core.images import image_parts

ITEM = {"question": "What is 2+2?", "response": "<think>2+2=4</think><answer>4</answer>"}
MODEL = "thinking-reward-model"


def chat_openai(server: VLLMServerBackend, **kwargs) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=str(server.base_url), model=MODEL, api_key="EMPTY", timeout=120, **kwargs
    )


@pytest.fixture(scope="module")
def llm(vllm_server: VLLMServerBackend) -> ChatOpenAI:
    return chat_openai(vllm_server)


@pytest.fixture(scope="module")
def backend(llm: ChatOpenAI) -> ChatModelBackend:
    """As the judge would use it against vLLM: everything vLLM honours switched on."""
    return ChatModelBackend(
        llm,
        supports_repetition_penalty=True,
        supports_structured_outputs=True,
        supports_continuation=True,
    )


def completions(backend, requests: list[JudgeRequest]) -> list[Completion]:
    results = backend.generate(requests)
    for result in results:
        assert isinstance(result, Completion), result
    return results


def test_text_and_image_match_the_vllm_server_backend(backend, vllm_server, make_png):
    text_only = JudgeRequest(messages=render_messages("q", "r"), max_tokens=8)
    image = JudgeRequest(
        messages=render_messages("q", "r", image_parts(make_png((224, 224)))), max_tokens=8
    )
    chat = completions(backend, [text_only, image])
    direct = completions(vllm_server, [text_only, image])
    # 224x224 is 8x8 merged patches = 64 image tokens, plus the "<image> " prefix.
    assert chat[1].prompt_tokens > chat[0].prompt_tokens + 64
    for via_chat, via_server in zip(chat, direct, strict=True):
        assert via_chat.prompt_tokens == via_server.prompt_tokens
        assert via_chat.completion_tokens == via_server.completion_tokens
        assert via_chat.text == via_server.text  # same weights, greedy: same answer
        assert via_chat.finish_reason == via_server.finish_reason
        assert via_chat.model == MODEL
        assert via_chat.latency_s > 0


def test_logprobs_come_back(backend, vllm_server):
    request = JudgeRequest(messages=render_messages("q", "r"), max_tokens=3, top_logprobs=5)
    (chat,) = completions(backend, [request])
    (direct,) = completions(vllm_server, [request])
    assert chat.logprobs is not None
    assert len(chat.logprobs) == chat.completion_tokens
    for position in chat.logprobs:
        assert len(position.top) >= 5
        assert position.logprob <= 0.0
        assert [lp for _, lp in position.top] == sorted(
            (lp for _, lp in position.top), reverse=True
        )
    assert [p.token for p in chat.logprobs] == [p.token for p in direct.logprobs]


def test_structured_outputs_choice_is_honoured(backend, llm):
    choice = {"structured_outputs": {"choice": ["0.5"]}}
    request = JudgeRequest(messages=render_messages("q", "r"), max_tokens=4, extra=choice)
    (completion,) = completions(backend, [request])
    assert completion.text == "0.5"
    assert completion.finish_reason == "stop"
    # Not switched on: refused, not sent without the constraint.
    (refused,) = ChatModelBackend(llm).generate([request])
    assert isinstance(refused, BackendError)
    assert "supports_structured_outputs" in str(refused)


def test_continuation_continues_the_assistant_message(backend, vllm_server):
    messages = [*render_messages("q", "r"), {"role": "assistant", "content": "0."}]
    continued = JudgeRequest(messages=messages, max_tokens=2, continue_final_message=True)
    new_turn = JudgeRequest(messages=messages, max_tokens=2)
    chat_continued, chat_new_turn = completions(backend, [continued, new_turn])
    (direct,) = completions(vllm_server, [continued])
    assert chat_continued.prompt_tokens == direct.prompt_tokens
    assert chat_continued.text == direct.text
    # A new turn closes the assistant message and opens another: more prompt tokens.
    assert chat_new_turn.prompt_tokens > chat_continued.prompt_tokens


def test_the_judge_over_chat_openai(backend, vllm_server, make_png):
    item = {**ITEM, "image": make_png((56, 56))}
    via_chat = ThinkingRewardJudge(backend=backend).invoke(item)
    via_server = ThinkingRewardJudge(backend=vllm_server).invoke(item)
    assert isinstance(via_chat, ThinkingScore)
    # Random weights: a score, or a typed parse error; the same as the server backend's.
    assert via_chat.score is not None or via_chat.error_type == "ScoreParseError"
    assert via_chat.raw == via_server.raw
    assert via_chat.usage == via_server.usage
    assert via_chat.backend == "chat-model"
    assert via_chat.model == MODEL
    assert via_chat.metadata["chat_model"] == "ChatOpenAI"


def test_the_constrained_judge_over_chat_openai(backend):
    result = ThinkingRewardJudge(backend=backend, constrained=True).invoke(ITEM)
    assert result.error is None, result.error
    assert result.raw in SCORE_GRID
    assert result.score == float(result.raw)


async def test_abatch_keeps_order(vllm_server):
    # An async HTTP client of this test's own event loop (langchain_openai would
    # otherwise share a cached one between loops).
    async with openai.DefaultAsyncHttpxClient(timeout=120) as client:
        backend = ChatModelBackend(chat_openai(vllm_server, http_async_client=client))
        requests = [
            JudgeRequest(messages=render_messages("q", "step " * (5 * i)), max_tokens=2)
            for i in range(8)
        ]
        results = await backend.agenerate(requests, max_concurrency=4)
    tokens = [r.prompt_tokens for r in results]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)
