"""ThinkingRerank and best_of_n, with FakeBackend: order, ties, failures, one batch, traces."""

from __future__ import annotations

import base64
import io
import itertools
import json

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import collect_runs
from PIL import Image

from backends import FakeBackend, OpenAICompatibleBackend
from backends.errors import BackendError
from judge import (
    BestOfN,
    InputError,
    JudgmentError,
    RankedResponse,
    ThinkingRerank,
    ThinkingRewardJudge,
    best_of_n,
)
from judge.core.images import traced_input

QUESTION = "What is 2+2?"
SECRET = "sk-test-SECRET-0123456789"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def user_text(request) -> str:
    return request.messages[1]["content"][0]["text"]


def response_of(request) -> str:
    return user_text(request).split("Reasoning process: ", 1)[1].strip()


class CountingBackend(FakeBackend):
    """FakeBackend that also counts its batch calls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def generate(self, requests, *, max_concurrency=None):
        self.calls += 1
        return super().generate(requests, max_concurrency=max_concurrency)


def scored_by_text(table: dict[str, float | str]):
    """Answer each request by its response text: a score, or a raw (non-score) text."""

    def reply(request):
        value = table[response_of(request)]
        return value if isinstance(value, str) else f"{value:g}"

    return reply


def rerank_with(table, **kwargs) -> tuple[ThinkingRerank, CountingBackend]:
    backend = CountingBackend(scored_by_text(table))
    return ThinkingRerank(judge=ThinkingRewardJudge(backend=backend), **kwargs), backend


def test_sorted_best_first_with_scores_attached():
    rerank, _ = rerank_with({"a": 0.3, "b": 0.9, "c": 0.6})
    ranked = rerank.invoke({"question": QUESTION, "responses": ["a", "b", "c"]})
    assert [r.response for r in ranked] == ["b", "c", "a"]
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert [r.index for r in ranked] == [1, 2, 0]
    assert [r.value for r in ranked] == [pytest.approx(0.9), pytest.approx(0.6), pytest.approx(0.3)]
    assert all(isinstance(r, RankedResponse) for r in ranked)
    assert ranked[0].score.score == pytest.approx(0.9)
    assert ranked[0].score.raw == "0.9"


def test_one_batched_judge_call_per_rerank():
    rerank, backend = rerank_with({str(i): i / 10 for i in range(8)})
    rerank.invoke({"question": QUESTION, "responses": [str(i) for i in range(8)]})
    assert backend.calls == 1
    assert len(backend.requests) == 8
    rerank.invoke({"question": QUESTION, "responses": ["1", "2"]})
    assert backend.calls == 2
    assert len(backend.requests) == 10


async def test_async_is_one_batched_call_too():
    rerank, backend = rerank_with({"a": 0.3, "b": 0.9, "c": 0.6})
    ranked = await rerank.ainvoke({"question": QUESTION, "responses": ["a", "b", "c"]})
    assert [r.response for r in ranked] == ["b", "c", "a"]
    assert backend.calls == 1  # agenerate runs generate once in a worker thread


def test_ties_keep_input_order():
    rerank, _ = rerank_with({"a": 0.5, "b": 0.8, "c": 0.5, "d": 0.8, "e": 0.5})
    ranked = rerank.invoke({"question": QUESTION, "responses": ["a", "b", "c", "d", "e"]})
    assert [r.response for r in ranked] == ["b", "d", "a", "c", "e"]
    assert [r.rank for r in ranked] == [1, 2, 3, 4, 5]


def test_failed_judgments_come_last_never_as_zero():
    rerank, backend = rerank_with({"a": 0.0, "b": "no idea", "c": 0.2, "d": "???"})
    ranked = rerank.invoke({"question": QUESTION, "responses": ["a", "b", "c", "d", 42]})
    assert [r.response for r in ranked] == ["c", "a", "b", "d", 42]
    assert [r.rank for r in ranked] == [1, 2, None, None, None]
    assert ranked[1].value == 0.0  # a real 0 is ranked
    for failed in ranked[2:]:
        assert failed.value is None
        assert failed.score.score is None
        assert failed.score.error
    assert ranked[2].score.error_type == "ScoreParseError"
    assert ranked[4].score.error_type == "InputError"  # 42 is not a response...
    assert len(backend.requests) == 4  # ...and was not sent


def test_backend_error_is_a_failure_too():
    backend = FakeBackend(["0.4", BackendError("boom", backend="fake"), "0.6"])
    ranked = ThinkingRerank(judge=ThinkingRewardJudge(backend=backend)).invoke(
        {"question": QUESTION, "responses": ["a", "b", "c"]}
    )
    assert [r.response for r in ranked] == ["c", "a", "b"]
    assert ranked[2].score.error_type == "BackendError"


def test_judge_that_raises_on_error_keeps_the_batch():
    backend = FakeBackend(["0.4", "junk", "0.6"])
    judge = ThinkingRewardJudge(backend=backend, raise_on_error=True)
    ranked = ThinkingRerank(judge=judge).invoke(
        {"question": QUESTION, "responses": ["a", "b", "c"]}
    )
    assert [r.rank for r in ranked] == [1, 2, None]
    assert ranked[2].score.error_type == "ScoreParseError"


def test_rerank_and_best_of_n_take_any_judge_runnable():
    backend = CountingBackend(scored_by_text({"a": 0.3, "b": 0.9}))
    bound = ThinkingRewardJudge(backend=backend).with_config({"run_name": "bound-judge"})
    ranked = ThinkingRerank(judge=bound).invoke({"question": QUESTION, "responses": ["a", "b"]})
    assert [r.response for r in ranked] == ["b", "a"]
    assert backend.calls == 1  # still one batched call through the binding
    assert best_of_n(sampler(["a", "b"]), bound, n=2).invoke(QUESTION).content == "b"


def distribution_by_text(table):
    def reply(request):
        text = user_text(request).split("Reasoning process: ", 1)[1].strip()
        return table[text]

    return reply


def test_expected_score_preferred_and_breaks_greedy_ties():
    # Both answer 0.6 greedily; "b" leans higher, so its expected score is higher.
    table = {"a": {0.6: 0.6, 0.4: 0.4}, "b": {0.6: 0.6, 0.9: 0.4}, "c": {0.7: 1.0}}
    backend = FakeBackend(scores=distribution_by_text(table))
    judge = ThinkingRewardJudge(backend=backend, expected_score=True)
    ranked = ThinkingRerank(judge=judge).invoke(
        {"question": QUESTION, "responses": ["a", "b", "c"]}
    )
    assert [r.response for r in ranked] == ["b", "c", "a"]
    assert ranked[0].value == pytest.approx(0.72)
    assert ranked[0].score.score == pytest.approx(0.6)
    assert ranked[2].value == pytest.approx(0.52)

    greedy = ThinkingRerank(judge=judge, use_expected_score=False).invoke(
        {"question": QUESTION, "responses": ["a", "b", "c"]}
    )
    assert [r.response for r in greedy] == ["c", "a", "b"]  # 0.7, then the 0.6 tie in order
    assert greedy[1].value == pytest.approx(0.6)


def test_candidates_of_every_kind_are_read_and_returned_as_given():
    table = {
        "<think>t</think><answer>1</answer>": 0.2,
        "<think>2+2=4</think><answer>4</answer>": 0.9,
        "gen": 0.5,
        "chatgen": 0.4,
        "dict": 0.3,
    }
    rerank, _ = rerank_with(table)
    message = AIMessage("<answer>4</answer>", additional_kwargs={"reasoning_content": "2+2=4"})
    candidates = [
        "<think>t</think><answer>1</answer>",
        message,
        Generation(text="gen"),
        ChatGeneration(message=AIMessage("chatgen")),
        {"role": "assistant", "content": "dict"},
    ]
    ranked = rerank.invoke({"question": QUESTION, "responses": candidates})
    assert ranked[0].response is message
    assert ranked[0].text == "<think>2+2=4</think><answer>4</answer>"
    assert [r.index for r in ranked] == [1, 2, 3, 4, 0]


def test_question_as_messages_and_images_reach_the_judge():
    backend = FakeBackend(["0.5"])
    image = png_bytes()
    ThinkingRerank(judge=ThinkingRewardJudge(backend=backend)).invoke(
        {"question": [HumanMessage(QUESTION)], "responses": ["a", "b"], "image": image}
    )
    for request in backend.requests:
        assert f"Question: <image> {QUESTION}" in user_text(request)
        assert request.messages[1]["content"][1]["image_url"]["url"].startswith("data:image/png")


def test_top_n_and_empty():
    rerank, backend = rerank_with({"a": 0.3, "b": 0.9, "c": 0.6}, top_n=2)
    ranked = rerank.invoke({"question": QUESTION, "responses": ["a", "b", "c"]})
    assert [r.response for r in ranked] == ["b", "c"]
    assert rerank.invoke({"question": QUESTION, "responses": []}) == []
    assert backend.calls == 1  # nothing to judge: no call


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("just a string", "question"),
        ({"responses": ["a"]}, "question"),
        ({"question": QUESTION}, "responses"),
        ({"question": QUESTION, "responses": "a"}, "responses"),
    ],
)
def test_malformed_input_raises_input_error(bad, match):
    rerank, _ = rerank_with({})
    with pytest.raises(InputError, match=match):
        rerank.invoke(bad)


def test_rerank_runs_are_traced_with_judge_children_and_no_image_bytes():
    rerank, _ = rerank_with({"a": 0.3, "b": 0.9})
    image = png_bytes()
    with collect_runs() as collected:
        rerank.invoke(
            {"question": QUESTION, "responses": ["a", "b"], "image": image},
            {"run_name": "my-rerank"},
        )
    (root,) = collected.traced_runs
    assert root.name == "my-rerank"
    assert root.run_type == "chain"
    assert root.inputs["image"] == f"<image: {len(image)} bytes>"
    assert [child.run_type for child in root.child_runs] == ["llm", "llm"]
    assert root.child_runs[0].extra["metadata"]["ls_provider"] == "fake"
    encoded = base64.b64encode(image).decode()
    assert encoded[:40] not in json.dumps(root.inputs, default=str)
    assert root.outputs["output"][0].response == "b"


def test_traced_input_hides_images():
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    shown = traced_input(
        {
            "question": QUESTION,
            "images": [
                png_bytes(),
                data_url,
                "https://host.invalid/a.png?X-Amz-Signature=abc",
                "chart.png",
            ],
        }
    )
    assert shown["question"] == QUESTION
    assert shown["images"][0].startswith("<image: ")
    assert shown["images"][1].startswith("<image: data URL, image/png")
    assert shown["images"][2] == "https://host.invalid/a.png?..."  # the query elided
    assert shown["images"][3] == "chart.png"
    assert traced_input("plain") == "plain"
    pil = traced_input({"image": Image.new("RGB", (3, 4))})
    assert pil["image"] == "<image: Image 3x4>"


# --------------------------------------------------------------------------- best of n


def sampler(texts):
    """A generator Runnable that gives the next text on every call."""
    cycle = itertools.cycle(texts)
    return RunnableLambda(lambda _input: AIMessage(next(cycle)))


def test_best_of_n_samples_n_and_returns_the_best():
    judge_backend = CountingBackend(scored_by_text({"a": 0.2, "b": 0.8, "c": 0.5, "d": 0.8}))
    judge = ThinkingRewardJudge(backend=judge_backend)
    best = best_of_n(sampler(["a", "b", "c", "d"]), judge, n=4)
    assert isinstance(best, BestOfN)
    message = best.invoke(QUESTION)
    assert isinstance(message, AIMessage)
    assert message.content == "b"  # tied with "d", sampled first
    assert judge_backend.calls == 1
    assert len(judge_backend.requests) == 4
    assert all(f"Question: {QUESTION}" in user_text(r) for r in judge_backend.requests)


async def test_best_of_n_async_and_ranking():
    judge = ThinkingRewardJudge(backend=FakeBackend(scored_by_text({"a": 0.2, "b": 0.8})))
    best = best_of_n(sampler(["a", "b"]), judge, n=2, return_ranking=True)
    ranking = await best.ainvoke({"question": QUESTION})
    assert [r.response.content for r in ranking] == ["b", "a"]
    assert ranking[0].score.score == pytest.approx(0.8)


def test_best_of_n_with_a_chat_model_and_messages_input():
    llm = GenericFakeChatModel(messages=iter([AIMessage("a"), AIMessage("b"), AIMessage("c")]))
    backend = FakeBackend(scored_by_text({"a": 0.1, "b": 0.2, "c": 0.9}))
    best = best_of_n(llm, ThinkingRewardJudge(backend=backend), n=3)
    assert best.invoke([HumanMessage(QUESTION)]).content == "c"
    assert all(f"Question: {QUESTION}" in user_text(r) for r in backend.requests)


def test_best_of_n_custom_question_and_images():
    backend = FakeBackend(["0.5"])
    best = best_of_n(
        sampler(["a"]),
        ThinkingRewardJudge(backend=backend),
        n=2,
        question=lambda x: x["task"]["text"],
        images=lambda x: {"image": x["task"]["chart"]},
    )
    best.invoke({"task": {"text": QUESTION, "chart": png_bytes()}})
    assert f"Question: <image> {QUESTION}" in user_text(backend.requests[0])


def test_best_of_n_when_nothing_can_be_judged_raises():
    judge = ThinkingRewardJudge(backend=FakeBackend(["no score here"]))
    with pytest.raises(JudgmentError, match="none of the 3 responses could be judged"):
        best_of_n(sampler(["a", "b", "c"]), judge, n=3).invoke(QUESTION)


def test_best_of_n_drops_failed_samples_and_raises_when_all_fail():
    calls = itertools.count()

    def flaky(_input):
        if next(calls) % 2 == 0:
            raise RuntimeError("sampling failed")
        return "ok"

    backend = FakeBackend(["0.7"])
    best = best_of_n(RunnableLambda(flaky), ThinkingRewardJudge(backend=backend), n=4)
    assert best.invoke(QUESTION) == "ok"
    assert len(backend.requests) == 2

    def broken(_input):
        raise RuntimeError("sampling failed")

    with pytest.raises(RuntimeError, match="sampling failed"):
        best_of_n(RunnableLambda(broken), ThinkingRewardJudge(backend=backend), n=2).invoke("q")


def test_best_of_n_traces_sampling_and_rerank_under_one_run():
    judge = ThinkingRewardJudge(backend=FakeBackend(scored_by_text({"a": 0.2, "b": 0.8})))
    with collect_runs() as collected:
        best_of_n(sampler(["a", "b"]), judge, n=2).invoke(QUESTION)
    (root,) = collected.traced_runs
    assert root.run_type == "chain"
    names = [child.name for child in root.child_runs]
    assert names.count("ThinkingRerank") == 1
    assert len(names) == 3  # two samples and the rerank
    (rerank_run,) = [c for c in root.child_runs if c.name == "ThinkingRerank"]
    assert [c.run_type for c in rerank_run.child_runs] == ["llm", "llm"]


def test_n_must_be_positive():
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]))
    with pytest.raises(ValueError, match="n"):
        best_of_n(sampler(["a"]), judge, n=0)


# --------------------------------------------------------------------------- serialisation


def test_dumps_keeps_secrets_and_images_out():
    backend = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", api_key=SECRET)
    judge = ThinkingRewardJudge(backend=backend, constrained=False)
    rerank = ThinkingRerank(judge=judge)
    chain = RunnableLambda(lambda q: {"question": q, "responses": ["a"]}) | rerank
    best = best_of_n(sampler(["a"]), judge, n=2)
    for runnable in (judge, rerank, chain, best, judge.as_langsmith_evaluator()):
        text = dumps(runnable)
        assert SECRET not in text
        assert "base64" not in text
        assert json.loads(text)["lc"] == 1  # a JSON round trip
        assert SECRET not in repr(runnable)
    assert "ThinkingRerank" in dumps(chain)
