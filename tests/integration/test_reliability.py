"""Reliability against the real vLLM server: context length, and a dead replica.

The server is the session's ``vllm_server`` (tiny random-weight model, ``max_model_len``
4096), so the model's answers are junk: what is checked is that every request reached
the model and came back, or failed with the right typed error, not the scores.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from backends.base import Completion, JudgeRequest
from backends.errors import BackendContextLengthError
from backends.vllm_server import VLLMServerBackend
from judge import ThinkingRewardJudge

MAX_MODEL_LEN = 4096  # the vllm_server fixture's --max-model-len


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture
def make_backend(vllm_server: VLLMServerBackend) -> Iterator[Any]:
    """Backends of our own on the session's server (the shared one is left untouched)."""
    made: list[VLLMServerBackend] = []

    def make(base_url: str | list[str] | None = None, **kwargs: Any) -> VLLMServerBackend:
        url = base_url if base_url is not None else str(vllm_server.base_url)
        backend = VLLMServerBackend(url, vllm_server.model, timeout=120, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_prompt_longer_than_the_context_fails_alone_without_retries(make_backend, monkeypatch):
    backend = make_backend(max_retries=3)
    sent: list[int] = []
    attempt = backend._attempt

    async def counted(*args: Any, **kwargs: Any) -> Any:
        sent.append(1)
        return await attempt(*args, **kwargs)

    monkeypatch.setattr(backend, "_attempt", counted)
    long = "word " * (2 * MAX_MODEL_LEN)
    items = [{"question": "What is 2+2?", "response": f"<think>{i}</think>4"} for i in range(5)]
    items.insert(2, {"question": "What is 2+2?", "response": long})
    results = ThinkingRewardJudge(backend=backend).batch(items, config={"max_concurrency": 4})

    too_long = results[2]
    assert too_long.error_type == "BackendContextLengthError", too_long.error
    assert too_long.metadata["attempts"] == 1
    assert "maximum" in too_long.error
    assert str(MAX_MODEL_LEN) in too_long.error
    assert "word word word" not in too_long.error  # the prompt is not echoed back
    for result in results[:2] + results[3:]:
        assert result.usage is not None, result.error  # the model answered
        assert result.error_type in (None, "ScoreParseError")
    assert len(sent) == len(items)  # nothing was sent twice


def test_context_length_error_from_the_backend_directly(make_backend):
    backend = make_backend(max_retries=3)
    long = JudgeRequest(messages=[{"role": "user", "content": "word " * (2 * MAX_MODEL_LEN)}])
    short = JudgeRequest(messages=[{"role": "user", "content": "Say 1."}])
    too_long, fine = backend.generate([long, short])
    assert isinstance(too_long, BackendContextLengthError), too_long
    assert too_long.status == 400
    assert not too_long.retryable
    assert too_long.attempts == 1
    assert isinstance(fine, Completion)


def test_a_dead_replica_does_not_stop_the_batch(make_backend, vllm_server):
    dead = _dead_url()
    backend = make_backend([dead, str(vllm_server.base_url)], max_retries=0)
    requests = [
        JudgeRequest(messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=4)
        for i in range(20)
    ]
    results = backend.generate(requests, max_concurrency=8)
    assert all(isinstance(r, Completion) for r in results), [str(r) for r in results]
    assert not backend.replicas.pool.state(0).live  # ejected
    assert backend.replicas.pool.state(1).live

    judge = ThinkingRewardJudge(backend=backend)
    items = [
        {"question": f"What is {i}+1?", "response": f"<think>{i}+1</think>"} for i in range(20)
    ]
    scores = judge.batch(items, config={"max_concurrency": 8})
    for score in scores:
        assert score.usage is not None, score.error  # the model answered every one
        assert score.error_type in (None, "ScoreParseError")


def test_an_answer_cut_off_by_max_tokens_is_a_failure_never_a_score(make_backend):
    """The real server stops the answer at one token ("length"): never scored, even "1"."""
    backend = make_backend()
    item = {"question": "What is 2+2?", "response": "<think>2+2=4</think><answer>4</answer>"}
    cut = ThinkingRewardJudge(backend=backend, constrained=True, max_tokens=1).invoke(item)
    assert cut.score is None
    assert cut.error_type == "TruncatedAnswerError", cut.error
    assert cut.error_kind == "parse"
    assert cut.metadata["finish_reason"] == "length"
    assert cut.raw in ("0", "1")  # a digit that would have parsed as a score
    whole = ThinkingRewardJudge(backend=backend, constrained=True).invoke(item)
    assert whole.ok, whole.error  # the same request with room for the answer is scored
    assert whole.metadata["finish_reason"] == "stop"
