"""Trust-GRPO arithmetic on hand-made groups: the trust weight, rewards, skip rules."""

from __future__ import annotations

import math

import pytest

from judge import TrustGRPO, trust_weight


def test_trust_weight_is_one_when_correct_responses_think_better():
    assert trust_weight([1.0, 0.5, 0.3, 0.4], [0.9, 0.7, 0.2, 0.4]) == 1.0
    assert trust_weight([1.0, 1.0], [0.1, 0.2]) == 1.0  # no wrong response
    assert trust_weight([0.3, 0.0], [0.9, 0.1]) == 1.0  # no correct response
    assert trust_weight([1.0, 0.3], [0.5, 0.5]) == 1.0  # a tie is trusted


def test_trust_weight_below_one():
    # mu_correct = (0.2 + 0.4) / 2 = 0.3, mu_wrong = (0.9 + 0.7) / 2 = 0.8
    assert trust_weight([1.0, 0.5, 0.3, 0.4], [0.2, 0.4, 0.9, 0.7]) == pytest.approx(math.exp(-0.5))
    # Unknown thinking rewards (failed judgments) are left out of the means.
    assert trust_weight([1.0, 0.3, 0.3], [0.2, 0.8, None]) == pytest.approx(math.exp(-0.6))


def test_group_rewards_gamma_one():
    group = TrustGRPO().group([1.0, 0.5, 0.3, 0.4], [0.9, 0.7, 0.2, 0.4], step=0)
    assert group.gamma == 1.0
    assert group.scale == pytest.approx(0.3)
    assert group.rewards == pytest.approx((1.27, 0.71, 0.36, 0.52))
    assert group.bonus == pytest.approx((0.27, 0.21, 0.06, 0.12))
    assert (group.judged, group.saved, group.failed, group.saturated) == (4, 0, 0, False)


def test_group_rewards_gamma_below_one_and_annealing():
    cfg = TrustGRPO(alpha=0.3, anneal_steps=100)
    group = cfg.group([1.0, 0.5, 0.3, 0.4], [0.2, 0.4, 0.9, 0.7], step=50)
    gamma = math.exp(-0.5)
    scale = 0.3 * math.exp(-50 / 100)
    assert group.gamma == pytest.approx(gamma)
    assert group.scale == pytest.approx(scale)
    expected = [
        r_o + gamma * scale * r_t for r_o, r_t in [(1.0, 0.2), (0.5, 0.4), (0.3, 0.9), (0.4, 0.7)]
    ]
    assert group.rewards == pytest.approx(tuple(expected))
    assert cfg.scale(0) == pytest.approx(0.3)
    assert cfg.scale(1000) == pytest.approx(0.3 * math.exp(-10))
    with pytest.raises(ValueError, match="training step"):
        cfg.scale(None)


def test_trust_off_keeps_gamma_one():
    group = TrustGRPO(trust=False).group([1.0, 0.3], [0.1, 0.9], step=0)
    assert group.gamma == 1.0
    assert group.rewards == pytest.approx((1.03, 0.57))


@pytest.mark.parametrize(
    "outcome",
    [[1.0, 0.95, 0.9, 1.0], [0.0, 0.1, 0.05, 0.0]],
    ids=["all-right", "all-wrong"],
)
def test_saturated_group_is_not_judged(outcome):
    cfg = TrustGRPO()
    assert cfg.to_judge(outcome) == [False] * 4
    group = cfg.group(outcome, [0.9] * 4, step=0)  # thinking of skipped responses is ignored
    assert group.rewards == pytest.approx(tuple(outcome))
    assert group.thinking == (0.0, 0.0, 0.0, 0.0)
    assert (group.judged, group.saved, group.saturated) == (0, 4, True)
    assert not TrustGRPO(skip_saturated=False).saturated(outcome)


def test_low_outcome_is_not_judged_and_counts_as_zero():
    cfg = TrustGRPO()
    outcome = [1.0, 0.1, 0.6, 0.19, 0.2]
    assert cfg.to_judge(outcome) == [True, False, True, False, True]
    group = cfg.group(outcome, [0.5, None, 0.5, None, 0.9], step=0)
    assert group.thinking == (0.5, 0.0, 0.5, 0.0, 0.9)
    # mu_correct = 0.5; mu_wrong = (0 + 0 + 0.9) / 3 = 0.3 -> trusted
    assert group.gamma == 1.0
    assert (group.judged, group.saved) == (3, 2)
    assert TrustGRPO(skip_below=None).to_judge(outcome) == [True] * 5


def test_failed_judgment_is_none_and_left_out():
    group = TrustGRPO().group([1.0, 0.3, 0.4], [0.2, None, 0.6], step=0)
    assert group.rewards[1] is None
    assert group.bonus[1] is None
    assert group.gamma == pytest.approx(math.exp(0.2 - 0.6))
    assert group.failed == 1


def test_bad_settings():
    with pytest.raises(ValueError, match="alpha"):
        TrustGRPO(alpha=-1)
    with pytest.raises(ValueError, match="anneal_steps"):
        TrustGRPO(anneal_steps=0)
