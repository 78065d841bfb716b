"""Trust-GRPO's arithmetic: the trust weight and one group's rewards (pure, no I/O).

SophiaVL-R1 (arXiv 2505.17018, eq. 1-5) adds the thinking reward ``R_t`` to the outcome
reward ``R_o`` of each response ``i`` of a group (the completions of one prompt)::

    R_i = R_o,i + gamma * alpha * exp(-step / T) * R_t,i

    gamma = 1                                 if mu_correct >= mu_wrong
          = exp(mu_correct - mu_wrong)        otherwise

where ``mu_correct`` / ``mu_wrong`` are the mean ``R_t`` of the group's correct
(``R_o >= 0.5``) and wrong responses: a group whose wrong answers out-think its right
ones has a thinking reward that is not to be trusted, and it is down-weighted. ``gamma``
is 1 when the group has no correct or no wrong response. ``alpha`` (0.3) and the
annealing ``exp(-step / T)`` follow the training code (``kxfan2002/SophiaVL-R1``,
``verl/workers/reward/custom.py``), as do its two savings, on by default here:

* a *saturated* group, where every response has ``R_o >= 0.9`` or every one
  ``R_o <= 0.1``, is not judged: the thinking term cannot change the group's ranking, so
  its ``R_t`` is 0 and ``R_i = R_o,i``;
* a response with ``R_o < 0.2`` is not judged: its ``R_t`` is 0 (and, as in the training
  code, that 0 counts in ``mu_wrong``).

The training code logs ``exp(2 * (mu_correct - mu_wrong))`` as its gamma but applies
``exp(mu_correct - mu_wrong)``; here the applied one is both used and logged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["GroupReward", "TrustGRPO", "trust_settings", "trust_weight"]


def trust_weight(
    outcome: Sequence[float | None],
    thinking: Sequence[float | None],
    *,
    correct_threshold: float = 0.5,
) -> float:
    """The trust weight ``gamma`` of one group (SophiaVL-R1, eq. 4).

    Args:
        outcome: The outcome reward ``R_o`` of each response of the group.
        thinking: The thinking reward ``R_t`` of each response, None where it is
            unknown (a failed judgment, or no outcome); those are left out.
        correct_threshold: ``R_o`` at or above which a response counts as correct.

    Returns:
        1.0 when the correct responses think at least as well on average as the wrong
        ones, or when either set is empty; else ``exp(mu_correct - mu_wrong)`` (< 1).
    """
    right: list[float] = []
    wrong: list[float] = []
    for r_o, r_t in zip(outcome, thinking, strict=True):
        if r_o is None or r_t is None:
            continue
        (right if r_o >= correct_threshold else wrong).append(r_t)
    if not right or not wrong:
        return 1.0
    gap = sum(right) / len(right) - sum(wrong) / len(wrong)
    return 1.0 if gap >= 0 else math.exp(gap)


@dataclass(frozen=True)
class GroupReward:
    """Trust-GRPO's result for one group of responses (see :meth:`TrustGRPO.group`).

    Attributes:
        rewards: ``R_o + bonus`` per response; None where the judgment failed or the
            outcome is unknown.
        bonus: The thinking term ``gamma * alpha * exp(-step / T) * R_t`` per response;
            None where the judgment failed or the outcome is unknown.
        thinking: ``R_t`` as used: the judge's score, 0.0 where it was not asked (a
            saved call), None where it failed.
        gamma: The group's trust weight (1.0 for a saturated group).
        scale: ``alpha * exp(-step / T)``.
        judged: Responses the judge was asked about.
        saved: Responses not judged under the skip rules.
        failed: Judged responses whose judgment failed.
        saturated: Whether the whole group was skipped (all right or all wrong).
    """

    rewards: tuple[float | None, ...]
    bonus: tuple[float | None, ...]
    thinking: tuple[float | None, ...]
    gamma: float
    scale: float
    judged: int
    saved: int
    failed: int
    saturated: bool


@dataclass(frozen=True)
class TrustGRPO:
    """Trust-GRPO's settings, and its arithmetic on one group (no I/O).

    Attributes:
        alpha: Weight of the thinking reward (0.3 in SophiaVL-R1).
        anneal_steps: ``T`` of the annealing ``exp(-step / T)``; None for none (the
            training code's default is 500 steps).
        trust: Apply the trust weight ``gamma``; False keeps ``gamma = 1``.
        correct_threshold: ``R_o`` at or above which a response is correct (0.5).
        skip_saturated: Judge no response of a group whose every ``R_o`` is at or above
            ``saturated_high`` or whose every ``R_o`` is at or below ``saturated_low``.
        saturated_high: See ``skip_saturated`` (0.9).
        saturated_low: See ``skip_saturated`` (0.1).
        skip_below: Judge no response with ``R_o`` below it (0.2); its ``R_t`` is 0.
            None judges them all.

    Raises:
        ValueError: A setting out of range.
    """

    alpha: float = 0.3
    anneal_steps: float | None = None
    trust: bool = True
    correct_threshold: float = 0.5
    skip_saturated: bool = True
    saturated_high: float = 0.9
    saturated_low: float = 0.1
    skip_below: float | None = 0.2

    def __post_init__(self) -> None:
        if not math.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if self.anneal_steps is not None and not self.anneal_steps > 0:
            raise ValueError(f"anneal_steps must be > 0 (or None), got {self.anneal_steps}")
        if self.saturated_low >= self.saturated_high:
            raise ValueError("saturated_low must be below saturated_high")

    def scale(self, step: int | None) -> float:
        """``alpha * exp(-step / T)``.

        Raises:
            ValueError: Annealing is on and ``step`` is None or negative.
        """
        if self.anneal_steps is None:
            return self.alpha
        if step is None or step < 0:
            raise ValueError(
                f"annealing (anneal_steps={self.anneal_steps}) needs the training step, got {step}"
            )
        return self.alpha * math.exp(-step / self.anneal_steps)

    def saturated(self, outcome: Sequence[float | None]) -> bool:
        """Whether the skip rule for a whole group applies to these outcomes."""
        known = [r for r in outcome if r is not None]
        if not self.skip_saturated or not known:
            return False
        return all(r >= self.saturated_high for r in known) or all(
            r <= self.saturated_low for r in known
        )

    def to_judge(self, outcome: Sequence[float | None]) -> list[bool]:
        """Which responses of a group the judge is to be asked about."""
        if self.saturated(outcome):
            return [False] * len(outcome)
        low = self.skip_below
        return [r is not None and (low is None or r >= low) for r in outcome]

    def group(
        self,
        outcome: Sequence[float | None],
        thinking: Sequence[float | None],
        *,
        step: int | None = None,
    ) -> GroupReward:
        """Trust-GRPO rewards of one group.

        Args:
            outcome: ``R_o`` per response (None where the outcome reward gave none).
            thinking: ``R_t`` per response for those :meth:`to_judge` selects, None
                where that judgment failed; entries of responses not selected are
                ignored (their ``R_t`` is 0).
            step: The training step, for the annealing.

        Returns:
            The group's rewards and what went into them.
        """
        if len(outcome) != len(thinking):
            raise ValueError(f"{len(outcome)} outcome rewards but {len(thinking)} thinking ones")
        asked = self.to_judge(outcome)
        used: list[float | None] = [
            (r_t if ask else 0.0) if r_o is not None else None
            for r_o, r_t, ask in zip(outcome, thinking, asked, strict=True)
        ]
        saturated = self.saturated(outcome)
        gamma = 1.0
        if self.trust and not saturated:
            gamma = trust_weight(outcome, used, correct_threshold=self.correct_threshold)
        scale = self.scale(step)
        bonus = [None if r_t is None else gamma * scale * r_t for r_t in used]
        rewards = [
            None if r_o is None or b is None else r_o + b
            for r_o, b in zip(outcome, bonus, strict=True)
        ]
        judged = sum(asked)
        failed = sum(1 for ask, r_t in zip(asked, used, strict=True) if ask and r_t is None)
        return GroupReward(
            rewards=tuple(rewards),
            bonus=tuple(bonus),
            thinking=tuple(used),
            gamma=gamma,
            scale=scale,
            judged=judged,
            saved=sum(
                1 for ask, r_o in zip(asked, outcome, strict=True) if not ask and r_o is not None
            ),
            failed=failed,
            saturated=saturated,
        )


def trust_settings(
    outcome_reward: object | None,
    alpha: float,
    anneal_steps: float | None,
    trust: bool,
    skip_saturated: bool,
    skip_below: float | None,
) -> TrustGRPO | None:
    """The Trust-GRPO settings of an adapter, or None without an outcome reward.

    Raises:
        ValueError: ``anneal_steps`` without an outcome reward, or a setting out of range.
    """
    if outcome_reward is None:
        if anneal_steps is not None:
            raise ValueError("anneal_steps applies to Trust-GRPO: it needs an outcome_reward")
        return None
    return TrustGRPO(
        alpha=alpha,
        anneal_steps=anneal_steps,
        trust=trust,
        skip_saturated=skip_saturated,
        skip_below=skip_below,
    )
