"""The former single module of the RL rewards: its names, from their new modules.

Kept while ``judge.runnable``, ``judge/__init__.py`` and the API docs still name
``judge.rl.rewards``; import from :mod:`judge.rl` instead.
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
