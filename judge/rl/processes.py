"""One reward step spread over several training processes (no I/O of its own).

TRL's ``GRPOTrainer`` calls the reward function on every process with that process's
part of the generation batch. Its ``RepeatSampler`` puts a prompt's ``num_generations``
completions next to each other in the GLOBAL batch, and the batch is cut into equal
consecutive parts by process index, so with ``per_device_train_batch_size`` smaller
than ``num_generations`` (or not a multiple of it) a group spans processes. TRL only
needs the global batch to be whole groups: it gathers the rewards
(``accelerate.utils.gather``) and normalizes them per group itself.

Trust-GRPO needs whole groups too (the skip rules and ``gamma`` read the whole group's
outcomes and thinking scores), so a step across processes goes:

1. each process reads its part and computes its outcomes; a :class:`Part` (counts,
   outcomes, group edges; no prompts or images unless groups are found by prompt) is
   gathered from every process;
2. every process lays out the same global batch from the parts (:func:`layout`) and
   chooses the same completions to judge; each judges only its own;
3. each process's ``R_t`` values are gathered, every process weighs the whole groups,
   and keeps its own slice (:func:`local_step`), in TRL's order.

Every process enters each gather exactly as often as every other: an error on one
process (a bad argument, an outcome reward that raises) travels through the gather and
is raised on every process after it, so none waits forever for one that gave up. A
failed judgment is no error here: it is a None ``R_t``, as with one process.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from judge.rl.planner import Plan, Planner, RewardStep, Sample, same_key

__all__ = [
    "Collective",
    "Gather",
    "JudgeCall",
    "Judged",
    "Layout",
    "Part",
    "ProcessFailed",
    "TorchCollective",
    "adrive",
    "default_collective",
    "drive",
    "judged",
    "layout",
    "local_step",
    "part_of",
    "raise_failures",
    "spread_finish",
    "spread_plan",
    "spread_step",
]


@runtime_checkable
class Collective(Protocol):
    """How the processes of a run exchange objects: an all-gather, and who is who.

    Attributes:
        rank: This process's index (TRL's ``accelerator.process_index``).
    """

    rank: int

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order; every process must call it."""
        ...


class TorchCollective:
    """:class:`Collective` over ``torch.distributed`` (what accelerate and TRL run on).

    ``all_gather_object`` pickles each value; with NCCL it stages the bytes on the
    process's GPU, which is selected from ``LOCAL_RANK`` in the calling thread (TRL
    awaits async rewards on a thread of its own, whose current device is not set).
    """

    def __init__(self) -> None:
        import torch.distributed as dist

        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order."""
        import torch
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered


def default_collective() -> Collective | None:
    """``torch.distributed``'s processes when a run of more than one is set up, else None."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    return TorchCollective()


class ProcessFailed(RuntimeError):
    """Another process of the run failed the reward step; this one stops with it."""


@dataclass(frozen=True)
class Part:
    """What one process tells the others before anything is judged.

    Attributes:
        count: Its completions.
        outcome: ``R_o`` of each, or None without an outcome reward.
        runs: The sizes of its runs of equal group keys (only when groups are found by
            key, without ``num_generations``).
        edges: Its first and last group keys (same condition), to join the runs that
            continue on the next process.
        error: Why it failed, if it did (then the rest is empty).
    """

    count: int = 0
    outcome: list[float | None] | None = None
    runs: list[int] = field(default_factory=list)
    edges: tuple[Any, Any] | None = None
    error: str | None = None

    @classmethod
    def failed(cls, error: BaseException) -> Part:
        """The part of a process that failed (its error's class and message only)."""
        return cls(error=f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Judged:
    """What one process tells the others after judging its own completions.

    Attributes:
        values: ``R_t`` of each of its completions (None: not judged, or failed).
        errors: Why each of its failed judgments failed.
        error: Why its judge call failed as a whole, if it did.
    """

    values: list[float | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def failed(cls, error: BaseException) -> Judged:
        """The reply of a process whose judge call raised."""
        return cls(error=f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Layout:
    """The global batch as every process sees it, and where this process's part is.

    Attributes:
        groups: The global groups, as ranges of global indices.
        outcome: ``R_o`` per global completion, or None.
        start: This process's first global index.
        count: This process's completions.
        total: Completions of every process.
    """

    groups: list[range]
    outcome: list[float | None] | None
    start: int
    count: int
    total: int

    def local(self, order: Sequence[int]) -> list[int]:
        """This process's entries of a global ``order``, as local indices."""
        stop = self.start + self.count
        return [i - self.start for i in order if self.start <= i < stop]


def raise_failures(errors: Sequence[str | None], rank: int, own: BaseException | None) -> None:
    """Raise on every process when any process failed.

    Args:
        errors: Each process's error, None where it did not fail.
        rank: This process's rank.
        own: This process's own exception, raised as it is.

    Raises:
        ProcessFailed: Another process failed (this one did not).
    """
    if own is not None:
        raise own
    failed = [(r, e) for r, e in enumerate(errors) if e is not None and r != rank]
    if failed:
        r, error = failed[0]
        raise ProcessFailed(f"process {r} failed the reward step: {error}")


def part_of(
    keys: Sequence[Any], outcome: list[float | None] | None, num_generations: int | None
) -> Part:
    """This process's :class:`Part`: its outcomes, and its runs of keys when needed."""
    if num_generations is not None or not keys:
        return Part(count=len(keys), outcome=outcome)
    runs: list[int] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or not same_key(keys[i], keys[start]):
            runs.append(i - start)
            start = i
    return Part(count=len(keys), outcome=outcome, runs=runs, edges=(keys[0], keys[-1]))


def layout(parts: Sequence[Part], rank: int, num_generations: int | None) -> Layout:
    """The global batch from every process's part (the same on every process).

    Args:
        parts: Each process's part, in rank order (none failed).
        rank: This process's rank.
        num_generations: Group size; None joins runs of equal keys across processes.

    Raises:
        ValueError: The global batch is not whole groups of ``num_generations``, or the
            processes disagree on whether there is an outcome reward.
    """
    total = sum(part.count for part in parts)
    start = sum(part.count for part in parts[:rank])
    groups: list[range] = []
    if num_generations is not None:
        if total % num_generations:
            raise ValueError(
                f"{total} completions over {len(parts)} processes are not whole groups of "
                f"num_generations={num_generations}"
            )
        groups = [range(i, i + num_generations) for i in range(0, total, num_generations)]
    else:
        offset, last = 0, None
        for part in parts:
            if not part.count or part.edges is None:
                continue
            runs = list(part.runs)
            if groups and last is not None and same_key(last, part.edges[0]):
                joined = groups.pop()  # the run goes on from the previous process
                groups.append(range(joined.start, offset + runs.pop(0)))
                offset = groups[-1].stop
            for size in runs:
                groups.append(range(offset, offset + size))
                offset += size
            last = part.edges[1]
    with_outcome = {part.outcome is not None for part in parts if part.count}
    if len(with_outcome) > 1:
        raise ValueError("some processes have an outcome reward and some do not")
    outcome = None
    if with_outcome == {True}:
        outcome = [value for part in parts for value in (part.outcome or [])]
    return Layout(groups, outcome, start, parts[rank].count, total)


def local_step(
    whole: RewardStep, where: Layout, scores: dict[int, Any], errors: list[str]
) -> RewardStep:
    """This process's slice of the whole batch's step, with its own scores and errors.

    The metrics are the whole batch's (TRL averages a metric over processes: the same
    value on each keeps it).
    """
    part = slice(where.start, where.start + where.count)
    return RewardStep(
        rewards=whole.rewards[part],
        thinking=whole.thinking[part],
        bonus=whole.bonus[part],
        gamma=whole.gamma[part],
        outcome=None if whole.outcome is None else whole.outcome[part],
        scores=scores,
        metrics=dict(whole.metrics),
        errors=errors,
    )


def spread_plan(
    planner: Planner, parts: Sequence[Part], rank: int, samples: list[Sample], trainer_state: Any
) -> tuple[Layout, list[int], Plan]:
    """The whole batch's layout and judging order, and this process's share of it.

    Raises:
        ValueError: Not whole groups, or annealing without the step (on every process).
    """
    where = layout(parts, rank, planner.num_generations)
    step = getattr(trainer_state, "global_step", None)
    order = planner.order(where.groups, where.outcome, step)
    outcome = where.outcome
    if outcome is not None:
        outcome = outcome[where.start : where.start + where.count]
    return where, order, Plan(samples, [], outcome, step, where.local(order))


def judged(planner: Planner, plan: Plan, results: Sequence[Any]) -> Judged:
    """What this process tells the others of its judgments (one result per ``plan.order``)."""
    values, _, errors = planner.values(len(plan.samples), plan.order, results)
    return Judged(values, errors)


def spread_finish(
    planner: Planner,
    replies: Sequence[Judged],
    where: Layout,
    order: list[int],
    plan: Plan,
    results: Sequence[Any],
) -> RewardStep:
    """Weigh the whole groups from every process's ``R_t``; keep this process's slice."""
    values = [value for reply in replies for value in reply.values]
    errors = [error for reply in replies for error in reply.errors]
    whole = planner.weigh(where.groups, where.outcome, plan.step, order, values, errors)
    _, scores, own = planner.values(len(plan.samples), plan.order, results)
    return local_step(whole, where, scores, own)


@dataclass(frozen=True)
class Gather:
    """What :func:`spread_step` asks for: ``item`` all-gathered from every process."""

    item: Part | Judged


@dataclass(frozen=True)
class JudgeCall:
    """What :func:`spread_step` asks for: ``inputs`` judged (exceptions returned, not raised)."""

    inputs: list[Any]


Step = Generator[Gather | JudgeCall, Any, RewardStep]
"""A step across processes: it yields what it needs, is sent the answers, returns the step."""


def spread_step(
    planner: Planner,
    rank: int,
    prepared: tuple[list[Sample], Part] | Exception,
    trainer_state: Any,
) -> Step:
    """One reward step across processes, without I/O (driven by :func:`drive` / :func:`adrive`).

    Args:
        planner: This process's planner (the same settings on every process).
        rank: This process's index.
        prepared: This process's samples and the part it tells the others, or the error
            that reading its arguments raised (told to the others, raised everywhere).
        trainer_state: TRL's trainer state (its ``global_step``).

    Yields:
        A :class:`Gather` (sent back: one item per process, in rank order), then a
        :class:`JudgeCall` when this process has completions to judge (sent back: one
        result per input; an exception thrown in instead fails this process's
        judgments, told to the others), then a :class:`Gather` of the judgments.

    Returns:
        This process's slice of the whole step.

    Raises:
        ProcessFailed: Another process failed (after the same gathers).
    """
    own: Exception | None = prepared if isinstance(prepared, Exception) else None
    samples: list[Sample] = []
    if isinstance(prepared, Exception):
        part = Part.failed(prepared)
    else:
        samples, part = prepared
    parts: Sequence[Part] = yield Gather(part)
    raise_failures([p.error for p in parts], rank, own)
    where, order, plan = spread_plan(planner, parts, rank, samples, trainer_state)
    results: Sequence[Any] = ()
    try:
        if plan.order:
            results = yield JudgeCall(plan.inputs())
        mine = judged(planner, plan, results)
    except Exception as error:
        own, mine = error, Judged.failed(error)
    replies: Sequence[Judged] = yield Gather(mine)
    raise_failures([r.error for r in replies], rank, own)
    return spread_finish(planner, replies, where, order, plan, results)


def drive(
    step: Step,
    gather: Callable[[Part | Judged], Sequence[Any]],
    judge: Callable[[list[Any]], Sequence[Any]],
) -> RewardStep:
    """Run ``step`` with blocking calls: ``gather`` for a :class:`Gather`, ``judge`` else."""
    reply: Any = None
    failure: Exception | None = None
    while True:
        try:
            request = step.throw(failure) if failure is not None else step.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        failure = None
        try:
            reply = gather(request.item) if isinstance(request, Gather) else judge(request.inputs)
        except Exception as error:
            failure = error


async def adrive(
    step: Step,
    gather: Callable[[Part | Judged], Awaitable[Sequence[Any]]],
    judge: Callable[[list[Any]], Awaitable[Sequence[Any]]],
) -> RewardStep:
    """:func:`drive`, awaiting ``gather`` and ``judge``."""
    reply: Any = None
    failure: Exception | None = None
    while True:
        try:
            request = step.throw(failure) if failure is not None else step.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        failure = None
        try:
            if isinstance(request, Gather):
                reply = await gather(request.item)
            else:
                reply = await judge(request.inputs)
        except Exception as error:
            failure = error
