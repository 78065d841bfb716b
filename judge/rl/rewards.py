"""The former single module of the RL rewards: its names, from their new modules.

Kept only while the API reference (``docs/api.md``) renders ``judge.rl.rewards``;
import from :mod:`judge.rl` instead. Delete this module once that page names
:mod:`judge.rl` and its modules.
"""

from judge.rl import (
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
