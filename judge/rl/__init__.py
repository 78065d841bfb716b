"""RL rewards: the thinking judge as a GRPO reward for TRL, verl, EasyR1 and OpenRLHF.

The thinking reward model exists to reward *reasoning* during RL. This package turns a
judge (any :data:`~judge.types.JudgeRunnable`, usually a
:class:`~judge.runnable.ThinkingRewardJudge`) into the reward function each framework
calls:

* :class:`GRPOReward` (async) / :class:`SyncGRPOReward`: a TRL ``GRPOTrainer`` reward
  function, usually made with ``judge.as_reward_func(...)`` (:mod:`judge.rl.trl`);
* ``judge.rl.verl_manager.ThinkingRewardManager``: a reward manager of verl's reward
  loop, with Trust-GRPO on whole groups (:mod:`judge.rl.verl_group` holds what needs no
  verl; import it only where verl is installed);
* :class:`VerlReward`: verl's ``compute_score``, per sample (sync or async) and batched
  (:mod:`judge.rl.verl`);
* :class:`EasyR1Reward`: EasyR1's batch ``compute_score(reward_inputs)``
  (:mod:`judge.rl.easyr1`);
* OpenRLHF's remote reward protocol and local ``reward_func`` (:mod:`judge.rl.openrlhf`,
  served by ``thinking-judge reward-server``).

Every call judges all the completions it needs in ONE batched judge call, never one
request after another, and returns the rewards in input order. A failed judgment is
never a thinking score of 0.

Layout: :mod:`judge.rl.trust` is Trust-GRPO's arithmetic alone (:class:`TrustGRPO`,
:func:`trust_weight`); :mod:`judge.rl.planner` plans a step (which completions to
judge, in which order) and finishes it from the judge's results, with no I/O;
:mod:`judge.rl.base` runs the judge call between the two, once sync and once async;
the adapters only read their framework's arguments (:mod:`judge.rl.framework` is what
the verl and EasyR1 ones share); :mod:`judge.rl.processes` gathers a step's groups across
the processes of a distributed TRL run.
"""

from judge.rl.easyr1 import EasyR1Reward
from judge.rl.planner import RewardStep
from judge.rl.trl import GRPOReward, SyncGRPOReward
from judge.rl.trust import GroupReward, TrustGRPO, trust_weight
from judge.rl.verl import VerlReward

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
