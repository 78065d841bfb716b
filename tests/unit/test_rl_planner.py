"""The reward planner alone (no judge): what gets judged, failures, outcome values, groups."""

from __future__ import annotations

import math

import pytest

from backends.errors import BackendConnectionError
from judge import ScoreParseError, ThinkingScore, TrustGRPO
from judge.failures import FailureKind
from judge.rl.planner import Planner, Sample, describe, outcome_value
from judge.rl.processes import Part, ProcessFailed, layout, part_of, raise_failures


def planner(trust: TrustGRPO | None = None, **options) -> Planner:
    settings = {"include_outcome": True, "use_expected_score": True, "num_generations": None}
    return Planner(trust=trust, **{**settings, **options})


def samples(n: int) -> list[Sample]:
    return [Sample("q", f"r{i}") for i in range(n)]


def test_a_failed_judgment_is_none_never_zero():
    plan = planner().plan(samples(3), [range(3)], None, None)
    assert plan.order == [0, 1, 2]
    failed = ThinkingScore.failure(ScoreParseError("no score", llm_output="junk"), raw="junk")
    step = planner().finish(
        plan, [ThinkingScore(score=0.4), failed, BackendConnectionError("down")]
    )
    assert step.rewards == [pytest.approx(0.4), None, None]
    assert step.metrics["failures"] == 2.0
    assert step.metrics["thinking_mean"] == pytest.approx(0.4)
    # The log line names the kind, which is what consumers dispatch on.
    assert step.errors[0].startswith(f"{FailureKind.PARSE} (ScoreParseError): no score")
    assert step.errors[1].startswith(f"{FailureKind.CONNECTION} (BackendConnectionError): down")


def test_expected_score_or_greedy():
    score = ThinkingScore(score=0.6, expected_score=0.7)
    plan = planner().plan(samples(1), [range(1)], None, None)
    assert planner().finish(plan, [score]).rewards == [pytest.approx(0.7)]
    greedy = planner(use_expected_score=False)
    assert greedy.finish(plan, [score]).rewards == [pytest.approx(0.6)]


def test_plan_skips_and_orders_group_by_group():
    cfg = planner(TrustGRPO())
    outcome = [1.0, 1.0, 1.0, 0.5, 0.1]  # group 1 saturated; 0.1 < skip_below
    plan = cfg.plan(samples(5), [range(3), range(3, 5)], outcome, 0)
    assert plan.order == [3]
    assert [item["response"] for item in plan.inputs()] == ["r3"]
    with pytest.raises(ValueError, match="2 values for 5"):
        cfg.plan(samples(5), [range(5)], [1.0, 0.0], 0)


def test_groups_as_runs_or_chunks():
    class Array:  # like a numpy array: == answers no bool
        def __eq__(self, other):
            raise ValueError("ambiguous")

    a, b = Array(), Array()
    assert planner().groups(["x", "x", "y", a, a, b]) == [
        range(0, 2),
        range(2, 3),
        range(3, 5),
        range(5, 6),
    ]
    assert planner(num_generations=2).groups([1, 2, 3, 4]) == [range(0, 2), range(2, 4)]
    with pytest.raises(ValueError, match="num_generations"):
        planner(num_generations=0)
    with pytest.raises(ValueError, match="include_outcome"):
        planner(include_outcome=False)


def test_outcome_values():
    assert outcome_value(1, "r") == 1.0
    assert outcome_value({"score": 0.5}, "r") == 0.5
    assert outcome_value({"overall": 0.25, "accuracy": 1.0}, "r") == 0.25
    assert outcome_value(None, "r") is None
    assert outcome_value(math.nan, "r") is None
    assert outcome_value("0.5", "r") == 0.5  # anything float() takes (numpy, torch scalars)
    with pytest.raises(TypeError, match="not a number"):
        outcome_value(object(), "the outcome reward")
    with pytest.raises(TypeError, match="without 'score'"):
        outcome_value({"x": 1}, "the outcome reward")


def test_describe_an_exception():
    assert describe(RuntimeError("bug")) == f"{FailureKind.INTERNAL} (RuntimeError): bug"


# -- the global batch of several processes (judge.rl.processes) ------------------------------


def test_layout_of_fixed_groups_across_processes():
    parts = [Part(count=6, outcome=[1.0] * 6), Part(count=6, outcome=[0.0] * 6)]
    where = layout(parts, 1, 4)
    assert where.groups == [range(0, 4), range(4, 8), range(8, 12)]
    assert (where.start, where.count, where.total) == (6, 6, 12)
    assert where.outcome == [1.0] * 6 + [0.0] * 6
    assert where.local([0, 5, 6, 7, 11]) == [0, 1, 5]
    with pytest.raises(ValueError, match="12 completions over 2 processes"):
        layout(parts, 0, 8)


def test_layout_joins_runs_of_keys_that_go_on_on_the_next_process():
    keys = ["a", "a", "a", "b", "b", "c", "c", "c", "d"]
    parts = [
        part_of(keys[:3], None, None),
        part_of(keys[3:6], None, None),
        part_of(keys[6:], None, None),
    ]
    assert parts[1].runs == [2, 1]
    where = layout(parts, 2, None)
    assert where.groups == [range(0, 3), range(3, 5), range(5, 8), range(8, 9)]
    assert where.groups == planner().groups(keys)  # as one process finds them
    assert where.outcome is None


def test_raise_failures_raises_the_own_error_or_names_the_failed_process():
    own = KeyError("mine")
    with pytest.raises(KeyError):
        raise_failures(["KeyError: mine", None], 0, own)
    with pytest.raises(ProcessFailed, match="process 0 failed the reward step: KeyError: mine"):
        raise_failures(["KeyError: mine", None], 1, None)
    raise_failures([None, None], 1, None)  # nobody failed: nothing raised
    assert Part.failed(own).error == "KeyError: 'mine'"
