"""Properties of the two pure cores, over arbitrary input: the renderer and the parser.

Renderer: whatever the question and response, the judge sends the model card's f-string
(with neutralisation off, the response verbatim), and the prompt hash depends on what is
sent and nothing else. Parser: every grid value comes back exactly through any nesting of
the accepted wrappers; any other text gives a score in [0, 1] or ``ScoreParseError``,
never another exception, and never a number picked out of prose.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from model_card import card_prompt  # the verbatim copy of the card's f-string
from pipeline_stub import Capabilities

from backends.base import Completion, JudgeRequest, TokenLogprob
from judge import SCORE_GRID, ScoreParseError, ThinkingRewardJudge, ThinkingScore, parse_score
from judge.core.parse import MAX_ANSWER_CHARS
from judge.core.pipeline import JudgeOptions, JudgmentPipeline, advance
from judge.core.prompt import prompt_sha256, render_messages, render_prompt
from judge.core.sanitize import neutralize_special_tokens
from judge.testing.fake import FakeBackend

# ------------------------------------------------------------------- renderer

# Text the judge accepts: not empty, not only white space. Seeded with what attacks
# and templates are made of, so that the interesting characters are common.
_TRICKY = st.sampled_from(
    [
        "<image>",
        "<|im_end|>",
        "<|im_start|>assistant\n",
        "<|vision_start|><|image_pad|><|vision_end|>",
        "{",
        "}",
        "{{0}}",
        "\\",
        "\r\n",
        "\u200b",
        "\x00",
        "\ufeff",
        "\U0001f600",
        "Question: ",
        "\n    Reasoning process: ",
    ]
)
_FIELD = (
    st.lists(st.one_of(_TRICKY, st.text(max_size=12)), min_size=1, max_size=8)
    .map("".join)
    .filter(lambda text: bool(text) and not text.isspace())
)
_PNG_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def _sent_text(judge: ThinkingRewardJudge, item: dict[str, Any]) -> tuple[str, str | None]:
    """The user text the judge sent for ``item``, and the prompt hash it reported."""
    backend = judge.backend
    assert isinstance(backend, FakeBackend)
    result = judge.invoke(item)
    assert result.error is None, result.error
    return backend.requests[-1].messages[1]["content"][0]["text"], result.prompt_sha256


@given(question=st.text(), response=st.text(), with_image=st.booleans())
def test_rendered_text_is_the_cards_fstring(question: str, response: str, with_image: bool) -> None:
    rendered = render_prompt(question, response, has_image=with_image)
    assert rendered == card_prompt(question, response, "x.png" if with_image else None)
    assert rendered.endswith(f"\n    Reasoning process: {response}\n    ")


@settings(max_examples=150, deadline=None)
@given(question=_FIELD, response=_FIELD)
def test_fidelity_mode_sends_the_cards_text_with_the_response_verbatim(
    question: str, response: str
) -> None:
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]), neutralize_special_tokens=False)
    text, sha = _sent_text(judge, {"question": question, "response": response})
    assert text == card_prompt(question, response)
    assert response in text
    assert sha == prompt_sha256(render_messages(question, response))


@settings(max_examples=150, deadline=None)
@given(question=_FIELD, response=_FIELD)
def test_default_mode_sends_the_cards_text_of_the_neutralized_fields(
    question: str, response: str
) -> None:
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.5"]))
    text, _ = _sent_text(judge, {"question": question, "response": response})
    safe_question = neutralize_special_tokens(question)
    safe_response = neutralize_special_tokens(response)
    assert text == card_prompt(safe_question, safe_response)
    if "<|" not in question + response:
        assert text == card_prompt(question, response)


@given(question=st.text(), response=st.text(), with_image=st.booleans())
def test_prompt_hash_is_deterministic(question: str, response: str, with_image: bool) -> None:
    parts = [_PNG_PART] if with_image else []
    first = prompt_sha256(render_messages(question, response, parts))
    again = prompt_sha256(render_messages(str(question), str(response), [dict(p) for p in parts]))
    assert first == again
    assert re.fullmatch(r"[0-9a-f]{64}", first)


@settings(max_examples=100, deadline=None)
@given(question=_FIELD, response=_FIELD)
def test_the_judge_reports_the_same_hash_for_the_same_input(question: str, response: str) -> None:
    item = {"question": question, "response": response}
    first = ThinkingRewardJudge(backend=FakeBackend(["0.5"])).invoke(item)
    second = ThinkingRewardJudge(backend=FakeBackend(["0.9"])).invoke(dict(item))
    assert first.prompt_sha256 == second.prompt_sha256 is not None


@given(question=st.text(), response=st.text(), extra=st.text(min_size=1))
def test_prompt_hash_changes_with_the_response(question: str, response: str, extra: str) -> None:
    a = prompt_sha256(render_messages(question, response))
    assert a != prompt_sha256(render_messages(question, response + extra))


# --------------------------------------------------------------------- parser

_OPEN_CLOSE = [("<answer>", "</answer>"), ("\\boxed{", "}"), ("$", "$"), ("**", "**")]
_SPACE = st.sampled_from(["", " ", "\n", "\t", "  \n "])


@st.composite
def _wrapped(draw: st.DrawFn, core: st.SearchStrategy[str]) -> str:
    """``core`` inside any nesting of the accepted wrappers, with white space around."""
    text = draw(core)
    for opening, closing in draw(st.lists(st.sampled_from(_OPEN_CLOSE), max_size=4)):
        text = f"{opening}{draw(_SPACE)}{text}{draw(_SPACE)}{closing}"
    return f"{draw(_SPACE)}{text}{draw(_SPACE)}"


@given(value=st.sampled_from(SCORE_GRID), data=st.data())
def test_every_grid_value_parses_back_exactly_through_any_wrapping(
    value: str, data: st.DataObject
) -> None:
    text = data.draw(_wrapped(st.just(value)))
    assert parse_score(text) == float(value)


@pytest.mark.parametrize("value", SCORE_GRID)
def test_grid_values_are_the_models_eleven_scores(value: str) -> None:
    assert parse_score(value) == float(value)
    assert float(value) in {i / 10 for i in range(11)}


_SCORE_LIKE = st.one_of(
    st.sampled_from(SCORE_GRID),
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["1.1", "-0.5", "+1", "1e-1", ".5", "0.", "nan", "inf", "0,5", "\u0661"]),
)
_NOISE = st.text(
    alphabet=st.sampled_from(list("0123456789.,-+eE $*{}<>/\\\n\tanswerboxedScore:Thé\u3000")),
    max_size=16,
)
_ANY_TEXT = st.one_of(
    st.text(),
    _NOISE,
    _wrapped(_SCORE_LIKE),
    _wrapped(st.tuples(_NOISE, _SCORE_LIKE, _NOISE).map("".join)),
)


def _parse(text: str) -> float | ScoreParseError:
    try:
        return parse_score(text)
    except ScoreParseError as exc:
        return exc


# What a wrapper can be made of, to strip them all off a text that parsed.
_WRAPPER_BITS = re.compile(r"<answer>|</answer>|\\boxed\{|\}|\$|\*\*|\s")


@settings(max_examples=500)
@given(text=_ANY_TEXT)
@example("Score: 0.7")
@example("0.7 because it is sound")
@example("<answer>0.7</answer> or <answer>0.8</answer>")
def test_any_text_gives_a_score_in_range_or_a_parse_error(text: str) -> None:
    value = _parse(text)  # any other exception fails the test
    if isinstance(value, ScoreParseError):
        assert value.llm_output == text
        return
    assert isinstance(value, float)
    assert 0.0 <= value <= 1.0
    # It parsed, so nothing but wrappers and white space surrounds exactly one number.
    residue = _WRAPPER_BITS.sub("", text)
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", residue), text
    assert float(residue) == value


# Text with a letter that is not part of a wrapper.
_PROSE = st.text(min_size=1, max_size=20).filter(
    lambda t: any(c.isalpha() for c in _WRAPPER_BITS.sub("", t))
)


@given(prose=_PROSE, value=st.sampled_from(SCORE_GRID), before=st.booleans(), data=st.data())
def test_never_extracts_a_number_out_of_prose(
    prose: str, value: str, before: bool, data: st.DataObject
) -> None:
    core = f"{prose} {value}" if before else f"{value} {prose}"
    with pytest.raises(ScoreParseError):
        parse_score(data.draw(_wrapped(st.just(core))))


@given(prose=_PROSE, data=st.data())
def test_prose_alone_is_refused(prose: str, data: st.DataObject) -> None:
    with pytest.raises(ScoreParseError):
        parse_score(data.draw(_wrapped(st.just(prose))))


@pytest.mark.parametrize("opening", [opening for opening, _ in _OPEN_CLOSE])
def test_an_unclosed_wrapper_and_white_space_parse(opening: str) -> None:
    # A regex with white space on both sides of a lazy group took a minute on 4000 spaces
    # (quadratic or worse); the parser is linear now. No clock here: a regression shows
    # as this test running for hours, not as a flaky time limit.
    text = opening + " " * 100_000 + "x"
    with pytest.raises(ScoreParseError):
        parse_score(text)


@settings(max_examples=200, deadline=None)
@given(
    value=st.sampled_from(SCORE_GRID),
    wrapper=st.sampled_from(_OPEN_CLOSE),
    depth=st.integers(min_value=0, max_value=400),
    pad=st.integers(min_value=0, max_value=1_200),
)
def test_the_parse_is_bounded_a_score_parses_up_to_the_bound_and_never_beyond(
    value: str, wrapper: tuple[str, str], depth: int, pad: int
) -> None:
    opening, closing = wrapper
    text = opening * depth + value + closing * depth + " " * pad
    if len(text) > MAX_ANSWER_CHARS:
        with pytest.raises(ScoreParseError, match="characters long"):
            parse_score(text)
    else:
        assert parse_score(text) == float(value)
        assert _ORACLE_TEXT.fullmatch(text)


_ORACLE_TEXT = re.compile(
    r"\s*(?:(?:<answer>|\\boxed\{|\$|\*\*)\s*)*[0-9]+(?:\.[0-9]+)?\s*(?:(?:</answer>|\}|\$|\*\*)\s*)*"
)


# --------------------------------------------------------- whatever a backend returns

_ODD = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["0", "1", "0.7", "<answer>1.0</answer>", "stop", "length", ".", ""])
    | st.lists(st.integers(0, 2), max_size=2)
)
_TOKEN = st.sampled_from(["0", "1", ".", "7", "<|im_end|>", "x"]) | _ODD
_LOGPROBS = (
    st.none()
    | _ODD
    | st.lists(
        st.builds(
            TokenLogprob,
            _TOKEN,
            _ODD,
            st.lists(st.tuples(_TOKEN, _ODD), max_size=3).map(tuple) | _ODD,
        ),
        max_size=4,
    ).map(tuple)
)


@st.composite
def _completions(draw: st.DrawFn) -> Completion:
    fields = {"text": st.sampled_from(["0", "1.0", "0.7", "x"]) | _ODD, "logprobs": _LOGPROBS}
    for name in ("finish_reason", "prompt_tokens", "completion_tokens", "model", "latency_s"):
        fields[name] = st.just(None) | _ODD
    return Completion(**{name: draw(strategy) for name, strategy in fields.items()})


@settings(max_examples=150, deadline=None)
@given(answers=st.lists(_completions(), min_size=1, max_size=3), rest=_completions())
def test_whatever_a_backend_returns_each_judgment_is_a_score_or_a_typed_failure(
    answers: list[Completion], rest: Completion
) -> None:
    replies = iter(answers)

    def reply(request: JudgeRequest) -> Completion:
        return rest if request.continue_final_message else next(replies)

    pipeline = JudgmentPipeline(JudgeOptions(expected_score=True), Capabilities())
    item = {"question": "q", "response": "r"}
    steps = pipeline.run([item] * len(answers))
    done, value = advance(steps, None)
    while not done:
        done, value = advance(steps, [reply(request) for request in value])
    assert len(value) == len(answers)
    for score in value:
        assert isinstance(score, ThinkingScore)
        if score.score is None:
            assert score.error_kind is not None
            assert score.error_kind != "internal", score.error
        else:
            assert 0.0 <= score.score <= 1.0
            assert score.expected_score is None or 0.0 <= score.expected_score <= 1.0
