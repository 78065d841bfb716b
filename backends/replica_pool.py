"""Which replica a request goes to: least outstanding requests, ejection, re-admission.

:class:`EndpointPool` is the bookkeeping behind an HTTP backend with several base URLs.
It does no I/O and never sleeps; :class:`backends.replicas.Replicas` drives it from
async code: it asks the pool where to send a request, tells it how the request went,
and runs the health probes it asks for. Its clock is injected, so every rule below is
testable without a network or real time.

Choosing. :meth:`EndpointPool.acquire` returns the live endpoint with the fewest
requests in flight; ties go round robin. Endpoints a request has already tried are
passed as ``avoid``: they are chosen only when no other endpoint is live, so a retry
fails over to another replica whenever there is one.

Ejecting. An attempt that ends in an endpoint fault (the backend decides which:
connection refused or reset, timeout, HTTP 5xx) counts against its endpoint; after
``eject_after`` such faults in a row, with no success in between, the endpoint is
ejected for a cool-down: ``cooldown`` seconds the first time, doubled on each further
ejection, at most ``cooldown_max``. A successful request resets both counts. The only
endpoint of a pool is never ejected: with nowhere else to go, retries and backoff do
the work.

Re-admitting. Once its cool-down is over an ejected endpoint is *due*:
:meth:`EndpointPool.due_probes` hands it out for one health probe at a time. A healthy
probe re-admits it; a failed one ejects it again, for a longer cool-down. A probe not
reported within ``probe_stale_after`` seconds (its event loop stopped, say) is given
up and the endpoint is due again.

Waiting. When no endpoint is live :meth:`~EndpointPool.acquire` returns None;
:meth:`~EndpointPool.seconds_until_due` says when the next probe is due and
:attr:`~EndpointPool.version` changes whenever an endpoint is ejected or re-admitted or
a probe starts or ends, so a waiter can tell whether to look again.

The pool is thread-safe (a backend may be used from several event loops at once);
every method is a few operations under one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["ejected", "re-ejected", "readmitted"]


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A change in an endpoint's state, for the backend to log.

    Attributes:
        index: The endpoint.
        kind: ``"ejected"`` after failed requests, ``"re-ejected"`` after a failed
            probe, ``"readmitted"`` after a healthy one.
        cooldown: Seconds until the next probe (0 when re-admitted).
        failures: Consecutive failed requests that led to an ejection.
        live: How many endpoints are live after the change.
    """

    index: int
    kind: EventKind
    cooldown: float
    failures: int
    live: int


class _Endpoint:
    __slots__ = (
        "ejected_until",
        "ejections",
        "failures",
        "in_flight",
        "last_error",
        "probing_since",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.failures = 0  # consecutive endpoint faults since the last success
        self.ejections = 0  # ejections since the last successful request
        self.ejected_until: float | None = None  # None: live
        self.probing_since: float | None = None
        self.last_error = ""


@dataclass(frozen=True, slots=True)
class EndpointState:
    """A snapshot of one endpoint, for diagnostics and tests.

    Attributes:
        live: Whether requests may go to it.
        in_flight: Requests sent to it and not yet finished.
        failures: Endpoint faults in a row since its last success.
        ejected_for: Seconds left of its cool-down (0 when live or due for a probe).
        probing: Whether a health probe is running.
        last_error: The last endpoint fault reported for it ("" if none).
    """

    live: bool
    in_flight: int
    failures: int
    ejected_for: float
    probing: bool
    last_error: str


class EndpointPool:
    """Least-outstanding-requests choice over replicas, with ejection and probing.

    Args:
        size: How many endpoints (indices ``0 .. size - 1``).
        eject_after: Endpoint faults in a row that eject an endpoint.
        cooldown: Seconds of the first ejection; each further one doubles it.
        cooldown_max: The longest cool-down.
        probe_stale_after: Seconds after which an unreported probe is given up.
        clock: Monotonic seconds (injected for tests).

    Raises:
        ValueError: For a size below 1, ``eject_after`` below 1 or negative times.
    """

    def __init__(
        self,
        size: int,
        *,
        eject_after: int = 2,
        cooldown: float = 1.0,
        cooldown_max: float = 30.0,
        probe_stale_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("an endpoint pool needs at least one endpoint")
        if eject_after < 1:
            raise ValueError("eject_after must be at least 1")
        if cooldown < 0 or cooldown_max < cooldown or probe_stale_after <= 0:
            raise ValueError("need 0 <= cooldown <= cooldown_max and probe_stale_after > 0")
        self.size = size
        self.eject_after = eject_after
        self.cooldown = float(cooldown)
        self.cooldown_max = float(cooldown_max)
        self.probe_stale_after = float(probe_stale_after)
        self.clock = clock
        self.version = 0
        """Changes whenever an endpoint is ejected, re-admitted, or a probe starts or ends."""
        self._endpoints = [_Endpoint() for _ in range(size)]
        self._ejected = 0
        self._cursor = 0
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- choosing

    def acquire(self, avoid: Collection[int] = ()) -> int | None:
        """Take the live endpoint with the fewest requests in flight; None if none is live.

        Ties go round robin. Endpoints in ``avoid`` are taken only when no other is
        live. The caller must :meth:`release` what it acquires.
        """
        with self._lock:
            size, endpoints = self.size, self._endpoints
            start = self._cursor
            self._cursor = (start + 1) % size
            best = fallback = -1
            for step in range(size):
                index = (start + step) % size
                endpoint = endpoints[index]
                if endpoint.ejected_until is not None:
                    continue
                if index in avoid:
                    if fallback < 0 or endpoint.in_flight < endpoints[fallback].in_flight:
                        fallback = index
                elif best < 0 or endpoint.in_flight < endpoints[best].in_flight:
                    best = index
            chosen = best if best >= 0 else fallback
            if chosen < 0:
                return None
            endpoints[chosen].in_flight += 1
            return chosen

    def has_live(self, exclude: Collection[int] = ()) -> bool:
        """Whether an endpoint outside ``exclude`` is live."""
        with self._lock:
            return any(
                e.ejected_until is None and i not in exclude for i, e in enumerate(self._endpoints)
            )

    # ----------------------------------------------------------------- outcomes

    def release(self, index: int, ok: bool | None, error: str = "") -> PoolEvent | None:
        """Report how a request acquired on ``index`` ended.

        Args:
            index: The endpoint.
            ok: True for a reply that shows the endpoint serves (a completion, a 4xx),
                False for an endpoint fault, None when it says nothing either way
                (an unusable body, a cancelled request).
            error: A safe description of the fault, kept for diagnostics.

        Returns:
            The ejection this fault caused, if it caused one.
        """
        with self._lock:
            endpoint = self._endpoints[index]
            endpoint.in_flight -= 1
            if endpoint.ejected_until is not None or ok is None:
                return None  # faults of requests already in flight when it was ejected
            if ok:
                endpoint.failures = endpoint.ejections = 0
                return None
            endpoint.failures += 1
            endpoint.last_error = error
            if endpoint.failures < self.eject_after or self.size == 1:
                return None
            return self._eject(index, endpoint, "ejected")

    # ----------------------------------------------------------------- probing

    def due_probes(self) -> list[int]:
        """Ejected endpoints whose cool-down is over, now marked as being probed.

        The caller must report each probe with :meth:`probe_done`.
        """
        if not self._ejected:  # the common case: no lock needed to know nothing is due
            return []
        with self._lock:
            now = self.clock()
            due: list[int] = []
            for index, endpoint in enumerate(self._endpoints):
                if endpoint.ejected_until is None or endpoint.ejected_until > now:
                    continue
                since = endpoint.probing_since
                if since is None or now - since >= self.probe_stale_after:
                    endpoint.probing_since = now
                    due.append(index)
            if due:
                self.version += 1
            return due

    def probe_done(self, index: int, healthy: bool | None, error: str = "") -> PoolEvent | None:
        """Report a health probe :meth:`due_probes` handed out.

        Args:
            index: The endpoint.
            healthy: True re-admits it, False ejects it again for a longer cool-down,
                None (the probe was cancelled) leaves it due for another probe.
            error: A safe description of a failed probe.

        Returns:
            The re-admission or re-ejection, or None when nothing changed.
        """
        with self._lock:
            endpoint = self._endpoints[index]
            endpoint.probing_since = None
            self.version += 1
            if endpoint.ejected_until is None or healthy is None:
                return None
            if not healthy:
                endpoint.last_error = error or endpoint.last_error
                return self._eject(index, endpoint, "re-ejected")
            endpoint.ejected_until = None
            endpoint.failures = 0
            self._ejected -= 1
            return PoolEvent(index, "readmitted", 0.0, 0, self.size - self._ejected)

    def seconds_until_due(self) -> float | None:
        """Seconds until an ejected endpoint is due for a probe (0 if one is now).

        None when none will become due by time alone: every endpoint is live, or every
        ejected one is being probed (its result changes :attr:`version`).
        """
        if not self._ejected:
            return None
        with self._lock:
            now = self.clock()
            waits = []
            for endpoint in self._endpoints:
                if endpoint.ejected_until is None:
                    continue
                if endpoint.probing_since is None:
                    waits.append(endpoint.ejected_until - now)
                else:
                    waits.append(endpoint.probing_since + self.probe_stale_after - now)
            return max(0.0, min(waits)) if waits else None

    # ----------------------------------------------------------------- diagnostics

    def state(self, index: int) -> EndpointState:
        """A snapshot of endpoint ``index``."""
        with self._lock:
            endpoint = self._endpoints[index]
            until = endpoint.ejected_until
            return EndpointState(
                live=until is None,
                in_flight=endpoint.in_flight,
                failures=endpoint.failures,
                ejected_for=0.0 if until is None else max(0.0, until - self.clock()),
                probing=endpoint.probing_since is not None,
                last_error=endpoint.last_error,
            )

    def last_errors(self) -> list[tuple[int, str]]:
        """``(index, last fault)`` of every ejected endpoint."""
        with self._lock:
            return [
                (index, endpoint.last_error)
                for index, endpoint in enumerate(self._endpoints)
                if endpoint.ejected_until is not None
            ]

    @property
    def live_count(self) -> int:
        """How many endpoints are live."""
        return self.size - self._ejected

    # ----------------------------------------------------------------- internals

    def _eject(self, index: int, endpoint: _Endpoint, kind: EventKind) -> PoolEvent:
        """Eject ``endpoint`` (lock held) for its next cool-down."""
        if endpoint.ejected_until is None:
            self._ejected += 1
        endpoint.ejections += 1
        cooldown = min(self.cooldown_max, self.cooldown * 2.0 ** min(endpoint.ejections - 1, 62))
        endpoint.ejected_until = self.clock() + cooldown
        self.version += 1
        return PoolEvent(index, kind, cooldown, endpoint.failures, self.size - self._ejected)


__all__ = ["EndpointPool", "EndpointState", "PoolEvent"]
