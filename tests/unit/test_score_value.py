"""ThinkingScore.value: the one number rewards and rankings take from a judgment."""

from __future__ import annotations

from judge import ThinkingScore


def test_the_greedy_score_unless_the_expected_one_is_asked_for_and_there():
    both = ThinkingScore(score=0.5, expected_score=0.62)
    assert both.value() == 0.5
    assert both.value(use_expected=True) == 0.62
    assert ThinkingScore(score=0.5).value(use_expected=True) == 0.5


def test_a_failed_judgment_has_no_value_never_0():
    failed = ThinkingScore.failure(ValueError("not a score"))
    assert failed.value() is None
    assert failed.value(use_expected=True) is None
