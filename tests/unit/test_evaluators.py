"""The judge as LangSmith / openevals / langchain-classic evaluators, with FakeBackend.

LangSmith is never contacted: ``langsmith.evaluate`` runs on local examples with
``upload_results=False`` and a client whose HTTP session refuses to send anything.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import socket
import subprocess
import sys
import uuid

import pytest
import requests
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.tracers.context import collect_runs
from langsmith import Client, aevaluate, evaluate
from langsmith.evaluation.evaluator import EvaluationResult
from langsmith.schemas import Example, Run
from PIL import Image

import judge.integrations.classic as classic
import judge.integrations.openevals as openevals
from backends import FakeBackend
from backends.errors import (
    BackendConnectionError,
    BackendContextLengthError,
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnavailableError,
)
from judge import (
    EVALUATION_KEY,
    InputError,
    ScoreParseError,
    ThinkingRewardJudge,
    ThinkingRunEvaluator,
    ThinkingScore,
)
from judge.core.inputs import prepare_judge_input, question_text, response_text
from judge.errors import ConstraintError
from judge.failures import FailureKind, failure_kind
from judge.integrations import FEEDBACK_CONFIG, RUBRIC, score_comment

QUESTION = "What is 2+2?"
RESPONSE = "<think>2+2=4</think><answer>4</answer>"


def png_bytes(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def user_text(request) -> str:
    return request.messages[1]["content"][0]["text"]


def image_urls(request) -> list[str]:
    return [p["image_url"]["url"] for p in request.messages[1]["content"][1:]]


def by_response(request) -> str:
    """The model's answer, chosen by what the response says."""
    text = user_text(request)
    if "GOOD" in text:
        return "1.0"
    if "OK" in text:
        return "0.3"
    if "BAD" in text:
        return "0"
    return "I think this is fine"  # not a score


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No tracing configured, and any connection attempt fails the test."""
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "false")
    for name in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"no network in unit tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
    assert attempts == []


class _Refuse(requests.adapters.BaseAdapter):
    def __init__(self, attempts: list[str]) -> None:
        super().__init__()
        self.attempts = attempts

    def send(self, request, **kwargs):
        self.attempts.append(f"{request.method} {request.url}")
        raise requests.ConnectionError("this test client never sends")

    def close(self) -> None:
        pass


@pytest.fixture
def offline_client():
    """A LangSmith client that knows its server info and refuses to send anything."""
    attempts: list[str] = []
    session = requests.Session()
    session.mount("http://", _Refuse(attempts))
    session.mount("https://", _Refuse(attempts))
    client = Client(
        api_url="http://langsmith.invalid",
        api_key="offline",
        info={},
        session=session,
        auto_batch_tracing=False,
    )
    yield client
    assert attempts == []


def example(inputs: dict, outputs: dict | None = None, attachments=None) -> Example:
    return Example(
        id=uuid.uuid4(),
        dataset_id=uuid.uuid4(),
        inputs=inputs,
        outputs=outputs or {},
        attachments=attachments,
    )


def run(inputs: dict, outputs: dict | None) -> Run:
    return Run(
        id=uuid.uuid4(),
        name="target",
        run_type="chain",
        inputs=inputs,
        outputs=outputs,
        start_time="2026-01-01T00:00:00Z",
        trace_id=uuid.uuid4(),
    )


# --------------------------------------------------------------------------- input mapping


def test_question_defaults():
    assert question_text({"question": QUESTION, "context": "x"}) == QUESTION
    assert question_text({"query": QUESTION}) == QUESTION  # the only string input
    assert question_text({"query": QUESTION, "image": "chart.png"}) == QUESTION
    assert question_text(QUESTION) == QUESTION
    messages = [HumanMessage("first"), AIMessage("a"), HumanMessage(QUESTION)]
    assert question_text({"messages": messages}) == QUESTION
    assert question_text(messages) == QUESTION
    assert question_text({"messages": [{"role": "user", "content": QUESTION}]}) == QUESTION
    assert question_text({"question": HumanMessage(QUESTION)}) == QUESTION


@pytest.mark.parametrize(
    "inputs", [{"a": "one", "b": "two"}, {"n": 3}, {}, 42, [AIMessage("no user message")]]
)
def test_question_not_found_is_an_input_error(inputs):
    with pytest.raises(InputError, match=r"question|prepare"):
        question_text(inputs)


def test_response_defaults():
    def response(outputs):
        return prepare_judge_input(inputs={"question": QUESTION}, outputs=outputs)["response"]

    assert response({"response": RESPONSE, "output": "other"}) == RESPONSE
    assert response({"output": RESPONSE}) == RESPONSE
    assert response({"output": AIMessage(RESPONSE)}) == RESPONSE
    assert response({"answer": RESPONSE, "n_steps": 3}) == RESPONSE  # the only string output
    assert response({"messages": [HumanMessage("q"), AIMessage(RESPONSE)]}) == RESPONSE
    assert response({"messages": [{"role": "assistant", "content": RESPONSE}]}) == RESPONSE
    assert response(AIMessage(RESPONSE)) == RESPONSE
    assert response(RESPONSE) == RESPONSE
    assert response({"output": {"response": RESPONSE}}) == RESPONSE


def test_response_text_puts_separate_reasoning_back_as_think():
    parsed = AIMessage("<answer>4</answer>", additional_kwargs={"reasoning_content": "2+2=4"})
    assert response_text(parsed) == RESPONSE
    blocks = AIMessage(
        content=[
            {"type": "reasoning", "reasoning": "2+2=4"},
            {"type": "text", "text": "<answer>4</answer>"},
        ]
    )
    assert response_text(blocks) == RESPONSE
    already = AIMessage(RESPONSE, additional_kwargs={"reasoning_content": "2+2=4"})
    assert response_text(already) == RESPONSE  # not doubled
    assert response_text(ChatGeneration(message=AIMessage(RESPONSE))) == RESPONSE
    assert response_text(Generation(text=RESPONSE)) == RESPONSE
    assert response_text({"role": "assistant", "content": RESPONSE}) == RESPONSE
    with pytest.raises(InputError, match="int"):
        response_text(42)


@pytest.mark.parametrize("outputs", [None, {}, {"a": "x", "b": "y"}, [HumanMessage("q")]])
def test_response_not_found_is_an_input_error(outputs):
    with pytest.raises(InputError):
        prepare_judge_input(inputs={"question": QUESTION}, outputs=outputs)


def test_images_from_inputs_win_over_attachments():
    item = prepare_judge_input(
        inputs={"question": QUESTION, "image": "chart.png"},
        outputs={"output": RESPONSE},
        attachments={"pic": {"mime_type": "image/png", "data": "data:image/png;base64,AAAA"}},
    )
    assert item == {"question": QUESTION, "response": RESPONSE, "image": "chart.png"}


def test_images_from_attachments():
    red, blue = png_bytes("red"), png_bytes("blue")
    reader = io.BytesIO(red)
    reader.read(3)  # another evaluator read part of it before
    attachments = {
        "chart": {
            "presigned_url": "https://x.invalid/a",
            "reader": reader,
            "mime_type": "image/png",
        },
        "notes": {"presigned_url": "", "reader": io.BytesIO(b"text"), "mime_type": "text/plain"},
    }
    item = prepare_judge_input(
        inputs={"question": QUESTION}, outputs={"output": RESPONSE}, attachments=attachments
    )
    assert item["image"] == red
    assert reader.tell() == 0  # rewound for whoever reads it next
    two = prepare_judge_input(
        inputs={"question": QUESTION},
        outputs={"output": RESPONSE},
        attachments={
            "a": {"reader": io.BytesIO(red), "mime_type": "image/png"},
            "b": {"mime_type": "image/png", "data": "data:image/png;base64,QQ=="},
            "c": {"mime_type": "IMAGE/JPEG", "presigned_url": "https://x.invalid/c.jpg"},
        },
    )
    assert two["images"] == [red, "data:image/png;base64,QQ==", "https://x.invalid/c.jpg"]
    assert blue != red


def test_attachment_image_reaches_the_model():
    backend = FakeBackend(["0.7"])
    evaluator = ThinkingRewardJudge(backend=backend).as_evaluator()
    result = evaluator(
        inputs={"question": QUESTION},
        outputs={"output": RESPONSE},
        attachments={"chart": {"reader": io.BytesIO(png_bytes()), "mime_type": "image/png"}},
    )
    assert result["score"] == pytest.approx(0.7)
    (request,) = backend.requests
    assert image_urls(request)[0].startswith("data:image/png;base64,")
    assert f"Question: <image> {QUESTION}" in user_text(request)


def test_prepare_override_gets_every_argument():
    seen = {}

    def prepare(*, inputs, outputs, reference_outputs=None, attachments=None):
        seen.update(
            inputs=inputs, outputs=outputs, reference=reference_outputs, attachments=attachments
        )
        return {"question": inputs["prompt"]["text"], "response": outputs["trace"]["final"]}

    backend = FakeBackend(["0.4"])
    judge = ThinkingRewardJudge(backend=backend)
    evaluator = judge.as_evaluator(prepare=prepare)
    result = evaluator(
        inputs={"prompt": {"text": QUESTION}},
        outputs={"trace": {"final": RESPONSE}},
        reference_outputs={"answer": "4"},
        attachments={},
    )
    assert result["score"] == pytest.approx(0.4)
    assert seen["reference"] == {"answer": "4"}
    assert seen["attachments"] == {}
    assert QUESTION in user_text(backend.requests[0])
    assert RESPONSE in user_text(backend.requests[0])

    run_evaluator = judge.as_langsmith_evaluator(prepare=prepare)
    ex = example({"prompt": {"text": QUESTION}}, {"answer": "4"})
    feedback = run_evaluator.evaluate_run(run(ex.inputs, {"trace": {"final": RESPONSE}}), ex)
    assert feedback.score == pytest.approx(0.4)
    assert seen["reference"] == {"answer": "4"}


def test_run_evaluator_reads_example_inputs_else_run_inputs():
    backend = FakeBackend(["0.5"])
    run_evaluator = ThinkingRewardJudge(backend=backend).as_langsmith_evaluator()
    # langsmith records a target's inputs under its parameter name; the example has them plain
    ex = example({"question": QUESTION})
    run_evaluator.evaluate_run(run({"inputs": ex.inputs}, {"output": RESPONSE}), ex)
    run_evaluator.evaluate_run(run({"question": "Other?"}, {"output": RESPONSE}))
    assert QUESTION in user_text(backend.requests[0])
    assert "Other?" in user_text(backend.requests[1])


# --------------------------------------------------------------------------- results


@pytest.mark.parametrize(
    ("raw", "band"),
    [
        ("0", "0/1: completely flawed reasoning"),
        ("0.3", "0.3/1: partial correctness or minor errors"),
        ("0.9", "0.9/1: partial correctness or minor errors"),
        ("1.0", "1/1: perfectly sound reasoning"),
    ],
)
def test_comment_states_the_band_and_the_rubric(raw, band):
    result = ThinkingRewardJudge(backend=FakeBackend([raw])).as_evaluator()(
        inputs={"question": QUESTION}, outputs={"output": RESPONSE}
    )
    assert result["key"] == EVALUATION_KEY
    assert result["score"] == pytest.approx(float(raw))
    assert result["comment"] == f"{band} (rubric: {', '.join(RUBRIC)})"
    assert set(result) == {"key", "score", "comment", "metadata"}
    assert result["metadata"]["raw"] == raw
    assert result["metadata"]["model"] == "fake-thinking-reward-model"
    assert result["metadata"]["backend"] == "fake"
    assert "messages" not in result["metadata"]


def test_issue_example_comment():
    assert score_comment(0.3) == (
        "0.3/1: partial correctness or minor errors (rubric: logical soundness, correct "
        "reasoning, error identification, language consistency, redundancy)"
    )


def test_expected_score_is_reported_when_computed():
    backend = FakeBackend(scores=lambda request: {0.6: 0.5, 0.8: 0.5})
    judge = ThinkingRewardJudge(backend=backend, expected_score=True)
    result = judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": RESPONSE})
    assert result["score"] == pytest.approx(0.7)
    assert result["metadata"]["score"] == pytest.approx(0.6)
    assert result["metadata"]["expected_score"] == pytest.approx(0.7)
    assert result["comment"].startswith("0.7/1 (expected score; the model answered 0.6): partial")
    greedy = judge.as_evaluator(use_expected_score=False)(
        inputs={"question": QUESTION}, outputs={"output": RESPONSE}
    )
    assert greedy["score"] == pytest.approx(0.6)
    assert greedy["comment"].startswith("0.6/1: partial")


@pytest.mark.parametrize(
    ("backend", "error_type"),
    [
        (FakeBackend(["I think this is fine"]), "ScoreParseError"),
        (
            FakeBackend([BackendConnectionError("connection refused", backend="fake")]),
            "BackendConnectionError",
        ),
    ],
)
def test_failed_judgment_is_an_error_never_a_score(backend, error_type):
    judge = ThinkingRewardJudge(backend=backend)
    result = judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": RESPONSE})
    assert result["score"] is None
    assert result["comment"].startswith(f"evaluation error, no score: {error_type}: ")
    assert result["metadata"]["error_type"] == error_type
    assert result["metadata"]["error"]
    assert result["extra"] == {"error": True}

    feedback = judge.as_langsmith_evaluator().evaluate_run(
        run({"question": QUESTION}, {"output": RESPONSE})
    )
    assert isinstance(feedback, EvaluationResult)
    assert feedback.score is None
    assert feedback.extra == {"error": True}
    assert feedback.comment.startswith("evaluation error, no score")
    assert feedback.metadata["error_type"] == error_type


def test_unmappable_input_is_an_error_without_a_judge_call():
    backend = FakeBackend(["0.7"])
    judge = ThinkingRewardJudge(backend=backend)
    result = judge.as_evaluator()(inputs={"a": "x", "b": "y"}, outputs={"output": RESPONSE})
    assert result["score"] is None
    assert result["metadata"]["error_type"] == "InputError"
    assert "prepare" in result["comment"]
    empty = judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": "  "})
    assert empty["score"] is None  # the judge refuses an empty response
    assert backend.requests == []


def test_judge_that_raises_still_gives_an_error_result():
    judge = ThinkingRewardJudge(backend=FakeBackend(["nope"]), raise_on_error=True)
    result = judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": RESPONSE})
    assert result["score"] is None
    assert result["metadata"]["error_type"] == "ScoreParseError"


def test_run_evaluator_result_shape_and_tracing():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    run_evaluator = judge.as_langsmith_evaluator()
    assert isinstance(run_evaluator, ThinkingRunEvaluator)
    assert run_evaluator.feedback_keys == [EVALUATION_KEY]
    evaluator_run_id = uuid.uuid4()
    with collect_runs() as collected:
        feedback = run_evaluator.evaluate_run(
            run({"question": QUESTION}, {"output": RESPONSE}),
            evaluator_run_id=evaluator_run_id,
        )
    assert feedback.key == EVALUATION_KEY
    assert feedback.score == pytest.approx(0.7)
    assert feedback.feedback_config == FEEDBACK_CONFIG
    assert feedback.source_run_id == evaluator_run_id
    assert feedback.extra is None
    (judge_run,) = collected.traced_runs
    assert judge_run.id == evaluator_run_id  # the feedback links to the judge's run
    assert judge_run.run_type == "llm"
    assert judge_run.extra["metadata"]["ls_model_name"] == "fake-thinking-reward-model"
    assert judge_run.outputs["output"].score == pytest.approx(0.7)


def test_custom_key():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    evaluator = judge.as_evaluator(key="reasoning_quality")
    assert evaluator.__name__ == "reasoning_quality"
    assert evaluator(inputs=QUESTION, outputs=RESPONSE)["key"] == "reasoning_quality"
    assert judge.as_langsmith_evaluator(key="rq").feedback_keys == ["rq"]
    with pytest.raises(ValueError, match="key"):
        judge.as_evaluator(key="")


def test_default_key_is_the_same_everywhere():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    for method in (judge.as_evaluator, judge.as_langsmith_evaluator, judge.as_string_evaluator):
        assert inspect.signature(method).parameters["key"].default == EVALUATION_KEY


async def test_async_forms():
    backend = FakeBackend(by_response)
    judge = ThinkingRewardJudge(backend=backend)
    evaluator = judge.as_evaluator(asynchronous=True)
    assert inspect.iscoroutinefunction(evaluator)
    good = await evaluator(inputs={"question": QUESTION}, outputs={"output": "GOOD"})
    bad = await evaluator(inputs={"question": QUESTION}, outputs={"output": "rambling"})
    assert good["score"] == pytest.approx(1.0)
    assert bad["score"] is None
    assert bad["extra"] == {"error": True}
    feedback = await judge.as_langsmith_evaluator().aevaluate_run(
        run({"question": QUESTION}, {"output": "OK"})
    )
    assert feedback.score == pytest.approx(0.3)
    assert not inspect.iscoroutinefunction(judge.as_evaluator())


# --------------------------------------------------------------------------- langsmith.evaluate


EXAMPLES = [("GOOD reasoning", 1.0), ("OK reasoning", 0.3), ("rambling", None), ("BAD", 0.0)]


def local_examples() -> list[Example]:
    return [example({"question": f"Q{i}: {text}"}) for i, (text, _) in enumerate(EXAMPLES)]


def expected_for(question: str) -> float | None:
    index = int(question.split(":")[0][1:])
    return EXAMPLES[index][1]


def target(inputs: dict) -> dict:
    return {"response": inputs["question"].split(": ", 1)[1]}


def check_rows(rows, keys: list[str]) -> None:
    assert len(rows) == len(EXAMPLES)
    for row in rows:
        want = expected_for(row["example"].inputs["question"])
        results = row["evaluation_results"]["results"]
        assert [r.key for r in results] == keys
        for result in results:
            if want is None:
                assert result.score is None
                assert (result.extra or {}).get("error") is True
                assert "ScoreParseError" in result.comment
            else:
                assert result.score == pytest.approx(want)
                assert "rubric" in result.comment


@pytest.mark.filterwarnings("ignore:'upload_runs' parameter is in beta")
def test_langsmith_evaluate_with_every_form(offline_client):
    judge = ThinkingRewardJudge(backend=FakeBackend(by_response))
    run_evaluator = judge.as_langsmith_evaluator()
    function = judge.as_evaluator(key="thinking_reward_fn")
    string = judge.as_string_evaluator(key="thinking_reward_str")
    results = evaluate(
        target,
        data=local_examples(),
        evaluators=[run_evaluator, function],
        upload_results=False,
        client=offline_client,
    )
    check_rows(list(results), [EVALUATION_KEY, "thinking_reward_fn"])
    assert string.evaluate_strings(prediction="GOOD", input=QUESTION)["score"] == 1.0


@pytest.mark.filterwarnings("ignore:'upload_runs' parameter is in beta")
async def test_langsmith_aevaluate_with_async_forms(offline_client):
    judge = ThinkingRewardJudge(backend=FakeBackend(by_response))

    async def atarget(inputs: dict) -> dict:
        return target(inputs)

    results = await aevaluate(
        atarget,
        data=local_examples(),
        evaluators=[
            judge.as_langsmith_evaluator(),
            judge.as_evaluator(asynchronous=True, key="k2"),
        ],
        upload_results=False,
        client=offline_client,
    )
    rows = [row async for row in results]
    check_rows(rows, [EVALUATION_KEY, "k2"])


# --------------------------------------------------------------------------- pytest-langsmith


def test_logs_feedback_inside_a_langsmith_test_case(monkeypatch):
    from langsmith import testing

    logged, traced = [], []

    @contextlib.contextmanager
    def trace_feedback(*, name):
        traced.append(name)
        yield None

    monkeypatch.setattr(openevals, "_test_case_active", lambda: True)
    monkeypatch.setattr(testing, "trace_feedback", trace_feedback)
    monkeypatch.setattr(testing, "log_feedback", lambda **kw: logged.append(kw))
    judge = ThinkingRewardJudge(backend=FakeBackend(by_response))
    judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": "OK"})
    judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": "rambling"})
    assert traced == [EVALUATION_KEY, EVALUATION_KEY]
    assert logged[0]["key"] == EVALUATION_KEY
    assert logged[0]["score"] == pytest.approx(0.3)
    assert logged[0]["comment"].startswith("0.3/1")
    assert logged[1]["score"] is None
    assert logged[1]["comment"].startswith("evaluation error")


def test_outside_a_test_case_nothing_is_logged(monkeypatch):
    from langsmith import testing

    monkeypatch.setattr(testing, "log_feedback", lambda **kw: pytest.fail("logged"))
    assert not openevals._test_case_active()
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    assert judge.as_evaluator()(inputs=QUESTION, outputs=RESPONSE)["score"] == 0.7


# --------------------------------------------------------------------------- StringEvaluator


def test_string_evaluator():
    pytest.importorskip("langchain_classic")
    from langchain_classic.evaluation.schema import StringEvaluator

    backend = FakeBackend(by_response)
    evaluator = ThinkingRewardJudge(backend=backend).as_string_evaluator()
    assert isinstance(evaluator, StringEvaluator)
    assert isinstance(evaluator, classic.ThinkingStringEvaluator)
    assert evaluator.evaluation_name == EVALUATION_KEY
    assert evaluator.requires_input
    assert not evaluator.requires_reference
    result = evaluator.evaluate_strings(prediction=AIMessage("OK"), input=QUESTION)
    assert result == {
        "score": pytest.approx(0.3),
        "value": "partial correctness or minor errors",
        "reasoning": score_comment(0.3),
    }
    with pytest.raises(ValueError, match="requires an input"):
        evaluator.evaluate_strings(prediction="OK")
    with pytest.raises(ScoreParseError):
        evaluator.evaluate_strings(prediction="rambling", input=QUESTION)
    evaluator.evaluate_strings(prediction="GOOD", input=QUESTION, image=png_bytes())
    assert image_urls(backend.requests[-1])[0].startswith("data:image/png;base64,")


async def test_string_evaluator_async():
    pytest.importorskip("langchain_classic")
    evaluator = ThinkingRewardJudge(backend=FakeBackend(by_response)).as_string_evaluator()
    result = await evaluator.aevaluate_strings(prediction="GOOD", input=QUESTION)
    assert result["score"] == pytest.approx(1.0)
    assert result["value"] == "perfectly sound reasoning"
    with pytest.raises(ScoreParseError):
        await evaluator.aevaluate_strings(prediction="rambling", input=QUESTION)


def test_string_evaluator_without_langchain_classic(monkeypatch):
    import sys

    classic._string_evaluator_class.cache_clear()
    monkeypatch.setitem(sys.modules, "langchain_classic", None)
    monkeypatch.setitem(sys.modules, "langchain_classic.evaluation.schema", None)
    try:
        with pytest.raises(ImportError, match=r"thinking-reward-judge\[langchain\]"):
            ThinkingRewardJudge(backend=FakeBackend(["0.7"])).as_string_evaluator()
    finally:
        classic._string_evaluator_class.cache_clear()


def test_string_evaluator_wraps_any_judge_runnable():
    pytest.importorskip("langchain_classic")
    from langchain_core.runnables import RunnableLambda

    backend = FakeBackend(by_response)
    bound = ThinkingRewardJudge(backend=backend).with_config({"run_name": "bound"})
    evaluator = classic.create_string_evaluator(bound)
    assert evaluator.evaluate_strings(prediction="GOOD", input=QUESTION)["score"] == 1.0
    with pytest.raises(ScoreParseError):
        evaluator.evaluate_strings(prediction="rambling", input=QUESTION)

    refused = ThinkingScore.failure(BackendConnectionError("connection refused", backend="x"))
    failing = classic.create_string_evaluator(RunnableLambda(lambda _item: refused))
    with pytest.raises(BackendConnectionError, match="connection refused"):
        failing.evaluate_strings(prediction="GOOD", input=QUESTION)


@pytest.mark.parametrize(
    "error",
    [
        InputError("empty"),
        ScoreParseError("not a score", llm_output="junk"),
        ConstraintError("not allowed"),
        BackendContextLengthError("too long", status=400),
        BackendConnectionError("refused"),
        BackendTimeoutError("slow"),
        BackendHTTPError("bad gateway", status=502),
        BackendUnavailableError("no vllm"),
        RuntimeError("a bug"),
    ],
)
def test_failure_error_is_of_the_failed_judgments_kind(error):
    score = ThinkingScore.failure(error, raw="junk")
    raised = classic.failure_error(score)
    assert failure_kind(raised) == score.error_kind
    assert str(raised) == score.error


def test_failed_verdict_carries_the_failure_kind():
    judge = ThinkingRewardJudge(backend=FakeBackend(["I think this is fine"]))
    result = judge.as_evaluator()(inputs={"question": QUESTION}, outputs={"output": RESPONSE})
    assert result["metadata"]["error_kind"] == FailureKind.PARSE
    unmappable = judge.as_evaluator()(inputs={"a": "x", "b": "y"}, outputs={"output": RESPONSE})
    assert unmappable["metadata"]["error_kind"] == FailureKind.INPUT


def test_importing_the_faces_loads_only_what_they_use():
    code = (
        "import sys, judge.integrations, judge.rerank\n"
        "from judge.integrations import create_thinking_evaluator, keep_runs_local\n"
        "loaded = [m for m in ('langsmith.evaluation', 'langchain_classic', "
        "'judge.integrations.langsmith', 'judge.integrations.classic') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
