"""The thinking reward as a reward manager of verl 0.9.1's reward loop, whole groups in view.

verl's trainer builds reward managers from its reward-loop registry or from a module
(``reward.reward_manager.source: register | importlib``, ``verl/trainer/ppo/reward.py``)
inside ``RewardLoopWorker`` Ray actors, and calls ``run_single`` once per sample.
:class:`ThinkingRewardManager` computes the sample's outcome reward with the
``compute_score`` verl hands it, meets the other members of its group (same ``uid``)
at a :class:`~judge.rl.verl_group.GroupGate` shared by every worker (a named Ray actor),
judges the thinking when the skip rules ask for it, meets them again with the thinking
scores, and returns its own Trust-GRPO reward. Select it with::

    reward.reward_manager.source=importlib
    reward.reward_manager.module.path=pkg://judge.rl.verl_manager
    reward.reward_manager.name=ThinkingRewardManager
    +reward.thinking_judge.judge_path=pkg://my_rewards   # judge = ... in my_rewards.py
    +reward.thinking_judge.judge_name=judge

Importing this module registers the class in verl's registry as ``"thinking"`` too.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import ray
from verl.experimental.reward_loop.reward_manager import (  # type: ignore[import-not-found]
    register,
)
from verl.experimental.reward_loop.reward_manager.base import (  # type: ignore[import-not-found]
    RewardManagerBase,
)
from verl.utils.import_utils import load_extern_object  # type: ignore[import-not-found]
from verl.utils.reward_score import default_compute_score  # type: ignore[import-not-found]

from judge.rl.framework import step_from
from judge.rl.planner import describe, judged_value, outcome_value
from judge.rl.trust import TrustGRPO
from judge.rl.verl_group import (
    GroupGate,
    ManagerSettings,
    extra_info_of,
    verl_sample,
)
from judge.types import JudgeRunnable, ThinkingScore

logger = logging.getLogger(__name__)

__all__ = ["GateActor", "ThinkingRewardManager"]

REGISTERED_NAME = "thinking"


class GateActor:
    """The :class:`GroupGate` of all reward workers, as a Ray async actor."""

    def __init__(self) -> None:
        self.gate = GroupGate()

    async def join(
        self, key: str, size: int, outcome: float, timeout: float
    ) -> tuple[int, list[float]] | None:
        """See :meth:`GroupGate.join`."""
        return await self.gate.join(key, size, outcome, timeout)

    async def report(
        self, key: str, slot: int, thinking: float | None, timeout: float
    ) -> list[float | None] | None:
        """See :meth:`GroupGate.report`."""
        return await self.gate.report(key, slot, thinking, timeout)

    async def open_groups(self) -> int:
        """Groups not yet complete (for tests and debugging)."""
        return len(self.gate)


class _RayGate:
    """A handle on the named gate actor, made by the first worker to ask."""

    def __init__(self, name: str) -> None:
        actor = ray.remote(GateActor)
        self.handle: Any = actor.options(
            name=name, get_if_exists=True, max_concurrency=100_000, num_cpus=0
        ).remote()

    async def join(
        self, key: str, size: int, outcome: float, timeout: float
    ) -> tuple[int, list[float]] | None:
        result: tuple[int, list[float]] | None = await self.handle.join.remote(
            key, size, outcome, timeout
        )
        return result

    async def report(
        self, key: str, slot: int, thinking: float | None, timeout: float
    ) -> list[float | None] | None:
        result: list[float | None] | None = await self.handle.report.remote(
            key, slot, thinking, timeout
        )
        return result


def load_judge(settings: ManagerSettings) -> JudgeRunnable:
    """The judge named by the settings: an object, or a function of no arguments."""
    found = load_extern_object(module_path=settings.judge_path, object_name=settings.judge_name)
    if inspect.isfunction(found):
        found = found()
    if not callable(getattr(found, "ainvoke", None)):
        raise TypeError(
            f"{settings.judge_path}:{settings.judge_name} is {type(found).__name__}, "
            "not a judge (a Runnable from a judge input to a ThinkingScore)"
        )
    judge: JudgeRunnable = found
    return judge


@register(REGISTERED_NAME)
class ThinkingRewardManager(RewardManagerBase):  # type: ignore[misc]
    """verl's reward manager with the thinking reward and Trust-GRPO on whole groups.

    Each ``run_single``: the outcome reward ``R_o`` (verl's ``compute_score``: the
    custom reward function, else verl's default for the data source); the group's
    outcomes gathered (same ``uid``; ``rollout.n`` members, ``val_kwargs.n`` for a
    sample whose ``extra_info["split"]`` is a validation split); the thinking judged
    when Trust-GRPO's skip rules ask for it; the group's thinking scores gathered; the
    sample's reward ``R_o + gamma * alpha * R_t`` returned with the details in
    ``reward_extra_info`` (:data:`~judge.rl.verl_group.EXTRA_KEYS`, never NaN).

    A failed judgment never raises: the sample keeps ``R_o`` (``thinking_failed`` = 1)
    and is left out of its group's means. A group that does not complete within
    ``group_timeout`` leaves each waiting member its ``R_o`` (``group_timeout`` = 1).
    A sample without ``uid`` is a group of one.

    Args:
        config: verl's config; the settings are under ``reward.thinking_judge``
            (:class:`~judge.rl.verl_group.ManagerSettings`).
        tokenizer: The policy's tokenizer (decodes the response).
        compute_score: The outcome reward verl hands the manager.
        reward_router_address: verl's reward-model router (passed to compute_score).
        reward_model_tokenizer: verl's reward-model tokenizer (passed on likewise).
        judge: The judge, instead of ``judge_path`` (for tests and Python callers).
    """

    def __init__(
        self,
        config: Any,
        tokenizer: Any,
        compute_score: Callable[..., Any] | None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
        judge: JudgeRunnable | None = None,
    ) -> None:
        super().__init__(config, tokenizer, compute_score)
        self.compute_score = compute_score or default_compute_score
        self.is_async_reward_score = inspect.iscoroutinefunction(self.compute_score)
        self.reward_router_address = reward_router_address
        self.reward_model_tokenizer = reward_model_tokenizer
        reward = config.get("reward", {}) if hasattr(config, "get") else {}
        section = reward.get("thinking_judge") if hasattr(reward, "get") else None
        if judge is not None:
            section = {"judge_path": "<given>", **dict(section or {})}
        rollout = _path(config, "actor_rollout_ref", "rollout")
        self.settings = ManagerSettings.from_config(section, rollout)
        self.trust = TrustGRPO(
            alpha=self.settings.alpha,
            anneal_steps=self.settings.anneal_steps,
            trust=self.settings.trust,
            skip_saturated=self.settings.skip_saturated,
            skip_below=self.settings.skip_below,
        )
        self.judge = judge if judge is not None else load_judge(self.settings)
        # Without a Ray runtime (one process), the actor's class serves in-process.
        self.gate: GateActor | _RayGate = (
            _RayGate(self.settings.gate_name) if ray.is_initialized() else GateActor()
        )

    async def run_single(self, data: Any) -> dict[str, Any]:
        """Score one sample of verl's ``DataProto`` (see the class docstring)."""
        item = data[-1:][0]  # multi-sequence outputs: the last sequence, as verl's naive
        fields: Mapping[str, Any] = item.non_tensor_batch
        response = await self._decode(item)
        extra_info = dict(fields.get("extra_info") or {})
        outcome = await self._outcome(fields, response, extra_info)
        step = step_from(extra_info)
        self.trust.scale(step)  # annealing without a step: fail before any request
        uid = fields.get("uid")
        size = self.settings.size_for(extra_info) if uid is not None else 1
        key, timeout = str(uid), self.settings.group_timeout

        joined = await self.gate.join(key, size, outcome, timeout) if size > 1 else (0, [outcome])
        if joined is None:
            return self._fallback(outcome, size)
        slot, outcomes = joined
        asked = self.trust.to_judge(outcomes)[slot]
        thinking: float | None = None
        tokens: int | None = None
        if asked:
            thinking, tokens = await self._judge(fields, response)
        if size > 1:
            reported = await self.gate.report(key, slot, thinking, timeout)
            if reported is None:
                return self._fallback(outcome, size, judged=asked, thinking=thinking)
        else:
            reported = [thinking]
        group = self.trust.group(outcomes, reported, step=step)
        reward = group.rewards[slot]
        score = outcome if reward is None else reward  # failed: the outcome alone, flagged
        info = extra_info_of(
            score=score,
            outcome=outcome,
            thinking=group.thinking[slot],
            judged=asked,
            gamma=group.gamma,
            group_size=size,
            timed_out=False,
            prompt_tokens=tokens,
        )
        return {"reward_score": score, "reward_extra_info": info}

    async def _decode(self, item: Any) -> str:
        response_ids = item.batch["responses"]
        length = response_ids.shape[-1]
        valid = int(item.batch["attention_mask"][-length:].sum())
        ids = response_ids[:valid]
        text: str = await self.loop.run_in_executor(
            None, lambda: self.tokenizer.decode(ids, skip_special_tokens=True)
        )
        return text

    async def _outcome(
        self, fields: Mapping[str, Any], response: str, extra_info: dict[str, Any]
    ) -> float:
        reward_model = fields.get("reward_model") or {}
        kwargs: dict[str, Any] = {
            "data_source": fields.get("data_source"),
            "solution_str": response,
            "ground_truth": reward_model.get("ground_truth"),
            "extra_info": extra_info,
        }
        if self.reward_router_address is not None:
            kwargs["reward_router_address"] = self.reward_router_address
            kwargs["reward_model_tokenizer"] = self.reward_model_tokenizer
        if self.is_async_reward_score:
            value = await self.compute_score(**kwargs)
        else:
            value = await self.loop.run_in_executor(None, lambda: self.compute_score(**kwargs))
        outcome = outcome_value(value, "the outcome reward")
        if outcome is None:
            raise ValueError("the outcome reward gave no value (None or NaN)")
        return outcome

    async def _judge(
        self, fields: Mapping[str, Any], response: str
    ) -> tuple[float | None, int | None]:
        """``R_t`` (None: failed) and the judge's prompt tokens; never raises."""
        try:
            sample = verl_sample(fields, response)
            results = await self.judge.abatch([sample.judge_input()], return_exceptions=True)
            result: ThinkingScore | BaseException = results[0]
        except Exception as error:  # a bad input fails this judgment, never the step
            result = error
        value = judged_value(result, self.settings.use_expected_score)
        if value is None:
            logger.warning("thinking judgment failed (outcome reward kept): %s", describe(result))
        usage = result.usage if isinstance(result, ThinkingScore) else None
        return value, (usage or {}).get("prompt_tokens")

    def _fallback(
        self, outcome: float, size: int, *, judged: bool = False, thinking: float | None = None
    ) -> dict[str, Any]:
        logger.warning("a group of %d did not complete in time: outcome reward kept", size)
        info = extra_info_of(
            score=outcome,
            outcome=outcome,
            thinking=thinking,
            judged=judged,
            gamma=1.0,
            group_size=size,
            timed_out=True,
            prompt_tokens=None,
        )
        return {"reward_score": outcome, "reward_extra_info": info}


def _path(config: Any, *keys: str) -> Any:
    node = config
    for key in keys:
        node = node.get(key) if hasattr(node, "get") else getattr(node, key, None)
        if node is None:
            return None
    return node
