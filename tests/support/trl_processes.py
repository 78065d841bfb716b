"""Several TRL processes in one test process: ranks as threads, an all-gather between them.

:class:`ThreadRanks` stands for ``torch.distributed`` in the unit tests: each rank runs
the reward call in a thread of its own, and :meth:`ThreadRanks.collective` gives a
rank's :class:`judge.rl.processes.Collective`. The barrier's timeout only turns a
deadlock (a rank that never enters a gather the others wait in) into a failed test
instead of a hung one; nothing is measured.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

DEADLOCK_SECONDS = 60.0


class ThreadRanks:
    """``world_size`` ranks that gather objects through a shared table and a barrier."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self._barrier = threading.Barrier(world_size, timeout=DEADLOCK_SECONDS)
        self._slots: list[Any] = [None] * world_size
        self.gathers = [0] * world_size
        """How many gathers each rank entered."""

    def collective(self, rank: int) -> RankCollective:
        return RankCollective(self, rank)

    def _all_gather(self, rank: int, value: Any) -> list[Any]:
        self.gathers[rank] += 1
        self._slots[rank] = value
        self._barrier.wait()  # every rank has written
        gathered = list(self._slots)
        self._barrier.wait()  # every rank has read: the slots may be reused
        return gathered

    def run(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run one call per rank, each in its thread; each one's result or exception."""
        results: list[Any] = [None] * len(calls)

        def run_one(rank: int) -> None:
            try:
                results[rank] = calls[rank]()
            except BaseException as error:  # handed back to the test
                results[rank] = error

        threads = [threading.Thread(target=run_one, args=(r,)) for r in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


class RankCollective:
    """One rank's view of :class:`ThreadRanks` (a ``judge.rl.processes.Collective``)."""

    def __init__(self, ranks: ThreadRanks, rank: int) -> None:
        self.ranks = ranks
        self.rank = rank

    def all_gather(self, value: Any) -> list[Any]:
        return self.ranks._all_gather(self.rank, value)


def split(values: Sequence[Any], world_size: int) -> list[list[Any]]:
    """TRL's split of the global batch: equal consecutive parts, by process index."""
    size = len(values) // world_size
    return [list(values[r * size : (r + 1) * size]) for r in range(world_size)]
