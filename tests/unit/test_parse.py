"""The strict score parser: what it accepts, what it refuses."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.exceptions import OutputParserException

from judge import SCORE_GRID, ScoreParseError, parse_score
from judge.core.parse import MAX_ANSWER_CHARS, check_finished, excerpt
from judge.errors import TruncatedAnswerError

ACCEPTED = [
    ("0", 0.0),
    ("1", 1.0),
    ("1.0", 1.0),
    ("0.7", 0.7),
    ("0.70", 0.7),
    ("  0.3\n", 0.3),
    ("\n1.0", 1.0),
    ("<answer>0.4</answer>", 0.4),
    ("<answer> 0.4 </answer>", 0.4),
    ("\\boxed{0.9}", 0.9),
    ("$\\boxed{0.9}$", 0.9),
    ("**0.8**", 0.8),
    ("<answer>**0.2**</answer>", 0.2),
    ("1.00", 1.0),
    ("0.05", 0.05),
]

REFUSED = [
    "",
    "   ",
    "The score is 0.7",
    "0.7 because the reasoning is sound",
    "Score: 0.7",
    "0.7 0.8",
    "0.7\n0.8",
    "<answer>0.7</answer><answer>0.8</answer>",
    "1.1",
    "2",
    "10",
    "-0.1",
    "+0.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e-1",
    ".5",
    "0.",
    "0,7",
    "seven",
    "<answer></answer>",
    "\\boxed{}",
    "<answer>0.7",
    "0.7</answer>",
    "**0.7",
    "\n\n\n\n",
    "\uff10.\uff17",  # full-width digits
    "\u0660.\u0667",  # Arabic-Indic digits
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_shapes(text, expected):
    assert parse_score(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", REFUSED)
def test_refused(text):
    with pytest.raises(ScoreParseError) as info:
        parse_score(text)
    assert info.value.llm_output == text


def test_parse_error_is_an_output_parser_exception():
    with pytest.raises(OutputParserException):
        parse_score("no")


def test_non_text_is_refused():
    with pytest.raises(ScoreParseError):
        parse_score(None)  # type: ignore[arg-type]


def test_grid_is_the_models_eleven_answers():
    assert len(SCORE_GRID) == 11
    assert [parse_score(s) for s in SCORE_GRID] == pytest.approx([i / 10 for i in range(11)])


@given(
    st.integers(min_value=0, max_value=10),
    st.sampled_from(["{}", "<answer>{}</answer>", "\\boxed{{{}}}", "**{}**", " {} \n"]),
)
def test_every_grid_value_round_trips(tenth, shape):
    text = shape.format(f"{tenth / 10:.1f}" if tenth < 10 else "1.0")
    assert parse_score(text) == pytest.approx(tenth / 10)


@given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), st.integers(1, 6))
def test_decimal_rendering_round_trips(value, digits):
    text = f"{value:.{digits}f}"
    assert parse_score(text) == pytest.approx(float(text))


# An independent description of the accepted language, to check the parser against.
_ORACLE = re.compile(
    r"\s*(?:(?:<answer>|\\boxed\{|\$|\*\*)\s*)*"
    r"(?P<num>[0-9]+(?:\.[0-9]+)?)"
    r"\s*(?:(?:</answer>|\}|\$|\*\*)\s*)*",
)


@given(
    st.text(alphabet=st.sampled_from(list("0123456789.,- abc<>/answer*$\\boxed{}\n")), max_size=24)
)
def test_random_text_never_yields_a_score_outside_the_accepted_shapes(text):
    try:
        value = parse_score(text)
    except ScoreParseError:
        return
    match = _ORACLE.fullmatch(text)
    assert match is not None, f"accepted a shape outside the grammar: {text!r}"
    assert float(match.group("num")) == value
    assert 0.0 <= value <= 1.0
    assert not math.isnan(value)


@given(st.text(max_size=64))
def test_arbitrary_unicode_is_refused_or_a_number_in_range(text):
    try:
        value = parse_score(text)
    except ScoreParseError:
        return
    assert 0.0 <= value <= 1.0
    assert _ORACLE.fullmatch(text)


# ------------------------------------------------------------------ bounded and linear


def test_a_text_longer_than_the_bound_is_refused_before_unwrapping():
    # 1.2 MB of nested "$" around a score stalled the event loop for 18 s.
    text = "$" * 600_000 + "0.5" + "$" * 600_000
    with pytest.raises(ScoreParseError, match="characters long") as info:
        parse_score(text)
    assert info.value.llm_output == text


def test_white_space_counts_towards_the_bound():
    assert parse_score(" " * (MAX_ANSWER_CHARS - 3) + "0.5") == 0.5
    with pytest.raises(ScoreParseError, match="characters long"):
        parse_score(" " * (MAX_ANSWER_CHARS - 2) + "0.5")


@pytest.mark.parametrize(("opening", "closing"), [("$", "$"), ("**", "**"), ("\\boxed{", "}")])
def test_wrappers_nested_up_to_the_bound_parse(opening, closing):
    depth = (MAX_ANSWER_CHARS - 3) // (len(opening) + len(closing))
    text = opening * depth + "0.5" + closing * depth
    assert len(text) <= MAX_ANSWER_CHARS
    assert parse_score(text) == 0.5
    with pytest.raises(ScoreParseError):
        parse_score(opening * (depth + 1) + "0.5" + closing * depth)


@pytest.mark.parametrize("reason", [None, "stop", "Stop", "eos", "end_turn", "stop_sequence", ""])
def test_natural_ends_are_finished(reason):
    check_finished(reason)


@pytest.mark.parametrize(
    ("reason", "shown"),
    [("length", "'length'"), ("MAX_TOKENS", "'MAX_TOKENS'"), ("abort", "'abort'"), (7, "'int'")],
)
def test_anything_else_is_not_finished(reason, shown):
    with pytest.raises(TruncatedAnswerError, match=f"finish_reason {shown}"):
        check_finished(reason)


@pytest.mark.parametrize("text", ["fairly good", "x" * 5000, "0.5 0.6", "", "1.5"])
def test_a_refusal_is_the_parsers_own_message_without_langchains_link(text):
    with pytest.raises(ScoreParseError) as caught:
        parse_score(text)
    message = str(caught.value)
    assert "For troubleshooting" not in message
    assert "OUTPUT_PARSING_FAILURE" not in message
    assert "\n" not in message
    assert caught.value.llm_output == text  # the whole output is kept, only not shown


def test_excerpt_is_one_bounded_scrubbed_line():
    assert excerpt("a\n\n b\tc") == "'a b c'"
    assert excerpt("ok\x00\u200bfine") == "'okfine'"
    image = "data:image/jpeg;base64," + "A" * 700
    assert excerpt(f"see {image} here") == "'see <base64, 723 chars> here'"
    long = "word " * 100
    assert excerpt(long) == repr(long[:80]) + "… (500 characters)"
    assert excerpt(long, limit=4) == "'word'… (500 characters)"
