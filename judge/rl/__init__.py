"""RL rewards: Trust-GRPO and the trainer adapters (TRL, verl, EasyR1)."""

from judge.rl.rewards import (
    EasyR1Reward,
    GroupReward,
    GRPOReward,
    RewardStep,
    SyncGRPOReward,
    TrustGRPO,
    VerlReward,
    trust_weight,
)

__all__ = [
    "EasyR1Reward",
    "GRPOReward",
    "GroupReward",
    "RewardStep",
    "SyncGRPOReward",
    "TrustGRPO",
    "VerlReward",
    "trust_weight",
]
