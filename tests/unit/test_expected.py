"""The expected score: its arithmetic over digit tokens, and how the judge gathers it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import FakeBackend
from backends.base import Backend, Completion, JudgeRequest, SyncBackend, TokenLogprob
from backends.errors import BackendConnectionError
from judge import ThinkingRewardJudge
from judge.core.expected import (
    END,
    MAX_LOGPROB,
    ScoreTrace,
    expected_score,
    position_mass,
    token_class,
    trace_answer,
    vet,
)
from judge.core.parse import constraint_choices
from judge.failures import FailureKind


def tok(token: str, top: dict[str, float] | None = None) -> TokenLogprob:
    """A position whose alternatives have the given probabilities."""
    top = top or {token: 1.0}
    pairs = tuple(sorted(((t, math.log(p)) for t, p in top.items()), key=lambda x: -x[1]))
    return TokenLogprob(token, dict(pairs).get(token, -math.inf), pairs)


# ------------------------------------------------------------------ the arithmetic


def test_token_classes():
    assert [token_class(t) for t in "0123456789"] == list("0123456789")
    assert token_class(".") == "."
    for end in ("<|im_end|>", "<|endoftext|>", "</", "<", "</answer>", "\n", " "):
        assert token_class(end) == END
    for other in ("", "00", "0.", ".5", "a", "**", " 0"):
        assert token_class(other) is None


def test_greedy_one():
    # "1" greedy: P(1) = 0.6, P(0) = 0.4; after "0": always "."; digits 0.5 / 0.7 equally.
    value = expected_score({"1": 0.6, "0": 0.4}, {".": 1.0}, {"5": 0.5, "7": 0.5})
    assert value == pytest.approx(0.6 + 0.4 * 0.6)


def test_greedy_zero_point():
    assert expected_score({"0": 1.0}, {".": 1.0}, {"3": 0.25, "9": 0.75}) == pytest.approx(0.75)


def test_the_answer_zero_counts_as_zero():
    # After "0", half the mass ends the answer (score 0), half goes on to "0.8".
    assert expected_score({"0": 1.0}, {".": 0.5, END: 0.5}, {"8": 1.0}) == pytest.approx(0.4)
    # "0.0" is 0 too.
    assert expected_score({"0": 1.0}, {".": 1.0}, {"0": 0.5, "4": 0.5}) == pytest.approx(0.2)


def test_mass_outside_the_grid_is_renormalised_away():
    inside = expected_score({"1": 0.3, "0": 0.3}, {".": 0.2, END: 0.2}, {"6": 0.1, "2": 0.1})
    noisy = expected_score(
        {"1": 0.3, "0": 0.3, "other": 0.4, "5": 0.2},
        {".": 0.2, END: 0.2, "other": 0.6},
        {"6": 0.1, "2": 0.1, "other": 0.8},
    )
    assert inside == pytest.approx(noisy) == pytest.approx(0.5 + 0.5 * 0.5 * 0.4)


def test_certain_one_needs_nothing_else():
    assert expected_score({"1": 0.9}) == 1.0


def test_certain_answer_zero_needs_no_digits():
    assert expected_score({"0": 1.0}, {END: 1.0}) == 0.0


@pytest.mark.parametrize(
    ("first", "after_zero", "after_point", "message"),
    [
        ({"other": 1.0}, None, None, "neither '0' nor '1'"),
        ({}, None, None, "neither '0' nor '1'"),
        ({"0": 0.5, "1": 0.5}, None, None, "after '0' is unknown"),
        ({"0": 1.0}, {"other": 1.0}, None, "neither '.' nor an end"),
        ({"0": 1.0}, {".": 1.0}, None, "after '0.' is unknown"),
        ({"0": 1.0}, {".": 1.0}, {"other": 1.0}, "no digit"),
    ],
)
def test_missing_or_empty_positions_are_refused(first, after_zero, after_point, message):
    with pytest.raises(ValueError, match=message):
        expected_score(first, after_zero, after_point)


def test_position_mass_reads_the_top_alternatives():
    entry = TokenLogprob(
        "0",
        math.log(0.5),
        (("0", math.log(0.5)), ("1", math.log(0.2)), ("x", math.log(0.1)), ("y", -math.inf)),
    )
    mass = position_mass(entry)
    assert mass == pytest.approx({"0": 0.5, "1": 0.2, "other": 0.1})


def test_position_mass_adds_a_chosen_token_missing_from_the_top():
    entry = TokenLogprob("1", math.log(0.05), (("0", math.log(0.9)),))
    assert position_mass(entry) == pytest.approx({"0": 0.9, "1": 0.05})


def test_two_end_tokens_add_up():
    entry = tok("<|im_end|>", {"<|im_end|>": 0.3, "<|endoftext|>": 0.3, ".": 0.4})
    assert position_mass(entry) == pytest.approx({END: 0.6, ".": 0.4})


def test_trace_of_a_bare_answer():
    logprobs = [
        tok("0", {"0": 0.7, "1": 0.3}),
        tok(".", {".": 0.9, "<|im_end|>": 0.1}),
        tok("7", {"7": 0.6, "8": 0.4}),
    ]
    trace = trace_answer(logprobs)
    assert trace.prefix == ""
    assert trace.first == pytest.approx({"0": 0.7, "1": 0.3})
    assert trace.after_zero == pytest.approx({".": 0.9, END: 0.1})
    assert trace.after_point == pytest.approx({"7": 0.6, "8": 0.4})
    assert trace.missing() is None
    assert trace.sources == {"first": "answer", "after_zero": "answer", "after_point": "answer"}


def test_trace_skips_the_tag_tokens():
    logprobs = [tok("<"), tok("answer"), tok(">"), tok("1", {"1": 0.8, "0": 0.2}), tok(".")]
    trace = trace_answer(logprobs)
    assert trace.prefix == "<answer>"
    assert trace.first == pytest.approx({"1": 0.8, "0": 0.2})
    assert trace.after_zero is None
    assert trace.missing() == "0"


def test_trace_of_answer_zero_misses_the_digits_only():
    trace = trace_answer([tok("0", {"0": 1.0}), tok("<|im_end|>", {"<|im_end|>": 0.6, ".": 0.4})])
    assert trace.missing() == "0."
    trace.add_continuation("0.", [tok("5", {"5": 1.0})])
    assert trace.missing() is None
    assert trace.sources["after_point"] == "continuation"


def test_trace_needs_nothing_when_zero_is_impossible():
    trace = trace_answer([tok("1", {"1": 1.0}), tok("."), tok("0")])
    assert trace.missing() is None
    assert expected_score(trace.first) == 1.0


def test_trace_without_digits_is_none():
    assert trace_answer([tok("hello"), tok(" world")]) is None
    assert trace_answer([]) is None


def test_continuation_of_zero_gives_both_missing_positions():
    trace = ScoreTrace(prefix="", first={"1": 0.5, "0": 0.5})
    trace.add_continuation("0", [tok(".", {".": 0.8, "<|im_end|>": 0.2}), tok("4", {"4": 1.0})])
    assert trace.missing() is None
    assert expected_score(trace.first, trace.after_zero, trace.after_point) == pytest.approx(
        0.5 + 0.5 * 0.8 * 0.4
    )


def test_constraint_choices():
    assert constraint_choices() == ["0", *(f"0.{d}" for d in range(1, 10)), "1.0"]
    tagged = constraint_choices("<answer>", "</answer>")
    assert tagged[0] == "<answer>0</answer>"
    assert tagged[-1] == "<answer>1.0</answer>"
    assert constraint_choices(after="0") == ["", *(f".{d}" for d in range(1, 10))]
    assert constraint_choices(after="0.") == [str(d) for d in range(1, 10)]
    assert constraint_choices("", "</answer>", after="0.")[0] == "1</answer>"


# ------------------------------------------------------------------ through the judge


def inputs(n: int) -> list[dict[str, str]]:
    return [{"question": f"question {i}", "response": f"response {i}"} for i in range(n)]


@pytest.mark.parametrize("output_format", ["bare", "answer_tag"])
@pytest.mark.parametrize("constrained", [False, True])
def test_expected_scores_match_the_distributions(output_format, constrained):
    dists = [
        {0.6: 0.5, 0.8: 0.5},  # greedy "0.6": no continuation
        {1.0: 0.7, 0.4: 0.3},  # greedy "1.0": one continuation of "0"
        {0.0: 0.5, 0.3: 0.5},  # greedy "0": one continuation of "0."
        {0.0: 1.0},  # certain 0
        {1.0: 1.0},  # certain 1
    ]
    backend = FakeBackend(scores=dists)
    judge = ThinkingRewardJudge(
        backend=backend, expected_score=True, output_format=output_format, constrained=constrained
    )
    results = judge.batch(inputs(5))
    means = [sum(s * p for s, p in d.items()) for d in dists]
    assert [r.expected_score for r in results] == pytest.approx(means)
    assert [r.score for r in results] == [0.6, 1.0, 0.0, 0.0, 1.0]
    assert len(backend.requests) == 5 + 2  # two continuations in all
    first_cont, second_cont = backend.requests[5:]
    prefix = "<answer>" if output_format == "answer_tag" else ""
    assert first_cont.continue_final_message
    assert second_cont.continue_final_message
    assert first_cont.messages[:-1] == backend.requests[1].messages  # the prompt's prefix
    assert first_cont.messages[-1] == {"role": "assistant", "content": prefix + "0"}
    assert second_cont.messages[-1] == {"role": "assistant", "content": prefix + "0."}
    assert (first_cont.max_tokens, second_cont.max_tokens) == (2, 1)
    assert first_cont.top_logprobs == 20
    if constrained:
        suffix = "</answer>" if output_format == "answer_tag" else ""
        choice = first_cont.extra["structured_outputs"]["choice"]
        assert choice == [suffix, *(f".{d}{suffix}" for d in range(1, 10))]
    else:
        assert not first_cont.extra
    meta = results[1].metadata["expected_score"]
    assert meta["sources"]["after_zero"] == "continuation"
    assert meta["continuations"][0]["after"] == prefix + "0"
    assert meta["first"] == pytest.approx({"0": 0.3, "1": 0.7})


def test_expected_score_is_recomputable_from_its_metadata():
    judge = ThinkingRewardJudge(
        backend=FakeBackend(scores=[{1.0: 0.2, 0.5: 0.5, 0: 0.3}]), expected_score=True
    )
    result = judge.invoke(inputs(1)[0])
    meta = result.metadata["expected_score"]
    again = expected_score(meta["first"], meta.get("after_zero"), meta.get("after_point"))
    assert result.expected_score == pytest.approx(again, abs=1e-9)
    assert result.expected_score == pytest.approx(0.2 + 0.25)


def test_off_by_default_and_no_logprobs_asked():
    backend = FakeBackend(scores=[0.4])
    result = ThinkingRewardJudge(backend=backend).invoke(inputs(1)[0])
    assert result.expected_score is None
    assert backend.requests[0].top_logprobs is None
    assert "expected_score" not in result.metadata


class NoLogprobs(SyncBackend):
    name = "no-logprobs"
    model = "m"

    def generate(self, requests, *, max_concurrency=None):
        return [Completion(text="0.5") for _ in requests]


def test_a_backend_without_logprobs_gives_none_with_the_reason():
    result = ThinkingRewardJudge(backend=NoLogprobs(), expected_score=True).invoke(inputs(1)[0])
    assert result.score == 0.5
    assert result.expected_score is None
    assert result.metadata["expected_score"]["reason"] == "the backend returned no logprobs"


def test_a_backend_that_cannot_continue_gives_none_with_the_reason():
    backend = FakeBackend(scores=[{1.0: 0.6, 0.5: 0.4}])
    backend.supports_continuation = False
    judge = ThinkingRewardJudge(backend=backend, expected_score=True)
    result = judge.invoke(inputs(1)[0])
    assert result.score == 1.0
    assert result.expected_score is None
    assert "cannot continue" in result.metadata["expected_score"]["reason"]
    assert len(backend.requests) == 1
    # An answer on the "0." path needs no continuation, so it still gets one.
    backend = FakeBackend(scores=[{0.4: 0.5, 0.6: 0.5}])
    backend.supports_continuation = False
    judge = ThinkingRewardJudge(backend=backend, expected_score=True)
    assert judge.invoke(inputs(1)[0]).expected_score == pytest.approx(0.5)


def test_a_failed_continuation_gives_none_with_the_reason():
    def reply(request: JudgeRequest):
        if request.continue_final_message:
            return BackendConnectionError("connection refused")
        return {1.0: 0.6, 0.5: 0.4}

    judge = ThinkingRewardJudge(backend=FakeBackend(scores=reply), expected_score=True)
    result = judge.invoke(inputs(1)[0])
    assert result.score == 1.0
    assert result.expected_score is None
    assert "continuation request failed" in result.metadata["expected_score"]["reason"]


def test_a_failed_judgment_has_no_expected_score_and_no_continuation():
    backend = FakeBackend(["not a score"])
    result = ThinkingRewardJudge(backend=backend, expected_score=True).invoke(inputs(1)[0])
    assert result.score is None
    assert result.expected_score is None
    assert result.error_type == "ScoreParseError"
    assert len(backend.requests) == 1


async def test_async_path_asks_the_same_continuations():
    dists = [{1.0: 0.7, 0.4: 0.3}, {0.0: 0.5, 0.3: 0.5}]
    backend = FakeBackend(scores=dists)
    judge = ThinkingRewardJudge(backend=backend, expected_score=True)
    results = await judge.abatch(inputs(2))
    assert [r.expected_score for r in results] == pytest.approx([0.82, 0.15])
    assert len(backend.requests) == 4


# ------------------------------------------------------------------ constraint and provenance


class Unconstrained(SyncBackend):
    """Claims structured outputs but answers outside them (a server that ignored them)."""

    name = "ignores-constraints"
    model = "m"
    supports_structured_outputs = True

    def generate(self, requests, *, max_concurrency=None):
        return [Completion(text="0.75") for _ in requests]


def test_an_answer_outside_the_constraint_is_a_failure_not_a_score():
    result = ThinkingRewardJudge(backend=Unconstrained(), constrained=True).invoke(inputs(1)[0])
    assert result.score is None
    assert result.error_kind is FailureKind.CONSTRAINT
    assert result.error_type == "ConstraintError"
    assert "did not honour structured outputs" in result.error


def test_provenance_metadata():
    backend = FakeBackend(scores=[0.3])
    judge = ThinkingRewardJudge(backend=backend, constrained=True, expected_score=True)
    result = judge.invoke(inputs(1)[0])
    meta = result.metadata
    assert meta["template_version"] == "sophiavl-r1-trm-card/1"
    assert meta["output_format"] == "bare"
    assert meta["backend"] == "fake"
    assert meta["model"] == "fake-thinking-reward-model"
    assert meta["sampling"] == {
        "temperature": 0.0,
        "max_tokens": 16,
        "repetition_penalty": 1.0,
        "logprobs": True,
        "top_logprobs": 20,
        "structured_outputs": {"choice": constraint_choices()},
    }
    assert result.prompt_sha256
    assert len(result.prompt_sha256) == 64
    tagged = ThinkingRewardJudge(backend=backend, output_format="answer_tag").invoke(inputs(1)[0])
    assert tagged.metadata["template_version"] == "sophiavl-r1-trm-answer-tag/1"
    assert tagged.metadata["sampling"]["max_tokens"] == 32
    assert tagged.raw == "<answer>0.3</answer>"
    assert tagged.score == 0.3


def test_backend_base_records_request_sampling():
    request = JudgeRequest(messages=[], continue_final_message=True, top_logprobs=5)
    assert Backend.sent_sampling(FakeBackend(), request) == {
        "temperature": 0.0,
        "max_tokens": 16,
        "repetition_penalty": 1.0,
        "logprobs": True,
        "top_logprobs": 5,
        "continue_final_message": True,
    }


# ------------------------------------------------------------------ logprobs from a host


class Scripted(SyncBackend):
    """Answers a judgment with ``answer`` and a continuation with ``rest``."""

    name = "scripted"
    model = "m"
    supports_continuation = True

    def __init__(self, answer: Completion, rest: Completion | None = None) -> None:
        self.answer, self.rest = answer, rest

    def generate(self, requests, *, max_concurrency=None):
        return [
            (self.rest or self.answer) if r.continue_final_message else self.answer
            for r in requests
        ]


def raw(token: object, logprob: object, top: tuple = ()) -> TokenLogprob:
    return TokenLogprob(token, logprob, top)  # type: ignore[arg-type]  # what a host may send


SEVEN = (tok("0", {"0": 0.9, "1": 0.1}), tok(".", {".": 1.0}), tok("7", {"7": 0.5, "6": 0.5}))


def judged(answer: Completion, rest: Completion | None = None):
    judge = ThinkingRewardJudge(backend=Scripted(answer, rest), expected_score=True)
    return judge.invoke(inputs(1)[0])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (raw("0", math.inf, (("0", math.inf),)), "inf"),
        (raw("0", 0.0, (("0", math.inf), ("1", -1.0))), "inf"),
        (raw("0", math.nan, (("0", -0.1),)), "nan"),
        (raw("0", 0.5, (("0", 0.5),)), "0.5"),
        (raw("0", -0.1, (("0", -0.1), ("1", 2.0))), "2.0"),
        (raw("0", "-0.1", (("0", -0.1),)), "not a number (str)"),
        (raw("0", None, (("0", -0.1),)), "not a number (NoneType)"),
        (raw("0", True, (("0", -0.1),)), "not a number (bool)"),
        (raw("0", -0.1, ((7, -0.1),)), "not text (int)"),
        (raw(["0"], -0.1, ()), "not text (list)"),
        (raw("0", -0.1, (("0", -0.1), ("1", -0.1), ("2", -0.1))), "add up to a probability"),
        (raw("0", -0.1, ("0",)), "not a token with its logprob"),
    ],
)
def test_impossible_logprobs_give_no_expected_score_but_the_reason(entry, message):
    result = judged(Completion("0.7", logprobs=(entry, *SEVEN[1:])))
    assert result.score == 0.7
    assert result.expected_score is None  # never 0.0 beside 0.7
    reason = result.metadata["expected_score"]["reason"]
    assert reason.startswith("the logprobs of the answer are unusable: position 0")
    assert message in reason


def test_minus_infinity_and_float_noise_above_zero_are_probabilities():
    first = raw("0", 4e-7, (("0", 4e-7), ("1", -math.inf)))
    result = judged(Completion("0.7", logprobs=(first, *SEVEN[1:])))
    assert result.expected_score == pytest.approx(0.65)
    assert "reason" not in result.metadata["expected_score"]
    assert "inconsistent" not in result.metadata["expected_score"]
    assert vet("0.7", (first, *SEVEN[1:])) == (None, None)
    assert vet("0", (raw("0", 2e-6, (("0", 2e-6),)),))[0] is not None


def test_impossible_logprobs_of_a_continuation_give_no_expected_score():
    answer = Completion("1.0", logprobs=(tok("1", {"1": 0.6, "0": 0.4}), tok("."), tok("0")))
    rest = Completion(".5", logprobs=(raw(".", math.inf, ((".", math.inf),)), tok("5")))
    result = judged(answer, rest)
    assert result.score == 1.0
    assert result.expected_score is None
    meta = result.metadata["expected_score"]
    assert meta["reason"].startswith(
        "the logprobs of the continuation after '0' are unusable: position 0"
    )
    assert len(meta["continuations"]) == 1


@pytest.mark.parametrize(
    ("logprobs", "flag"),
    [
        ((SEVEN[0], SEVEN[1], tok("3", {"3": 0.5, "7": 0.5})), "the tokens spell '0.3'"),
        (SEVEN[:2], "the tokens spell '0.'"),
        (
            (raw("0", -0.5, (("0", -0.1), ("1", -2.4))), *SEVEN[1:]),
            "position 0: '0' has logprob -0.5, and -0.1 in its top list",
        ),
        (
            (raw("0", -0.2, (("1", -2.4), ("2", -3.0))), *SEVEN[1:]),
            "missing from its top list though more likely",
        ),
    ],
)
def test_logprobs_that_contradict_the_text_are_flagged(logprobs, flag):
    result = judged(Completion("0.7", logprobs=logprobs))
    assert result.score == 0.7
    meta = result.metadata["expected_score"]
    assert meta["inconsistent"].startswith("the logprobs of the answer: ")
    assert flag in meta["inconsistent"]


def test_what_a_real_answer_looks_like_is_not_flagged():
    # The end-of-turn token is in the logprobs, not the text; a token sampled from
    # outside the top list (a constraint, a temperature) is less likely than all of it.
    end = raw("<|im_end|>", -0.01, (("<|im_end|>", -0.01),))
    outside = raw("7", -9.0, (("6", -0.1), ("8", -2.5)))
    refused, inconsistent = vet("0.7", (SEVEN[0], SEVEN[1], outside, end))
    assert (refused, inconsistent) == (None, None)
    assert vet(" 0.7\n", (tok(" "), *SEVEN, tok("\n"))) == (None, None)


@pytest.mark.parametrize("output_format", ["bare", "answer_tag"])
@pytest.mark.parametrize("constrained", [False, True])
def test_the_fake_backends_logprobs_are_consistent(output_format, constrained):
    judge = ThinkingRewardJudge(
        backend=FakeBackend(scores=[{1.0: 0.5, 0.0: 0.2, 0.4: 0.3}, {0.3: 0.6, 0.0: 0.4}]),
        expected_score=True,
        output_format=output_format,
        constrained=constrained,
    )
    for result in judge.batch(inputs(2)):
        meta = result.metadata["expected_score"]
        assert "inconsistent" not in meta, meta
        assert all("inconsistent" not in c for c in meta.get("continuations", ()))
        assert result.expected_score is not None


LOGPROB_VALUES = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-5, max_value=5)
    | st.sampled_from([None, True, "-0.1", "Infinity", [], {}])
)
TOKENS = st.sampled_from(["0", "1", ".", "7", "<|im_end|>", "x", ""]) | st.integers(0, 3)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(TOKENS, LOGPROB_VALUES, st.lists(st.tuples(TOKENS, LOGPROB_VALUES), max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_any_logprobs_give_an_expected_score_in_range_or_none_with_a_reason(positions):
    logprobs = tuple(raw(token, value, tuple(top)) for token, value, top in positions)
    result = judged(Completion("0.7", logprobs=logprobs))  # nothing raises
    assert result.score == 0.7
    meta = result.metadata["expected_score"]
    if result.expected_score is None:
        assert meta["reason"]
    else:
        assert 0.0 <= result.expected_score <= 1.0
        assert "reason" not in meta
    pairs = [pair for token, value, top in positions for pair in ((token, value), *top)]
    impossible = any(
        not isinstance(token, str)
        or isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or value > MAX_LOGPROB
        for token, value in pairs
    )
    if impossible:
        assert result.expected_score is None
        assert "unusable" in meta["reason"]
