"""verl's reward loop, the pure parts: settings, a sample's fields, the group gate.

verl 0.9.1's reward loop (``verl/experimental/reward_loop/``) calls a reward manager's
``run_single`` once per sample, in several worker processes, and with streamed rewards
as each rollout finishes (``verl/experimental/agent_loop/agent_loop.py``,
``_compute_score``): the members of one group (one ``uid``) reach different workers at
different times. :class:`GroupGate` is where they meet: each member joins with its
outcome reward, waits for the others, and later reports its thinking score and waits
for theirs. :mod:`judge.rl.verl_manager` runs one gate for all workers as a named Ray
actor; this module holds its logic, with no verl and no Ray.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from judge.core.inputs import column_images, info_images, prompt_images, trl_question
from judge.errors import InputError
from judge.rl.planner import Sample

__all__ = [
    "EXTRA_KEYS",
    "GroupGate",
    "ManagerSettings",
    "extra_info_of",
    "verl_sample",
]

EXTRA_KEYS = (
    "score",
    "outcome",
    "thinking",
    "thinking_judged",
    "thinking_failed",
    "gamma",
    "group_size",
    "group_timeout",
    "thinking_prompt_tokens",
)
"""The ``reward_extra_info`` keys of every sample, always all of them, always finite."""

VALIDATION_SPLITS = ("test", "val", "valid", "validation", "eval")


@dataclass(frozen=True)
class ManagerSettings:
    """The manager's settings, from verl's config (``reward.thinking_judge``).

    Attributes:
        judge_path: verl's module path of the judge (``pkg://module`` or a file).
        judge_name: The name in that module: a ``JudgeRunnable``, or a function of no
            arguments returning one.
        group_size: Rollouts per prompt in training (``actor_rollout_ref.rollout.n``).
        val_group_size: Rollouts per prompt in validation
            (``actor_rollout_ref.rollout.val_kwargs.n``).
        validation_splits: ``extra_info["split"]`` values that mark a validation
            sample (verl's preprocessing scripts write ``"train"`` / ``"test"``).
        group_timeout: Seconds a member waits for the rest of its group, per phase;
            then it falls back to its outcome reward, flagged ``group_timeout`` = 1.
        alpha: Weight of the thinking reward.
        anneal_steps: ``T`` of the annealing; needs ``global_step`` in ``extra_info``.
        trust: Apply the trust weight.
        skip_saturated: Judge no member of a saturated group.
        skip_below: Judge no member with an outcome below it.
        use_expected_score: Take the expected score as ``R_t`` when present.
        gate_name: The Ray actor name of the group gate.
    """

    judge_path: str
    judge_name: str = "judge"
    group_size: int = 1
    val_group_size: int = 1
    validation_splits: tuple[str, ...] = VALIDATION_SPLITS
    group_timeout: float = 1800.0
    alpha: float = 0.3
    anneal_steps: float | None = None
    trust: bool = True
    skip_saturated: bool = True
    skip_below: float | None = 0.2
    use_expected_score: bool = True
    gate_name: str = "thinking_judge_group_gate"

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.val_group_size < 1:
            raise ValueError("group sizes must be >= 1")
        if not self.group_timeout > 0:
            raise ValueError(f"group_timeout must be > 0, got {self.group_timeout}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, rollout: Any) -> ManagerSettings:
        """Settings from ``reward.thinking_judge`` and ``actor_rollout_ref.rollout``.

        Raises:
            ValueError: No ``judge_path``, or an unknown key.
        """
        values = dict(section or {})
        if not values.get("judge_path"):
            raise ValueError(
                "set reward.thinking_judge.judge_path (e.g. +reward.thinking_judge.judge_path="
                "pkg://my_rewards) and judge_name: where the manager finds its judge"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown reward.thinking_judge keys {unknown}; known: {sorted(known)}"
            )
        if rollout is not None:
            values.setdefault("group_size", int(_get(rollout, "n", 1)))
            val_kwargs = _get(rollout, "val_kwargs", None)
            if val_kwargs is not None:
                values.setdefault("val_group_size", int(_get(val_kwargs, "n", 1)))
        if "validation_splits" in values:
            values["validation_splits"] = tuple(values["validation_splits"])
        return cls(**values)

    def size_for(self, extra_info: Mapping[str, Any] | None) -> int:
        """The group size of a sample: validation's when its split says so."""
        split = (extra_info or {}).get("split")
        if isinstance(split, str) and split.lower() in self.validation_splits:
            return self.val_group_size
        return self.group_size


def _get(obj: Any, key: str, default: Any) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def verl_sample(fields: Mapping[str, Any], response: str) -> Sample:
    """The judge's sample from one row of verl's ``non_tensor_batch``.

    The question is ``extra_info["question"]`` (or ``"prompt"``), else the text of the
    last user message of ``raw_prompt`` (what verl's ``RLHFDataset`` builds). The
    images: those of ``raw_prompt``'s parts (verl pops the dataset's top-level
    ``images`` column into them), else a top-level ``images`` column or
    ``multi_modal_data``, else ``extra_info``'s. ``<image>`` placeholders are left
    out of the question.

    Raises:
        InputError: No question anywhere.
    """
    extra = fields.get("extra_info")
    extra = extra if isinstance(extra, Mapping) else {}
    raw_prompt = fields.get("raw_prompt")
    question = ""
    for key in ("question", "prompt"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            question = value
            break
    if not question and raw_prompt is not None and not isinstance(raw_prompt, str):
        question = trl_question(list(raw_prompt), "user")
    elif not question and isinstance(raw_prompt, str):
        question = raw_prompt
    question = question.replace("<image>", "").strip()
    if not question:
        raise InputError(
            "the sample carries no question: neither extra_info['question'] nor a user "
            "message in raw_prompt"
        )
    images: tuple[Any, ...] = ()
    if raw_prompt is not None and not isinstance(raw_prompt, str):
        images = prompt_images(list(raw_prompt))
    if not images:
        images = column_images(_listed(fields.get("images")))
    if not images:
        images = info_images({"multi_modal_data": fields.get("multi_modal_data")})
    if not images:
        images = info_images(extra)
    return Sample(question, response, images)


def _listed(value: Any) -> Any:
    """Numpy arrays of images (a Parquet list column) as a list."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) and not isinstance(value, (bytes, str)) else value


def extra_info_of(
    *,
    score: float,
    outcome: float,
    thinking: float | None,
    judged: bool,
    gamma: float,
    group_size: int,
    timed_out: bool,
    prompt_tokens: int | None,
) -> dict[str, float]:
    """A sample's ``reward_extra_info``: every key of :data:`EXTRA_KEYS`, no NaN.

    ``thinking`` is ``R_t`` as Trust-GRPO used it: the judge's score, 0.0 where it was
    not asked (the skip rules) and 0.0 where it failed (``thinking_failed`` = 1 says
    which). verl averages these columns into its validation metrics, so none is NaN.
    """
    failed = judged and thinking is None
    out = {
        "score": float(score),
        "outcome": float(outcome),
        "thinking": 0.0 if thinking is None else float(thinking),
        "thinking_judged": float(judged),
        "thinking_failed": float(failed),
        "gamma": float(gamma),
        "group_size": float(group_size),
        "group_timeout": float(timed_out),
        "thinking_prompt_tokens": float(prompt_tokens or 0),
    }
    for key, value in out.items():
        if not math.isfinite(value):
            raise ValueError(f"reward_extra_info[{key!r}] is {value}")
    return out


@dataclass
class _Group:
    size: int
    outcomes: list[float] = field(default_factory=list)
    thinking: dict[int, float | None] = field(default_factory=dict)
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    reported: asyncio.Event = field(default_factory=asyncio.Event)
    done: int = 0


class GroupGate:
    """Where the members of a group meet, twice: with their outcomes, then their ``R_t``.

    One event loop serves it (a Ray async actor's, or the caller's). Groups that time
    out are remembered (the last ``remember`` of them) so that a member arriving after
    its group gave up does not wait a second time.

    Args:
        remember: How many timed-out group keys to remember.
    """

    def __init__(self, remember: int = 10_000) -> None:
        self._groups: dict[str, _Group] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def __len__(self) -> int:
        return len(self._groups)

    async def join(
        self, key: str, size: int, outcome: float, timeout: float
    ) -> tuple[int, list[float]] | None:
        """Join ``key``'s group with an outcome; wait for all ``size`` members.

        Returns:
            This member's slot and every member's outcome (by slot), or None when the
            group did not complete within ``timeout`` seconds (or gave up before).

        Raises:
            ValueError: More members than ``size``, or ``size`` differs from the group's.
        """
        if key in self._expired:
            return None
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(size)
        if group.size != size:
            raise ValueError(f"group {key!r} has size {group.size}, not {size}")
        if len(group.outcomes) >= size:
            raise ValueError(f"group {key!r} has more than {size} members")
        slot = len(group.outcomes)
        group.outcomes.append(outcome)
        if len(group.outcomes) == size:
            group.joined.set()
        if not await self._wait(key, group.joined, timeout):
            return None
        return slot, list(group.outcomes)

    async def report(
        self, key: str, slot: int, thinking: float | None, timeout: float
    ) -> list[float | None] | None:
        """Report a member's ``R_t`` (None: not judged or failed); wait for all of them.

        Returns:
            Every member's ``R_t`` by slot, or None when the group did not complete.
        """
        group = self._groups.get(key)
        if group is None or key in self._expired:
            return None
        group.thinking[slot] = thinking
        if len(group.thinking) == group.size:
            group.reported.set()
        if not await self._wait(key, group.reported, timeout):
            return None
        values = [group.thinking[i] for i in range(group.size)]
        group.done += 1
        if group.done == group.size:
            del self._groups[key]
        return values

    async def _wait(self, key: str, event: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            self._expire(key)
            return False
        return key not in self._expired

    def _expire(self, key: str) -> None:
        group = self._groups.pop(key, None)
        self._expired[key] = None
        while len(self._expired) > self._remember:
            self._expired.popitem(last=False)
        if group is not None:  # wake the members still waiting: they give up too
            group.joined.set()
            group.reported.set()
