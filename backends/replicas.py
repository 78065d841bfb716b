"""Replicas: an :class:`~backends.replica_pool.EndpointPool` driven from async code.

An HTTP backend with several base URLs sends each attempt to the host
:meth:`Replicas.acquire` picks (the live one with the fewest requests in flight; see
:mod:`backends.replica_pool` for the rules of choosing, ejecting and re-admitting),
waiting while every host is ejected, and reports how the attempt went with
:meth:`Replicas.release`. Health probes of ejected hosts run in the background on
whichever loop first finds a cool-down over, as ``GET`` requests through the
:mod:`backends.transport`; a probe answered below 500 re-admits its host. Requests
never wait for a probe while another host is live. Waiting requests are woken on
their own loops whenever the pool changes. Ejections and re-admissions are logged
(the hosts shown without credentials).

Public API: :class:`Replicas` (``acquire_now``, ``acquire``, ``release``, ``fails_over``,
``out_of_time``, ``clock``, ``pool``, ``aclose_on_current_loop``),
:func:`is_endpoint_fault`, and the pool's :class:`EndpointPool`,
:class:`EndpointState`, :class:`PoolEvent` (re-exported).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING

from yarl import URL

from backends.base import Completion
from backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendTimeoutError,
)
from backends.openai_wire import display_url
from backends.replica_pool import EndpointPool, EndpointState, PoolEvent
from backends.retries import seconds

if TYPE_CHECKING:
    from backends.retries import Tries

logger = logging.getLogger(__name__)


def is_endpoint_fault(error: BackendError) -> bool:
    """Whether ``error`` speaks against the host (connection, timeout, 5xx)."""
    if isinstance(error, (BackendConnectionError, BackendTimeoutError)):
        return True
    return isinstance(error, BackendHTTPError) and error.status >= 500


class Replicas:
    """An :class:`EndpointPool` driven from async code, on any number of event loops.

    Args:
        shown: Each endpoint's base URL as messages show it (no credentials).
        get: The transport's GET, ``(url, timeout=) -> (status, body)``, raising a
            :class:`~backends.errors.BackendError` for a network fault.
        probe_url: The URL a health probe of endpoint ``i`` GETs; a bound method is
            held weakly (the backend owning the replicas stays free to be collected,
            which closes its sessions).
        probe_timeout: Seconds a probe may take.
        eject_after: See :class:`EndpointPool`.
        cooldown: See :class:`EndpointPool`.
        cooldown_max: See :class:`EndpointPool`.
    """

    def __init__(
        self,
        shown: Sequence[str],
        *,
        get: Callable[..., Awaitable[tuple[int, bytes]]],
        probe_url: Callable[[int], URL],
        probe_timeout: float = 5.0,
        eject_after: int = 2,
        cooldown: float = 1.0,
        cooldown_max: float = 30.0,
    ) -> None:
        self.shown = tuple(shown)
        self.pool = EndpointPool(
            len(shown),
            eject_after=eject_after,
            cooldown=cooldown,
            cooldown_max=cooldown_max,
            probe_stale_after=2 * probe_timeout,
        )
        self.probe_timeout = probe_timeout
        self._get = get
        self._probe_url = (
            weakref.WeakMethod(probe_url) if inspect.ismethod(probe_url) else lambda: probe_url
        )
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._waiters_lock = threading.Lock()
        self._probes: dict[asyncio.AbstractEventLoop, set[asyncio.Task[None]]] = {}

    def clock(self) -> float:
        """The pool's clock (a request's deadline runs on it)."""
        return self.pool.clock()

    def fails_over(self, error: BackendError, tries: Tries) -> bool:
        """Whether a retry after ``error`` fails over, for free, to a host not yet tried."""
        return is_endpoint_fault(error) and self.pool.has_live(exclude=tries.tried)

    def acquire_now(self, tried: Collection[int], deadline: float) -> int | None:
        """A live host for the next attempt without waiting, or None (then :meth:`acquire`).

        Starts the probes that are due. None when no host is live or ``deadline`` (on
        :meth:`clock`) has passed.
        """
        self._start_probes()
        if deadline <= self.pool.clock():
            return None
        return self.pool.acquire(tried)

    async def acquire(self, tried: Collection[int], deadline: float) -> int | None:
        """A host for the next attempt; waits while every one is ejected.

        Returns None once ``deadline`` (on :meth:`clock`) has passed.
        """
        pool = self.pool
        waiting = False
        while True:
            self._start_probes()
            version = pool.version
            left = deadline - pool.clock()
            if left <= 0:
                return None
            endpoint = pool.acquire(tried)
            if endpoint is not None:
                return endpoint
            if not waiting:
                waiting = True
                logger.debug(
                    "every host is ejected; waiting up to %s s for one to return", seconds(left)
                )
            due = pool.seconds_until_due()
            await self._wait(version, left if due is None else max(min(left, due), 1e-3))

    def release(self, endpoint: int, result: Completion | BackendError | None) -> None:
        """Tell the pool how an attempt on ``endpoint`` went (None: cancelled)."""
        if result is None or isinstance(result, Completion):
            ok: bool | None = None if result is None else True
        elif is_endpoint_fault(result):
            ok = False
        else:  # a 4xx shows the host serves; an unusable body says little
            ok = True if isinstance(result, BackendHTTPError) else None
        event = self.pool.release(endpoint, ok, str(result) if ok is False else "")
        if event is not None:
            self._log(event)
            self._notify()

    def out_of_time(self, error: BackendError | None, deadline: str, backend: str) -> BackendError:
        """The error for a request whose deadline passed before it could be sent again."""
        if self.pool.live_count == 0:
            why = f"no host came back within the {deadline} s deadline"
        else:
            why = f"the {deadline} s deadline passed"
        if error is not None:
            error.args = (f"{error.args[0] if error.args else error}; gave up: {why}",)
            return error
        faults = "; ".join(
            f"{self.shown[index]}: {fault}" for index, fault in self.pool.last_errors()[:3] if fault
        )
        return BackendConnectionError(
            f"never sent: every host is ejected after failing ({faults or 'no detail'}); {why}",
            backend=backend,
            attempts=0,
        )

    async def aclose_on_current_loop(self) -> None:
        """Cancel the running loop's probes."""
        probes = self._probes.pop(asyncio.get_running_loop(), set())
        for task in probes:
            task.cancel()
        if probes:
            await asyncio.gather(*probes, return_exceptions=True)

    # ------------------------------------------------------------------ internals

    async def _wait(self, version: int, timeout: float) -> None:
        """Wait until the pool's version moves on from ``version``, at most ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        with self._waiters_lock:
            if self.pool.version != version:
                return
            self._waiters.add(waiter)
        try:
            if math.isinf(timeout):
                await future
            else:
                await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        finally:
            with self._waiters_lock:
                self._waiters.discard(waiter)

    def _notify(self) -> None:
        """Wake every request waiting for the pool to change, on whatever loop."""
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(_wake, future)

    def _start_probes(self) -> None:
        """Start a background health probe for each host whose cool-down is over."""
        due = self.pool.due_probes()
        if not due:
            return
        self._notify()  # the pool changed: waiters re-read it
        loop = asyncio.get_running_loop()
        tasks = self._probes.setdefault(loop, set())

        def forget(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not tasks and self._probes.get(loop) is tasks:
                del self._probes[loop]  # hold no closed loop

        for endpoint in due:
            task = loop.create_task(self._probe(endpoint))
            tasks.add(task)
            task.add_done_callback(forget)

    async def _probe(self, endpoint: int) -> None:
        """GET the host's health URL and tell the pool whether it answered below 500."""
        probe_url = self._probe_url()
        if probe_url is None:  # its backend is gone
            self.pool.probe_done(endpoint, None)
            return
        url = probe_url(endpoint)
        shown = display_url(url)
        healthy: bool | None = None
        why = ""
        try:
            status, _ = await self._get(url, timeout=self.probe_timeout)
            healthy = status < 500
            why = f"health probe {shown}: HTTP {status}"
        except BackendError as exc:
            healthy = False
            why = f"health probe: {exc}"
        except Exception as exc:  # e.g. the session closed under it: probe again later
            logger.debug("health probe of %s abandoned: %s", shown, type(exc).__name__)
        finally:
            event = self.pool.probe_done(endpoint, healthy, why)
            if event is not None:
                self._log(event)
            self._notify()

    def _log(self, event: PoolEvent) -> None:
        shown, size = self.shown[event.index], self.pool.size
        if event.kind == "readmitted":
            logger.info(
                "%s re-admitted after a healthy probe (%d of %d hosts live)",
                shown,
                event.live,
                size,
            )
            return
        last = self.pool.state(event.index).last_error
        if event.kind == "ejected":
            logger.warning(
                "%s ejected for %.3g s after %d failures in a row (%d of %d hosts live): %s",
                shown,
                event.cooldown,
                event.failures,
                event.live,
                size,
                last,
            )
        else:
            logger.info("%s still down; next probe in %.3g s: %s", shown, event.cooldown, last)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = [
    "EndpointPool",
    "EndpointState",
    "PoolEvent",
    "Replicas",
    "is_endpoint_fault",
]
