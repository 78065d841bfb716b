"""One reward step, planned and finished without I/O: what gets judged, and the rewards.

A step is planned (:meth:`Planner.plan`: which completions the judge is asked about, in
which order) and finished (:meth:`Planner.finish`: the judge's results turned into
rewards, Trust-GRPO applied per group, and the step's metrics). The adapters in
:mod:`judge.rl.trl`, :mod:`judge.rl.verl` and :mod:`judge.rl.easyr1` read their
framework's arguments into :class:`Sample` s, and the judge call between plan and finish
is :class:`judge.rl.base.RewardAdapter`'s.

Failures
--------
A failed judgment (a :class:`~judge.types.ThinkingScore` that is not ``ok``, or an
exception the judge returned) is never a thinking score of 0: its ``R_t`` is None, it
is left out of its group's means, and its reward is None (see the adapters for what
each framework gets instead).

Prefix caching
--------------
The completions of one prompt are planned adjacently, to be sent in one batch, so that
vLLM's automatic prefix cache can serve the rubric and the question to every completion
of a group after the first (the image part follows the text in the model card's
layout, so the shared prefix is the text up to the response). Measured on vLLM 0.32
(CPU, tiny model, 4 groups of 8): every completion of a group but the first is served
the rubric and the question from the cache, whether the group is sent at once or its
first completion ahead of the rest, so no second round trip is spent on "priming" the
cache.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from judge.failures import failure_kind
from judge.rl.trust import TrustGRPO
from judge.types import JudgeInput, ThinkingScore

__all__ = [
    "Plan",
    "Planner",
    "RewardStep",
    "Sample",
    "describe",
    "judged_value",
    "outcome_value",
    "same_key",
]


@dataclass(frozen=True)
class Sample:
    """One completion to reward: what the judge would be asked.

    Attributes:
        question: The judge's question.
        response: The completion's text.
        images: The images of the question, as the judge takes them.
    """

    question: str
    response: str
    images: tuple[Any, ...] = ()

    def judge_input(self) -> JudgeInput:
        """The judge's input for this sample."""
        item: JudgeInput = {"question": self.question, "response": self.response}
        if self.images:
            item["images"] = list(self.images)
        return item


@dataclass
class Plan:
    """Which samples go to the judge, in the order they are sent.

    Attributes:
        samples: Every sample of the step.
        groups: The step's groups, as ranges of sample indices.
        outcome: ``R_o`` per sample, or None without an outcome reward.
        step: The training step, for the annealing.
        order: The indices of the samples to judge, group by group.
    """

    samples: Sequence[Sample]
    groups: list[range]
    outcome: list[float | None] | None
    step: int | None
    order: list[int]

    def inputs(self) -> list[JudgeInput]:
        """The judge's inputs, in :attr:`order`."""
        return [self.samples[i].judge_input() for i in self.order]


@dataclass
class RewardStep:
    """One reward call's results, per sample and for the step (a reward's ``last_step``).

    Attributes:
        rewards: What was returned for each sample (None: failed).
        thinking: ``R_t`` per sample as used (0.0 where not judged, None where failed).
        bonus: The thinking term per sample (``rewards`` when there is no outcome).
        gamma: The trust weight of each sample's group.
        outcome: ``R_o`` per sample, when there is an outcome reward.
        scores: The judge's result for each judged sample, by sample index.
        metrics: ``judge_calls``, ``calls_saved``, ``failures``, ``thinking_mean``,
            ``gamma`` (mean over judged groups), ``scale``.
        errors: Why each failed judgment failed.
    """

    rewards: list[float | None]
    thinking: list[float | None]
    bonus: list[float | None]
    gamma: list[float]
    outcome: list[float | None] | None
    scores: dict[int, ThinkingScore | BaseException] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def judged_value(result: ThinkingScore | BaseException, use_expected: bool) -> float | None:
    """``R_t`` of one judgment; None when it failed (never 0).

    Args:
        result: The judge's result, or the exception it returned.
        use_expected: Take ``expected_score`` when there is one.
    """
    return result.value(use_expected) if isinstance(result, ThinkingScore) else None


class Planner:
    """Plans a step and finishes it from the judge's results (no I/O).

    Args:
        trust: The Trust-GRPO settings, or None for the thinking score alone.
        include_outcome: Reward ``R_o + term`` (True) or the term alone (False).
        use_expected_score: Take ``ThinkingScore.expected_score`` as ``R_t`` when present.
        num_generations: Group size; None finds groups as runs of equal keys.

    Raises:
        ValueError: Settings that do not fit together.
    """

    def __init__(
        self,
        *,
        trust: TrustGRPO | None,
        include_outcome: bool,
        use_expected_score: bool,
        num_generations: int | None,
    ) -> None:
        if num_generations is not None and num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        if trust is None and not include_outcome:
            raise ValueError("include_outcome=False needs an outcome reward")
        self.trust = trust
        self.include_outcome = include_outcome
        self.use_expected_score = use_expected_score
        self.num_generations = num_generations

    def groups(self, keys: Sequence[Any]) -> list[range]:
        """Consecutive groups: fixed ``num_generations`` chunks, or runs of equal keys."""
        n = len(keys)
        if self.num_generations is not None:
            size = self.num_generations
            if n % size:
                raise ValueError(f"{n} completions are not whole groups of num_generations={size}")
            return [range(start, start + size) for start in range(0, n, size)]
        groups: list[range] = []
        start = 0
        for i in range(1, n + 1):
            if i == n or not same_key(keys[i], keys[start]):
                groups.append(range(start, i))
                start = i
        return groups

    def plan(
        self,
        samples: Sequence[Sample],
        groups: list[range],
        outcome: list[float | None] | None,
        step: int | None,
    ) -> Plan:
        """Choose what to judge: everything, or what the skip rules leave.

        Raises:
            ValueError: The outcome does not match the samples, or annealing is on and
                the step is missing (before any request is sent).
        """
        if outcome is not None and len(outcome) != len(samples):
            raise ValueError(
                f"the outcome reward returned {len(outcome)} values for {len(samples)} completions"
            )
        return Plan(samples, groups, outcome, step, self.order(groups, outcome, step))

    def order(
        self, groups: Sequence[range], outcome: Sequence[float | None] | None, step: int | None
    ) -> list[int]:
        """The indices to judge, group by group (a group's completions adjacent).

        What :meth:`plan` chooses, from the groups and outcomes alone: several processes
        each holding part of a batch choose on the whole batch's groups with it.

        Raises:
            ValueError: Annealing is on and the step is missing.
        """
        if self.trust is not None and outcome is not None:
            self.trust.scale(step)  # fail before any request when the step is missing
        order: list[int] = []
        for group in groups:
            if self.trust is None or outcome is None:
                order.extend(group)
            else:
                wanted = self.trust.to_judge([outcome[i] for i in group])
                order.extend(i for i, ask in zip(group, wanted, strict=True) if ask)
        return order

    def finish(self, plan: Plan, results: Sequence[ThinkingScore | BaseException]) -> RewardStep:
        """Turn the judge's results (one per ``plan.order`` entry) into rewards and metrics."""
        judged, scores, errors = self.values(len(plan.samples), plan.order, results)
        step = self.weigh(plan.groups, plan.outcome, plan.step, plan.order, judged, errors)
        step.scores = scores
        return step

    def values(
        self, n: int, order: Sequence[int], results: Sequence[ThinkingScore | BaseException]
    ) -> tuple[list[float | None], dict[int, ThinkingScore | BaseException], list[str]]:
        """``R_t`` per sample from the judge's results (one per ``order`` entry).

        Returns:
            ``R_t`` of each of the ``n`` samples (None where not judged or failed), the
            results by sample index, and why each failed judgment failed.
        """
        scores = dict(zip(order, results, strict=True))
        judged: list[float | None] = [None] * n
        errors: list[str] = []
        for index, result in scores.items():
            value = self._value(result)
            if value is None:
                errors.append(describe(result))
            judged[index] = value
        return judged, scores, errors

    def weigh(
        self,
        groups: Sequence[range],
        outcome: list[float | None] | None,
        step: int | None,
        order: Sequence[int],
        judged: Sequence[float | None],
        errors: Sequence[str],
    ) -> RewardStep:
        """The rewards and metrics of a step from ``R_t`` per sample (see :meth:`values`).

        Trust-GRPO is applied to each group whole: with several processes, these are
        the whole batch's groups, values and outcomes.
        """
        n = len(judged)
        result = RewardStep(
            rewards=list(judged),  # without an outcome reward: the thinking score alone
            thinking=list(judged),
            bonus=list(judged),
            gamma=[1.0] * n,
            outcome=outcome,
        )
        saved, gammas = 0, []
        if self.trust is not None and outcome is not None:
            for group in groups:
                weighted = self.trust.group(
                    [outcome[i] for i in group], [judged[i] for i in group], step=step
                )
                saved += weighted.saved
                if weighted.judged:
                    gammas.append(weighted.gamma)
                for offset, index in enumerate(group):
                    result.rewards[index] = weighted.rewards[offset]
                    result.thinking[index] = weighted.thinking[offset]
                    result.bonus[index] = weighted.bonus[offset]
                    result.gamma[index] = weighted.gamma
            if not self.include_outcome:
                result.rewards = list(result.bonus)
        result.errors = list(errors)
        result.metrics = self._metrics(outcome, step, order, judged, errors, saved, gammas)
        return result

    def _value(self, result: ThinkingScore | BaseException) -> float | None:
        """``R_t`` of one result; None for a failed judgment (never 0)."""
        return judged_value(result, self.use_expected_score)

    def _metrics(
        self,
        outcome: Sequence[float | None] | None,
        step: int | None,
        order: Sequence[int],
        judged: Sequence[float | None],
        errors: Sequence[str],
        saved: int,
        gammas: Sequence[float],
    ) -> dict[str, float]:
        scored = [value for i in order if (value := judged[i]) is not None]
        metrics: dict[str, float] = {
            "judge_calls": float(len(order)),
            "calls_saved": float(saved),
            "failures": float(len(errors)),
        }
        if scored:
            metrics["thinking_mean"] = sum(scored) / len(scored)
        if gammas:
            metrics["gamma"] = sum(gammas) / len(gammas)
        if self.trust is not None and outcome is not None:
            metrics["scale"] = self.trust.scale(step)
        return metrics


def same_key(a: Any, b: Any) -> bool:
    """Whether two group keys are equal (False when their == answers no bool)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an object whose == does not answer a bool (e.g. arrays)
        return False


def describe(result: ThinkingScore | BaseException) -> str:
    """Why a judgment failed, for a log line: its kind, its class and its message."""
    if isinstance(result, ThinkingScore):
        return f"{result.error_kind} ({result.error_type}): {result.error}"
    return f"{failure_kind(result)} ({type(result).__name__}): {result}"


def outcome_value(value: Any, what: str) -> float | None:
    """An outcome reward as a float (None and NaN: None); a dict's main key is read.

    Args:
        value: A number (numpy and torch scalars too), None, or a dict with ``"score"``
            (verl) or ``"overall"`` (EasyR1).
        what: What gave it, for the error message.

    Raises:
        TypeError: A value that is no number.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key in ("score", "overall"):
            if key in value:
                return outcome_value(value[key], what)
        raise TypeError(f"{what} returned a dict without 'score' or 'overall': {sorted(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy and torch scalars
        except (TypeError, ValueError):
            raise TypeError(f"{what} returned {type(value).__name__}, not a number") from None
    if math.isnan(value):
        return None
    return float(value)
