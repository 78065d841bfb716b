"""``thinking-judge reward-server`` against the real vLLM server, with OpenRLHF's requests.

The request is what OpenRLHF's trainer posts to ``--remote_rm_url``
(OpenRLHF/OpenRLHF ``openrlhf/cli/serve_rm.py``: ``{"query", "prompts", "labels"}``), the
queries built as it builds them: the chat-templated prompt and the response decoded
with special tokens.
"""

from __future__ import annotations

import pytest

from backends.vllm_server import VLLMServerBackend
from judge import SCORE_GRID, ThinkingRewardJudge

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from judge.cli.reward_server import create_app  # noqa: E402

GRID = {float(value) for value in SCORE_GRID}


def chat_prompt(question: str) -> str:
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_openrlhf_requests_are_judged_by_the_real_server(vllm_server: VLLMServerBackend):
    judge = ThinkingRewardJudge(backend=vllm_server, constrained=True)
    questions = ["What is 2+2?", "What is 17 * 24?", "Name a prime above 10."]
    responses = [
        "<think>2+2=4</think><answer>4</answer>",
        "<think>17*24 = 408</think><answer>408</answer>",
        "<think>11 is prime</think><answer>11</answer>",
    ]
    prompts = [chat_prompt(q) for q in questions]
    queries = [p + r + "<|im_end|>" for p, r in zip(prompts, responses, strict=True)]
    with TestClient(create_app(judge)) as client:
        assert client.get("/health").status_code == 200
        reply = client.post(
            "/get_reward", json={"query": queries, "prompts": prompts, "labels": ["4", "408", "11"]}
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert len(body["rewards"]) == len(queries)
        assert set(body["rewards"]) <= GRID  # constrained: always a grid value, never made up
        assert body["scores"] == body["rewards"]
        metrics = client.get("/metrics").text
        assert "thinking_judge_judgments_total" in metrics
