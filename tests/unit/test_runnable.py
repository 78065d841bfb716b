"""ThinkingRewardJudge as a Runnable: results, failures, order, tracing, batching."""

from __future__ import annotations

import asyncio
import io

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable
from PIL import Image

from backends import FakeBackend
from backends.base import Completion, SyncBackend
from backends.errors import BackendConnectionError, BackendError
from judge import (
    InputError,
    ScoreParseError,
    ThinkingRewardJudge,
    ThinkingScore,
    render_prompt,
)
from judge.core.prompt import prompt_sha256
from judge.errors import TruncatedAnswerError

ITEM = {"question": "What is 2+2?", "response": "<think>2+2=4</think><answer>4</answer>"}


def png_bytes(size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_is_a_runnable_and_scores():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    assert isinstance(judge, Runnable)
    result = judge.invoke(ITEM)
    assert isinstance(result, ThinkingScore)
    assert result.score == pytest.approx(0.7)
    assert result.raw == "0.7"
    assert result.error is None
    assert result.ok
    assert result.backend == "fake"
    assert result.model == "fake-thinking-reward-model"


def test_request_is_the_cards_prompt_with_default_sampling():
    backend = FakeBackend(["1.0"])
    ThinkingRewardJudge(backend=backend).invoke(ITEM)
    (request,) = backend.requests
    assert request.messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert request.messages[1]["content"] == [
        {"type": "text", "text": render_prompt(ITEM["question"], ITEM["response"])}
    ]
    assert request.temperature == 0.0
    assert request.repetition_penalty == 1.0
    assert request.max_tokens == 16  # "1.0" and an end of turn, with room to spare
    assert request.top_logprobs is None


def test_provenance_is_recorded():
    backend = FakeBackend(["0.3"])
    result = ThinkingRewardJudge(backend=backend).invoke(ITEM)
    assert result.prompt_sha256 == prompt_sha256(backend.requests[0].messages)
    assert result.metadata["template_version"]
    assert result.metadata["sampling"] == {
        "temperature": 0.0,
        "max_tokens": backend.requests[0].max_tokens,
        "repetition_penalty": 1.0,
    }


def test_image_goes_after_the_text_with_its_prefix():
    backend = FakeBackend(["0.5"])
    ThinkingRewardJudge(backend=backend).invoke({**ITEM, "image": png_bytes()})
    text, image = backend.requests[0].messages[1]["content"]
    assert "Question: <image> What is 2+2?" in text["text"]
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,")


def test_several_images():
    backend = FakeBackend(["0.5"])
    ThinkingRewardJudge(backend=backend).invoke({**ITEM, "images": [png_bytes(), png_bytes()]})
    assert [p["type"] for p in backend.requests[0].messages[1]["content"]] == [
        "text",
        "image_url",
        "image_url",
    ]


def test_unparseable_answer_is_a_failure_not_zero():
    result = ThinkingRewardJudge(backend=FakeBackend(["\n\n\n\n"])).invoke(ITEM)
    assert result.score is None
    assert result.error_type == "ScoreParseError"
    assert result.error
    assert result.raw == "\n\n\n\n"
    with pytest.raises(ValueError, match="failed"):
        float(result)


def test_backend_failure_is_a_failure_not_zero():
    failure = BackendConnectionError("connection refused", backend="fake", attempts=4)
    result = ThinkingRewardJudge(backend=FakeBackend([failure])).invoke(ITEM)
    assert result.score is None
    assert result.error_type == "BackendConnectionError"
    assert "after 4 attempts" in result.error
    assert result.metadata["attempts"] == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"question": "q"},
        {"response": "r"},
        {"question": 1, "response": "r"},
        "text",
        None,
        {**ITEM, "image": 42},
        {**ITEM, "image": b"x", "images": [b"y"]},
    ],
)
def test_bad_input_is_a_typed_failure(bad):
    backend = FakeBackend(["1.0"])
    result = ThinkingRewardJudge(backend=backend).invoke(bad)
    assert result.score is None
    assert result.error_type in {"InputError", "ImageError"}
    assert backend.requests == []  # nothing was sent


def test_raise_on_error_raises_the_typed_error():
    judge = ThinkingRewardJudge(backend=FakeBackend(["junk"]), raise_on_error=True)
    with pytest.raises(ScoreParseError):
        judge.invoke(ITEM)
    with pytest.raises(InputError):
        judge.invoke({"question": "q"})
    failing = ThinkingRewardJudge(backend=FakeBackend([BackendError("boom")]), raise_on_error=True)
    with pytest.raises(BackendError, match="boom"):
        failing.invoke(ITEM)


def test_batch_keeps_order_and_is_one_backend_call():
    calls = []

    class CountingBackend(FakeBackend):
        def generate(self, requests, *, max_concurrency=None):
            calls.append((len(requests), max_concurrency))
            return super().generate(requests, max_concurrency=max_concurrency)

    # The reply depends on the request, so order is checked, not assumed.
    def reply(request):
        text = request.messages[1]["content"][0]["text"]
        return "0." + text.split("Reasoning process: r")[1].strip()[0]

    judge = ThinkingRewardJudge(backend=CountingBackend(reply))
    items = [{"question": "q", "response": f"r{i}"} for i in range(10)]
    results = judge.batch(items, config={"max_concurrency": 7})
    assert [r.score for r in results] == pytest.approx([i / 10 for i in range(10)])
    assert calls == [(10, 7)]


def test_batch_with_bad_items_keeps_alignment():
    backend = FakeBackend(["0.1", "0.2"])
    items = [ITEM, {"question": "q"}, ITEM]
    results = ThinkingRewardJudge(backend=backend).batch(items)
    assert [r.score for r in results] == [0.1, None, 0.2]
    assert len(backend.requests) == 2


def test_batch_return_exceptions_with_raise_on_error():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.1", "bad"]), raise_on_error=True)
    results = judge.batch([ITEM, ITEM], return_exceptions=True)
    assert results[0].score == 0.1
    assert isinstance(results[1], ScoreParseError)


async def test_async_paths_match_sync():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.4", "0.6", "0.8"]))
    single = await judge.ainvoke(ITEM)
    many = await judge.abatch([ITEM, {**ITEM, "image": png_bytes()}])
    assert single.score == 0.4
    assert [r.score for r in many] == [0.6, 0.8]


async def test_ainvoke_inside_a_running_loop_with_concurrency():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.9"]))
    results = await asyncio.gather(*(judge.ainvoke(ITEM) for _ in range(20)))
    assert all(r.score == 0.9 for r in results)


class Recorder(BaseCallbackHandler):
    def __init__(self):
        self.starts, self.ends, self.metadata = [], [], []

    def on_chain_start(self, serialized, inputs, *, run_id, metadata=None, **kwargs):
        self.starts.append(run_id)
        self.metadata.append(metadata or {})

    def on_chain_end(self, outputs, *, run_id, **kwargs):
        self.ends.append(outputs)


def test_every_input_gets_its_own_traced_run_with_ls_metadata():
    recorder = Recorder()
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]))
    judge.batch([ITEM, ITEM, ITEM], config={"callbacks": [recorder], "metadata": {"user": "x"}})
    assert len(set(recorder.starts)) == 3
    assert len(recorder.ends) == 3
    meta = recorder.metadata[0]
    assert meta["ls_provider"] == "fake"
    assert meta["ls_model_name"] == "fake-thinking-reward-model"
    assert meta["ls_model_type"] == "chat"
    assert meta["user"] == "x"


def test_constrained_sends_the_score_grid():
    backend = FakeBackend(["0.3"])
    backend.supports_structured_outputs = True
    ThinkingRewardJudge(backend=backend, constrained=True).invoke(ITEM)
    choice = backend.requests[0].extra["structured_outputs"]["choice"]
    assert choice == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]


def test_constrained_refused_where_it_would_be_ignored():
    from backends import OpenAICompatibleBackend

    backend = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ValueError, match="structured outputs"):
        ThinkingRewardJudge(backend=backend, constrained=True)
    backend.close()


def test_score_invariant():
    with pytest.raises(ValueError, match="either a score or an error"):
        ThinkingScore(score=None)
    with pytest.raises(ValueError, match="either a score or an error"):
        ThinkingScore(score=0.5, error="x")
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ThinkingScore(score=1.5)


def test_runs_are_traced_through_context_hooks_without_explicit_callbacks():
    from langchain_core.tracers.context import collect_runs

    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]))
    with collect_runs() as collector:
        judge.batch([ITEM, ITEM])
    assert len(collector.traced_runs) == 2
    run = collector.traced_runs[0]
    assert run.run_type == "llm"
    assert run.extra["metadata"]["ls_model_name"] == "fake-thinking-reward-model"


async def test_async_runs_are_traced_through_context_hooks():
    from langchain_core.tracers.context import collect_runs

    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]))
    with collect_runs() as collector:
        await judge.abatch([ITEM, ITEM, ITEM])
    assert len(collector.traced_runs) == 3


def test_lone_surrogates_are_an_input_error():
    backend = FakeBackend(["0.5"])
    result = ThinkingRewardJudge(backend=backend).invoke({"question": "q\udc80", "response": "r"})
    assert result.error_type == "InputError"
    assert "Unicode" in result.error
    assert backend.requests == []


class _InputRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.inputs: list = []
        self.outputs: list = []

    def on_chain_start(self, serialized, inputs, **kwargs):
        self.inputs.append(inputs)

    def on_chain_end(self, outputs, **kwargs):
        self.outputs.append(outputs)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_traces_describe_images_and_never_carry_their_bytes(asynchronous):
    import base64

    image = png_bytes((16, 16))
    items = [
        {**ITEM, "image": image},
        {**ITEM, "images": ["data:image/png;base64," + base64.b64encode(image).decode()]},
    ]
    recorder = _InputRecorder()
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]))
    config = {"callbacks": [recorder]}
    if asynchronous:
        results = asyncio.run(judge.abatch(items, config))
    else:
        results = judge.batch(items, config)
    assert [r.score for r in results] == [0.5, 0.5]
    shown = repr(recorder.inputs)
    assert recorder.inputs[0]["image"] == f"<image: {len(image)} bytes>"
    assert "data URL, image/png" in shown
    assert base64.b64encode(image).decode()[:40] not in shown
    assert "\\x89PNG" not in shown


def test_the_pipeline_follows_the_judges_settings():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    first, backend = judge.pipeline()
    assert backend is judge.backend
    assert judge.pipeline()[0] is first  # built once per settings
    judge.temperature = 0.5
    changed, _ = judge.pipeline()
    assert changed is not first
    assert changed.options.temperature == 0.5
    copy = judge.model_copy(update={"expected_score": True})
    assert copy.pipeline()[0].options.expected_score
    assert judge.pipeline()[0] is changed
    assert (
        judge.invoke({"question": "q", "response": "r"}).metadata["sampling"]["temperature"] == 0.5
    )


def test_a_cache_wraps_the_backend(tmp_path):
    from backends.caching import CachingBackend

    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]), cache=tmp_path / "c.sqlite")
    pipeline, backend = judge.pipeline()
    assert isinstance(backend, CachingBackend)
    assert backend.inner is judge.backend
    assert pipeline.options.cache_in_use
    item = {"question": "q", "response": "r"}
    assert [judge.invoke(item).metadata["cache"] for _ in range(2)] == ["miss", "hit"]


@pytest.mark.parametrize(("output_format", "expected"), [("bare", 16), ("answer_tag", 32)])
def test_default_max_tokens_fits_the_output_format(output_format, expected):
    backend = FakeBackend(["1.0"] if output_format == "bare" else ["<answer>1.0</answer>"])
    ThinkingRewardJudge(backend=backend, output_format=output_format).invoke(ITEM)
    assert backend.requests[0].max_tokens == expected
    backend = FakeBackend(["1.0"])
    ThinkingRewardJudge(backend=backend, output_format=output_format, max_tokens=5).invoke(ITEM)
    assert backend.requests[0].max_tokens == 5


class Replies(SyncBackend):
    """Answers the n-th request of a batch with the n-th completion given."""

    name = "replies"
    model = "m"

    def __init__(self, *completions: Completion) -> None:
        super().__init__()
        self.completions = completions

    def generate(self, requests, *, max_concurrency=None):
        return list(self.completions[: len(requests)])


@pytest.mark.parametrize("reason", ["length", "abort"])
@pytest.mark.parametrize("text", ["0", "1"])
def test_a_cut_off_answer_is_a_failure_not_its_text(reason, text):
    result = ThinkingRewardJudge(backend=Replies(Completion(text, finish_reason=reason))).invoke(
        ITEM
    )
    assert result.score is None
    assert result.error_type == "TruncatedAnswerError"
    assert result.raw == text
    with pytest.raises(TruncatedAnswerError):
        ThinkingRewardJudge(
            backend=Replies(Completion(text, finish_reason=reason)), raise_on_error=True
        ).invoke(ITEM)


async def test_a_malformed_completion_fails_alone_in_a_batch():
    backend = Replies(
        Completion("0.1", finish_reason="stop"),
        Completion("0.2", model=5, prompt_tokens="7"),  # type: ignore[arg-type]
        Completion("0.3", finish_reason="stop"),
    )
    judge = ThinkingRewardJudge(backend=backend)
    for results in (judge.batch([ITEM] * 3), await judge.abatch([ITEM] * 3)):
        assert [r.score for r in results] == [0.1, None, 0.3]
        assert results[1].error_type == "BackendResponseError"
        assert "malformed completion: prompt_tokens is a str" in (results[1].error or "")
