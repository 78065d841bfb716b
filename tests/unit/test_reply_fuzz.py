"""Whatever a host sends, a reply is a well-typed completion or a typed error, never a crash.

Property tests on the reply readers (:func:`backends.openai_wire.parse_completion`, the
chat-model backend's :func:`~backends.chat_model_replies.reply_result`), the same
through :class:`~backends.openai_compatible.OpenAICompatibleBackend` against a threaded
host, and on :func:`backends.scrubbing.scrub` with secrets hidden in arbitrary text.
Budgets are small numbers of examples (CI's fuzz stage runs more in tests/fuzz).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from reply_values import JSON, encode, well_typed
from threaded_host import ScriptedHost

from backends.base import Completion, JudgeRequest
from backends.chat_model_replies import reply_result
from backends.errors import BackendError, BackendResponseError
from backends.openai_compatible import OpenAICompatibleBackend
from backends.openai_wire import NotACompletion, parse_completion
from backends.scrubbing import scrub

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

VALID: dict[str, Any] = {
    "model": "served",
    "choices": [
        {
            "message": {"role": "assistant", "content": "0.5"},
            "finish_reason": "stop",
            "logprobs": {
                "content": [
                    {"token": "0", "logprob": -0.1, "top_logprobs": [{"token": "1", "logprob": -3}]}
                ]
            },
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 3},
}
# Every place a reader might trust: a path into VALID, then the value put there.
PATHS = [
    (),
    ("model",),
    ("choices",),
    ("choices", 0),
    ("choices", 0, "message"),
    ("choices", 0, "message", "content"),
    ("choices", 0, "finish_reason"),
    ("choices", 0, "logprobs"),
    ("choices", 0, "logprobs", "content"),
    ("choices", 0, "logprobs", "content", 0),
    ("choices", 0, "logprobs", "content", 0, "token"),
    ("choices", 0, "logprobs", "content", 0, "logprob"),
    ("choices", 0, "logprobs", "content", 0, "top_logprobs"),
    ("choices", 0, "logprobs", "content", 0, "top_logprobs", 0, "token"),
    ("choices", 0, "logprobs", "content", 0, "top_logprobs", 0, "logprob"),
    ("usage",),
    ("usage", "prompt_tokens"),
    ("usage", "completion_tokens"),
    ("error",),
]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid completion with one to three of its fields replaced by arbitrary JSON."""
    data: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        value = draw(JSON)
        if not path:
            data = value
            continue
        node = data
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change removed the parent
    return data


BODIES = (
    mutated().map(encode)
    | JSON.map(encode)
    | st.binary(max_size=200)
    | mutated().map(lambda v: encode(v)[: len(encode(v)) // 2])  # truncated
)


@FAST
@given(BODIES)
def test_parse_completion_gives_a_completion_or_says_why(body):
    why = ""
    try:
        completion = parse_completion(body, model="configured")
    except NotACompletion as exc:
        why = str(exc)
    if why:
        return
    well_typed(completion)


@FAST
@given(mutated())
def test_a_reply_with_an_error_is_never_a_completion(data):
    if isinstance(data, dict) and data.get("error"):
        with pytest.raises(NotACompletion, match="error"):
            parse_completion(encode(data), model="m")


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "finish_reason",
                "model_name",
                "model",
                "logprobs",
                "token_usage",
                "usage",
                "stop_reason",
            ]
        ),
        JSON,
    )
)
def test_the_chat_model_reply_reader_never_raises(metadata):
    result = reply_result(
        AIMessage(content="0.5", response_metadata=metadata),
        chat_model="Fake",
        backend="chat-model",
        model="configured",
        latency=0.0,
        safe=str,
    )
    if isinstance(result, Completion):
        well_typed(result)
    else:
        assert isinstance(result, BackendResponseError)


@pytest.fixture(scope="module")
def scripted():
    host = ScriptedHost()
    host.start()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def backend(scripted):
    made = OpenAICompatibleBackend(scripted.url, "configured", api_key="EMPTY", max_retries=0)
    yield made
    made.close()


@SLOW
@given(BODIES)
def test_the_backend_gives_each_reply_a_completion_or_a_typed_error(scripted, backend, body):
    scripted.body = body
    request = JudgeRequest(messages=[{"role": "user", "content": "q"}])
    results = backend.generate([request, request])
    assert len(results) == 2
    for result in results:
        if isinstance(result, Completion):
            well_typed(result)
        else:
            assert isinstance(result, BackendError)
            assert str(result)


SECRET = st.text(
    alphabet=st.characters(
        min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="'\"`,;()[]{}<>|"
    ),
    min_size=12,
    max_size=40,
)


@FAST
@given(
    secret=SECRET,
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    form=st.sampled_from(["whole", "head", "masked", "tail"]),
)
def test_scrub_never_shows_a_secret_or_its_echo(secret, before, after, form):
    echo = {
        "whole": secret,
        "head": secret[:10],
        "masked": f"{secret[:4]}...{secret[-4:]}",
        "tail": f"****{secret[-8:]}",
    }[form]
    text = scrub(f"{before} {echo} {after}", [secret])
    assert secret not in text
    assert secret[:8] not in text
    if form == "masked":
        assert f"{secret[:4]}...{secret[-4:]}" not in text


def reply(**changes: Any) -> bytes:
    """VALID with top-level or choice fields replaced (``choice_`` prefix for the latter)."""
    data: Any = copy.deepcopy(VALID)
    for key, value in changes.items():
        if key.startswith("choice_"):
            data["choices"][0][key.removeprefix("choice_")] = value
        else:
            data[key] = value
    return encode(data)


ODD = {
    "usage-string": reply(usage={"prompt_tokens": "11", "completion_tokens": 1.5}),
    "usage-negative": reply(usage={"prompt_tokens": -3, "completion_tokens": True}),
    "model-number": reply(model=7),
    "model-object": reply(model={"id": "x"}),
    "token-number": reply(choice_logprobs={"content": [{"token": 0, "logprob": -0.1}]}),
    "logprob-string": reply(choice_logprobs={"content": [{"token": "0", "logprob": "x"}]}),
    "error-and-choices": reply(error={"message": "overloaded"}),
    "choices-object": reply(choices={"0": {}}),
    "content-number": encode({"choices": [{"message": {"content": 0.5}}]}),
    "top-level-list": b"[1, 2]",
}


def test_the_judge_goes_on_past_every_odd_reply(scripted):
    from judge import ThinkingRewardJudge, ThinkingScore

    scripted.cases = ODD
    backend = OpenAICompatibleBackend(scripted.url, "configured", api_key="EMPTY", max_retries=0)
    try:
        judge = ThinkingRewardJudge(backend=backend)
        inputs = [{"question": "q", "response": f"answer {m}"} for m in [*ODD, "good"]]
        scripted.body = reply()
        scores = judge.batch(inputs)
    finally:
        scripted.cases = {}
        backend.close()
    assert len(scores) == len(ODD) + 1
    assert all(isinstance(score, ThinkingScore) for score in scores)
    by_case = dict(zip([*ODD, "good"], scores, strict=True))
    assert by_case["good"].score == 0.5
    for case in ("usage-string", "usage-negative", "model-number", "model-object"):
        assert by_case[case].score == 0.5, case  # what describes the reply is dropped
    for case in (
        "token-number",
        "logprob-string",
        "error-and-choices",
        "choices-object",
        "content-number",
        "top-level-list",
    ):
        assert by_case[case].score is None, case
        assert by_case[case].error, case
