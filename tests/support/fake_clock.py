"""A monotonic clock that moves only when told: for deadlines, cool-downs and probes."""

from __future__ import annotations


class FakeClock:
    """Seconds that advance only through :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
