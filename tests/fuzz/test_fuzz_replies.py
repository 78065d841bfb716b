"""Whatever a host answers, each judgment is a score or a typed failure, never an exception.

The reply reader alone (:func:`backends.openai_wire.parse_completion`) on arbitrary bytes
and JSON, and the whole judge against a host that answers a fuzzed status, headers and
body.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reply_values import JSON, SCALARS, encode, well_typed
from threaded_host import ScriptedHost

from backends.base import Completion
from backends.openai_compatible import OpenAICompatibleBackend
from backends.openai_wire import NotACompletion, parse_completion
from judge import ThinkingRewardJudge, ThinkingScore
from judge.failures import FailureKind

KEYS = st.sampled_from(
    [
        "choices",
        "message",
        "content",
        "finish_reason",
        "logprobs",
        "top_logprobs",
        "token",
        "logprob",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "model",
        "error",
        "text",
        "index",
    ]
)
# Shapes close to a chat completion, where a reader is most tempted to trust a field.
NEAR = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=30,
)


def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's valid value most of the time, anything JSON now and then."""
    return st.one_of(valid, valid, JSON)


def maybe(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object with these fields, each kept, dropped or replaced by anything."""
    return st.fixed_dictionaries({}, optional={key: either(value) for key, value in fields.items()})


TOKEN = maybe(
    {
        "token": st.sampled_from(["0", ".", "7", "1", "<|im_end|>"]),
        "logprob": st.floats(max_value=0.0, allow_nan=False),
        "bytes": st.just(None),
    }
)
TOKENS = either(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "token": either(st.sampled_from(["0", ".", "7", "1"])),
                "logprob": either(st.floats(max_value=0.0, allow_nan=False)),
                "top_logprobs": either(st.lists(TOKEN, max_size=3)),
            },
        ),
        max_size=4,
    )
)
CHOICE = maybe(
    {
        "index": st.just(0),
        "message": maybe(
            {
                "role": st.just("assistant"),
                "content": st.sampled_from(["0.7", "1.0", "0", "", "prose"]),
            }
        ),
        "finish_reason": st.sampled_from(["stop", "length", "abort", None]),
        "logprobs": maybe({"content": TOKENS}),
    }
)
COMPLETION = maybe(
    {
        "id": st.just("c1"),
        "object": st.just("chat.completion"),
        "model": st.just("m"),
        "choices": st.lists(CHOICE, min_size=1, max_size=2),
        "usage": maybe(
            {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 100)}
        ),
        "error": maybe({"message": st.text(max_size=20)}),
    }
)
BODIES = st.binary(max_size=200) | JSON.map(encode) | NEAR.map(encode) | COMPLETION.map(encode)


@given(BODIES)
def test_the_reply_reader_returns_a_completion_or_says_why_not(body: bytes):
    try:
        completion = parse_completion(body, model="m")
    except NotACompletion as exc:
        why = str(exc)
        assert why  # says why not
        return
    assert isinstance(completion, Completion)
    well_typed(completion)


@pytest.fixture(scope="module")
def host():
    server = ScriptedHost()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def judge(host):
    backend = OpenAICompatibleBackend(
        host.url, "m", api_key="EMPTY", max_retries=0, timeout=5, deadline=5
    )
    yield ThinkingRewardJudge(backend=backend, expected_score=True)
    backend.close()


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(
    status=st.sampled_from([200, 200, 200, 201, 204, 400, 404, 429, 500, 503]),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "Content-Type", "X-Request-Id"]), HEADER_TEXT, max_size=3
    ),
    body=BODIES,
)
def test_the_judge_never_raises_whatever_the_host_answers(host, judge, status, headers, body):
    host.status, host.headers, host.body = status, headers, body
    if status == 204:
        host.body = b""
    (result,) = judge.batch([{"question": "What is 2+2?", "response": "<think>4</think>4"}])
    assert isinstance(result, ThinkingScore)
    if result.ok:
        assert result.score is not None
        assert 0.0 <= result.score <= 1.0
        assert result.expected_score is None or math.isfinite(result.expected_score)
    else:
        assert isinstance(result.error_kind, FailureKind)
        assert result.error
