"""FakeBackend, the scripted backend for users' own tests."""

from __future__ import annotations

import pytest

from backends import FakeBackend
from backends.base import JudgeRequest
from backends.errors import BackendHTTPError
from judge import ThinkingRewardJudge

ITEMS = [{"question": f"q{i}", "response": f"r{i}"} for i in range(4)]


def test_script_replies_in_turn_and_records_requests():
    backend = FakeBackend(["0.7", "oops"])
    results = ThinkingRewardJudge(backend=backend).batch(ITEMS)
    assert [r.score for r in results] == [0.7, None, 0.7, None]
    assert [r.error_type for r in results] == [None, "ScoreParseError", None, "ScoreParseError"]
    assert len(backend.requests) == 4


def test_scores_are_written_as_the_model_writes_them():
    backend = FakeBackend(scores=[0, 0.3, 1, 0.66])
    results = ThinkingRewardJudge(backend=backend).batch(ITEMS)
    assert [r.raw for r in results] == ["0", "0.3", "1.0", "0.7"]
    assert [r.score for r in results] == [0.0, 0.3, 1.0, 0.7]


def test_scores_from_a_function_and_errors():
    def reply(request: JudgeRequest):
        text = request.messages[1]["content"][0]["text"]
        if "q3" in text:
            return BackendHTTPError("HTTP 503", status=503)
        return 0.1 if "q0" in text else {0.2: 1, 0.4: 3}

    results = ThinkingRewardJudge(backend=FakeBackend(scores=reply), expected_score=True).batch(
        ITEMS
    )
    assert [r.score for r in results[:3]] == [0.1, 0.4, 0.4]
    assert [r.expected_score for r in results[:3]] == pytest.approx([0.1, 0.35, 0.35])
    assert results[3].error_type == "BackendHTTPError"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"script": ["1.0"], "scores": [1.0]}, "not both"),
        ({"scores": []}, "at least one"),
        ({"script": []}, "at least one"),
        ({"scores": [1.5]}, r"in \[0, 1\]"),
        ({"scores": [{0.5: 0}]}, "positive weight"),
    ],
)
def test_bad_scripts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FakeBackend(**kwargs)


def test_default_answers_one():
    assert ThinkingRewardJudge(backend=FakeBackend()).invoke(ITEMS[0]).score == 1.0


def test_one_class_under_its_three_names():
    from backends import backend_class
    from judge.testing import FakeBackend as from_testing
    from judge.testing.fake import FakeBackend as defined

    assert FakeBackend is defined
    assert from_testing is defined
    assert backend_class("fake") is defined


def test_answers_on_the_judges_own_grid_and_tag():
    from judge.core.parse import SCORE_GRID

    backend = FakeBackend(scores=[i / 10 for i in range(11)])
    plain = ThinkingRewardJudge(backend=backend).batch([ITEMS[0]] * 11)
    assert tuple(r.raw for r in plain) == SCORE_GRID
    tagged = ThinkingRewardJudge(backend=backend, output_format="answer_tag").invoke(ITEMS[0])
    assert tagged.raw == "<answer>0</answer>"
    assert tagged.score == 0.0
