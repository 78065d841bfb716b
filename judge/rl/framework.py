"""What the verl and EasyR1 adapters share: samples from dicts, dict results, the step.

verl and EasyR1 have no "no reward": there a failed judgment's response gets its
outcome reward alone, flagged in the returned dict (``thinking_failed`` = 1), or,
without an outcome reward, the call raises :class:`~judge.errors.JudgmentError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from judge.core.inputs import info_images, info_question
from judge.errors import JudgmentError
from judge.rl.base import RewardAdapter
from judge.rl.planner import Plan, RewardStep, Sample
from judge.rl.trust import trust_settings
from judge.types import JudgeRunnable

__all__ = ["FrameworkReward", "step_from"]


class FrameworkReward(RewardAdapter):
    """The base of :class:`~judge.rl.verl.VerlReward` and :class:`~judge.rl.easyr1.EasyR1Reward`.

    Args:
        judge: The judge.
        outcome_reward: The framework's outcome reward, or None for the thinking score alone.
        alpha: As in :class:`~judge.rl.trl.GRPOReward`.
        anneal_steps: As in :class:`~judge.rl.trl.GRPOReward`.
        trust: As in :class:`~judge.rl.trl.GRPOReward`.
        skip_saturated: As in :class:`~judge.rl.trl.GRPOReward`.
        skip_below: As in :class:`~judge.rl.trl.GRPOReward`.
        use_expected_score: As in :class:`~judge.rl.trl.GRPOReward`.
        num_generations: Rollouts per prompt; None finds groups as runs of one question.
        max_concurrency: As in :class:`~judge.rl.trl.GRPOReward`.
        question_keys: The keys to take the question from, in turn.
        name: The name in logs.
    """

    def __init__(
        self,
        judge: JudgeRunnable,
        *,
        outcome_reward: Callable[..., Any] | None = None,
        alpha: float = 0.3,
        anneal_steps: float | None = None,
        trust: bool = True,
        skip_saturated: bool = True,
        skip_below: float | None = 0.2,
        use_expected_score: bool = True,
        num_generations: int | None = None,
        max_concurrency: int | None = None,
        question_keys: Sequence[str] = ("question", "prompt"),
        name: str = "thinking_reward",
    ) -> None:
        self.outcome_reward = outcome_reward
        self.question_keys = tuple(question_keys)
        super().__init__(
            judge,
            trust=trust_settings(
                outcome_reward, alpha, anneal_steps, trust, skip_saturated, skip_below
            ),
            include_outcome=True,
            use_expected_score=use_expected_score,
            num_generations=num_generations,
            max_concurrency=max_concurrency,
            name=name,
        )
        self.calls = 0
        """Batched calls so far: the step when the caller gives none."""

    def _sample(self, response: str, info: Mapping[str, Any] | None, where: str) -> Sample:
        """The sample of one response, its question and images read from ``info``.

        Raises:
            InputError: ``info`` carries no question under ``question_keys``.
        """
        return Sample(info_question(info, self.question_keys, where), response, info_images(info))

    def _plan_batch(
        self, samples: list[Sample], outcome: list[float | None] | None, step: int | None
    ) -> Plan:
        """Plan a batched call: groups as runs of one question (and images), or chunks.

        The step, when the caller gives none, is the number of earlier batched calls.
        """
        keys = [(sample.question, sample.images) for sample in samples]
        plan = self.planner.plan(
            samples, self.planner.groups(keys), outcome, self.calls if step is None else step
        )
        self.calls += 1
        return plan

    def _results(self, step: RewardStep, main: str) -> list[dict[str, float]]:
        """One dict per sample, all values finite; a failed judgment keeps its outcome reward.

        Raises:
            JudgmentError: A judgment failed and there is no outcome reward to fall back on.
        """
        self._report(step, None)
        failed = [i for i, value in enumerate(step.rewards) if value is None]
        if failed and step.outcome is None:
            raise JudgmentError(
                f"{len(failed)} of {len(step.rewards)} judgments failed and there is no outcome "
                f"reward to fall back on; first: {step.errors[0] if step.errors else 'unknown'}"
            )
        out = []
        for i, reward in enumerate(step.rewards):
            r_o = step.outcome[i] if step.outcome is not None else None
            score = r_o if reward is None else reward  # failed: the outcome alone, flagged
            if score is None:
                raise ValueError(f"the outcome reward gave no value for sample {i}")
            judged = i in step.scores
            out.append(
                {
                    main: float(score),
                    "thinking": _finite(step.thinking[i]),
                    "thinking_failed": float(judged and step.thinking[i] is None),
                    "judged": float(judged),
                    "gamma": step.gamma[i],
                    **({"outcome": _finite(r_o)} if step.outcome is not None else {}),
                }
            )
        return out


def _finite(value: float | None) -> float:
    """``value``, or 0.0 where there is none.

    verl and EasyR1 average every key of every result into their metrics, where one NaN
    makes the mean NaN; a missing thinking score is flagged by ``thinking_failed`` (a
    failed judgment) or ``judged`` (a skip rule saved the call) instead.
    """
    return 0.0 if value is None else float(value)


def step_from(*sources: Mapping[str, Any] | None) -> int | None:
    """The training step given by the caller, or None.

    Args:
        *sources: Mappings (keyword arguments, an input's fields) read in turn: the first
            ``global_step``, ``global_steps`` or ``step`` found is the step.
    """
    for source in sources:
        if not source:
            continue
        for key in ("global_step", "global_steps", "step"):
            value = source.get(key)
            if value is not None:
                return int(value)
    return None
