"""The judging dialogue without I/O, driven by hand: no backend call, no Runnable."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pipeline_stub import Capabilities

from backends.base import Completion, JudgeRequest, Result, TokenLogprob
from backends.errors import BackendTimeoutError
from judge.core.parse import SCORE_GRID
from judge.core.pipeline import JudgeOptions, JudgmentPipeline, advance
from judge.errors import ConstraintError, TruncatedAnswerError
from judge.failures import FailureKind
from judge.types import ThinkingScore

ITEM = {"question": "What is 2+2?", "response": "<think>2+2=4</think>4"}


def run(
    pipeline: JudgmentPipeline, inputs: list[Any], answer: Any
) -> tuple[list[list[JudgeRequest]], list[ThinkingScore | Exception]]:
    """Drive the dialogue, answering each request with ``answer(request)``."""
    asked: list[list[JudgeRequest]] = []
    steps = pipeline.run(inputs)
    done, value = advance(steps, None)
    while not done:
        asked.append(value)
        done, value = advance(steps, [answer(request) for request in value])
    return asked, value


def tok(token: str, top: dict[str, float]) -> TokenLogprob:
    pairs = tuple(sorted(((t, math.log(p)) for t, p in top.items()), key=lambda x: -x[1]))
    return TokenLogprob(token, dict(pairs)[token], pairs)


def test_one_round_one_request_per_valid_input_and_input_errors_as_values():
    pipeline = JudgmentPipeline(JudgeOptions(), Capabilities())
    asked, scores = run(pipeline, [ITEM, {"question": "q"}, ITEM], lambda r: Completion("0.7"))
    assert [len(requests) for requests in asked] == [2]
    good, bad, again = scores
    assert isinstance(good, ThinkingScore)
    assert good.score == 0.7
    assert isinstance(bad, ThinkingScore)
    assert bad.error_kind is FailureKind.INPUT
    assert "'response'" in (bad.error or "")
    assert isinstance(again, ThinkingScore)
    assert again.prompt_sha256 == good.prompt_sha256
    assert good.metadata["sampling"] == {
        "temperature": 0.0,
        "max_tokens": 16,
        "repetition_penalty": 1.0,
    }
    assert "cache" not in good.metadata


def test_a_backend_failure_keeps_its_kind_and_attempts():
    error = BackendTimeoutError("slow", attempts=3)
    _asked, [score] = run(JudgmentPipeline(JudgeOptions(), Capabilities()), [ITEM], lambda r: error)
    assert isinstance(score, ThinkingScore)
    assert score.error_kind is FailureKind.TIMEOUT
    assert score.metadata["attempts"] == 3


def test_raise_on_error_returns_the_typed_error_instead_of_a_score():
    pipeline = JudgmentPipeline(JudgeOptions(raise_on_error=True), Capabilities())
    _asked, [score] = run(pipeline, [ITEM], lambda r: Completion("maybe 0.7"))
    assert type(score).__name__ == "ScoreParseError"


def test_too_few_or_too_many_results_is_a_bug_not_a_judgment():
    for results in ([], [Completion("0.1"), Completion("0.2")]):
        steps = JudgmentPipeline(JudgeOptions(), Capabilities()).run([ITEM])
        advance(steps, None)
        with pytest.raises(RuntimeError, match=f"returned {len(results)} results for 1"):
            advance(steps, results)


def test_the_cache_is_reported_from_the_completion():
    pipeline = JudgmentPipeline(JudgeOptions(cache_in_use=True), Capabilities())
    answers = iter([Completion("0.3", cached=True), Completion("0.4"), BackendTimeoutError("t")])
    _asked, scores = run(pipeline, [ITEM, ITEM, ITEM, {}], lambda r: next(answers))
    assert [s.metadata.get("cache") for s in scores if isinstance(s, ThinkingScore)] == [
        "hit",
        "miss",
        "miss",
        None,  # never asked: nothing was looked up
    ]


def test_constraint_refuses_an_answer_outside_the_grid_and_the_cache_keeps_only_scores():
    pipeline = JudgmentPipeline(JudgeOptions(constrained=True), Capabilities())
    [[request]], [score] = run(pipeline, [ITEM], lambda r: Completion("0.75"))
    assert request.extra == {"structured_outputs": {"choice": list(SCORE_GRID)}}
    assert pipeline.constraint() == request.extra
    assert isinstance(score, ThinkingScore)
    assert score.error_kind is FailureKind.CONSTRAINT
    with pytest.raises(ConstraintError):
        pipeline.parse(Completion("0.75"))
    assert pipeline.cacheable(request, Completion("0.7"))
    assert not pipeline.cacheable(request, Completion("0.75"))
    assert not pipeline.cacheable(request, Completion("no score"))


def test_expected_score_asks_the_continuations_it_needs():
    """An answer "1.0" says nothing after "0": one continuation of "0" reads the rest."""
    first = tok("1", {"1": 0.6, "0": 0.4})
    answer = Completion("1.0", logprobs=(first, tok(".", {".": 1.0}), tok("0", {"0": 1.0})))
    rest = Completion(
        ".5", logprobs=(tok(".", {".": 0.5, "<|im_end|>": 0.5}), tok("5", {"5": 1.0}))
    )

    def reply(request: JudgeRequest) -> Result:
        return rest if request.continue_final_message else answer

    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), Capabilities())
    asked, [score] = run(pipeline, [ITEM], reply)
    assert [len(requests) for requests in asked] == [1, 1]
    continuation = asked[1][0]
    assert continuation.messages[-1] == {"role": "assistant", "content": "0"}
    assert pipeline.cacheable(continuation, rest)
    assert not pipeline.cacheable(continuation, Completion(".5"))  # no logprobs: useless
    assert isinstance(score, ThinkingScore)
    assert score.score == 1.0
    assert score.expected_score == pytest.approx(0.6 + 0.4 * 0.5 * 0.5)
    assert score.metadata["expected_score"]["sources"]["after_zero"] == "continuation"


def test_without_continuations_the_reason_is_recorded():
    class NoContinuation(Capabilities):
        supports_continuation = False

    first = tok("1", {"1": 0.6, "0": 0.4})
    answer = Completion("1.0", logprobs=(first, tok(".", {".": 1.0}), tok("0", {"0": 1.0})))
    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), NoContinuation())
    asked, [score] = run(pipeline, [ITEM], lambda r: answer)
    assert len(asked) == 1
    assert isinstance(score, ThinkingScore)
    assert score.expected_score is None
    assert "supports_continuation=False" in score.metadata["expected_score"]["reason"]


def test_requests_are_the_first_rounds():
    pipeline = JudgmentPipeline(JudgeOptions(), Capabilities())
    asked, _scores = run(pipeline, [ITEM, {}, ITEM], lambda r: Completion("0.1"))
    assert pipeline.requests([ITEM, {}, ITEM]) == asked[0]


# ------------------------------------------------------------------ finish_reason


@pytest.mark.parametrize("reason", ["length", "abort", "content_filter", "tool_calls", "LENGTH"])
@pytest.mark.parametrize("text", ["0", "1", "0.7", "<answer>1.0</answer>"])
def test_an_unfinished_answer_is_a_failure_whatever_its_text(reason, text):
    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), Capabilities())
    answer = Completion(text, finish_reason=reason, logprobs=(tok("0", {"0": 1.0}),))
    asked, [score] = run(pipeline, [ITEM], lambda r: answer)
    assert len(asked) == 1  # no continuation is asked for a failed judgment
    assert isinstance(score, ThinkingScore)
    assert score.score is None
    assert score.expected_score is None
    assert score.error_kind is FailureKind.PARSE
    assert score.error_type == "TruncatedAnswerError"
    assert "not finished" in (score.error or "")
    assert score.raw == text
    assert score.metadata["finish_reason"] == reason
    assert not pipeline.cacheable(asked[0][0], answer)
    raising = JudgmentPipeline(JudgeOptions(raise_on_error=True), Capabilities())
    _asked, [error] = run(raising, [ITEM], lambda r: answer)
    assert isinstance(error, TruncatedAnswerError)
    assert error.finish_reason == reason


@pytest.mark.parametrize("reason", [None, "stop", "STOP", "eos", "end_turn", "stop_sequence"])
def test_a_finished_answer_is_scored(reason):
    pipeline = JudgmentPipeline(JudgeOptions(), Capabilities())
    [[request]], [score] = run(pipeline, [ITEM], lambda r: Completion("0.7", finish_reason=reason))
    assert isinstance(score, ThinkingScore)
    assert score.score == 0.7
    assert pipeline.cacheable(request, Completion("0.7", finish_reason=reason))


def test_a_truncation_says_to_raise_max_tokens():
    pipeline = JudgmentPipeline(JudgeOptions(), Capabilities())
    with pytest.raises(TruncatedAnswerError, match="raise max_tokens"):
        pipeline.parse(Completion("0", finish_reason="length"))
    with pytest.raises(TruncatedAnswerError, match="server's log"):
        pipeline.parse(Completion("0", finish_reason="abort"))


def test_a_continuation_cut_by_its_max_tokens_is_read():
    """A continuation stops at its max_tokens on purpose: "length" is normal there."""
    first = tok("1", {"1": 0.6, "0": 0.4})
    answer = Completion(
        "1.0",
        finish_reason="stop",
        logprobs=(first, tok(".", {".": 1.0}), tok("0", {"0": 1.0})),
    )
    rest = Completion(
        ".5",
        finish_reason="length",
        logprobs=(tok(".", {".": 0.5, "<|im_end|>": 0.5}), tok("5", {"5": 1.0})),
    )
    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), Capabilities())
    asked, [score] = run(pipeline, [ITEM], lambda r: rest if r.continue_final_message else answer)
    assert [len(requests) for requests in asked] == [1, 1]
    assert isinstance(score, ThinkingScore)
    assert score.expected_score == pytest.approx(0.6 + 0.4 * 0.5 * 0.5)
    assert pipeline.cacheable(asked[1][0], rest)


def test_junk_cut_off_stays_a_parse_error():
    pipeline = JudgmentPipeline(JudgeOptions(), Capabilities())
    _asked, [score] = run(pipeline, [ITEM], lambda r: Completion("ok so", finish_reason="length"))
    assert isinstance(score, ThinkingScore)
    assert score.error_type == "ScoreParseError"
    assert score.metadata["finish_reason"] == "length"


# ------------------------------------------------------------------ malformed completions


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"model": 5}, "model is a int"),
        ({"model": {"name": "m"}}, "model is a dict"),
        ({"prompt_tokens": "12"}, "prompt_tokens is a str"),
        ({"completion_tokens": True}, "completion_tokens is a bool"),
        ({"finish_reason": ["stop"]}, "finish_reason is a list"),
        ({"latency_s": "fast"}, "latency_s is a str"),
        ({"logprobs": 3}, "logprobs is a int"),
        ({"attempts": "2"}, "attempts is a str"),
        ({"text": None}, "text is a NoneType"),
    ],
)
def test_a_malformed_completion_is_a_server_failure_of_its_own_judgment(fields, problem):
    """A backend that let a host's odd field through: that item fails, the rest goes on."""
    bad = Completion(**{"text": "0.7", **fields})
    answers = iter([Completion("0.2", finish_reason="stop"), bad, Completion("0.4")])
    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), Capabilities())
    asked, scores = run(pipeline, [ITEM, ITEM, ITEM], lambda r: next(answers))
    good, failed, other = scores
    assert [s.score for s in (good, other) if isinstance(s, ThinkingScore)] == [0.2, 0.4]
    assert isinstance(failed, ThinkingScore)
    assert failed.score is None
    assert failed.error_kind is FailureKind.SERVER
    assert failed.error_type == "BackendResponseError"
    assert f"malformed completion: {problem}" in (failed.error or "")
    assert not pipeline.cacheable(asked[0][1], bad)


def test_a_bug_while_scoring_is_that_judgments_internal_failure_not_a_crash():
    class Broken(Capabilities):
        def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
            raise KeyError("a bug")

    pipeline = JudgmentPipeline(JudgeOptions(), Broken())
    _asked, [score] = run(pipeline, [ITEM], lambda r: Completion("0.7"))
    assert isinstance(score, ThinkingScore)
    assert score.error_kind is FailureKind.INTERNAL
    assert score.error_type == "KeyError"
    raising = JudgmentPipeline(JudgeOptions(raise_on_error=True), Broken())
    _asked, [error] = run(raising, [ITEM], lambda r: Completion("0.7"))
    assert isinstance(error, KeyError)


@pytest.mark.parametrize("fields", [{"logprobs": 3}, {"text": None}, {"model": 1}])
def test_a_malformed_continuation_gives_no_expected_score_and_no_crash(fields):
    first = tok("1", {"1": 0.6, "0": 0.4})
    answer = Completion("1.0", logprobs=(first, tok(".", {".": 1.0}), tok("0", {"0": 1.0})))
    rest = Completion(**{"text": ".5", "logprobs": (tok(".", {".": 1.0}),), **fields})
    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), Capabilities())
    _asked, [score] = run(pipeline, [ITEM], lambda r: rest if r.continue_final_message else answer)
    assert isinstance(score, ThinkingScore)
    assert score.score == 1.0
    assert score.expected_score is None
    reason = score.metadata["expected_score"]["reason"]
    assert reason.startswith("the continuation request failed: a malformed completion")
