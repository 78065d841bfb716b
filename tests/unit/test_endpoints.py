"""EndpointPool: least outstanding requests, ejection, probing and re-admission.

Pure bookkeeping with an injected clock: no network, no sleeping.
"""

from __future__ import annotations

import threading

import pytest
from fake_clock import FakeClock

from backends.replica_pool import EndpointPool


def make(size: int = 3, **kwargs) -> tuple[EndpointPool, FakeClock]:
    clock = FakeClock()
    kwargs.setdefault("cooldown", 1.0)
    kwargs.setdefault("cooldown_max", 30.0)
    return EndpointPool(size, clock=clock, **kwargs), clock


def fail(pool: EndpointPool, index: int, times: int = 1, error: str = "boom"):
    event = None
    for _ in range(times):
        pool._endpoints[index].in_flight += 1  # as if acquired
        event = pool.release(index, False, error)
    return event


# --------------------------------------------------------------------------- choosing


def test_ties_go_round_robin():
    pool, _ = make(3)
    chosen = []
    for _ in range(6):
        index = pool.acquire()
        chosen.append(index)
        pool.release(index, True)
    assert chosen == [0, 1, 2, 0, 1, 2]


def test_fewest_requests_in_flight_wins():
    pool, _ = make(3)
    assert [pool.acquire() for _ in range(3)] == [0, 1, 2]
    assert pool.acquire() == 0  # all at 1: round robin goes on
    assert pool.acquire() == 1  # 0 has 2 in flight now
    pool.release(2, True)  # 2 has none left
    assert pool.acquire() == 2
    assert pool.acquire() == 2  # 0 and 1 have 2, 2 has 1
    assert [pool.state(i).in_flight for i in range(3)] == [2, 2, 2]


def test_avoided_endpoints_only_when_nothing_else_is_live():
    pool, _ = make(3, eject_after=1)
    for _ in range(10):
        index = pool.acquire(avoid={0, 1})
        assert index == 2
        pool.release(index, True)
    assert pool.acquire(avoid={0, 1, 2}) in (0, 1, 2)  # everything tried: any live one
    fail(pool, 2)
    assert pool.acquire(avoid={0}) == 1
    fail(pool, 1)
    assert pool.acquire(avoid={0}) == 0  # the only live one, though tried
    assert pool.has_live() is True
    assert pool.has_live(exclude={0}) is False


# --------------------------------------------------------------------------- ejection


def test_ejected_after_consecutive_faults_only():
    pool, _ = make(2, eject_after=2)
    assert fail(pool, 0) is None
    pool._endpoints[0].in_flight += 1
    pool.release(0, True)  # a success in between: the count starts again
    assert fail(pool, 0) is None
    pool._endpoints[0].in_flight += 1
    pool.release(0, None)  # an unusable body says nothing either way
    event = fail(pool, 0, error="connection refused")
    assert event is not None
    assert (event.index, event.kind, event.cooldown, event.failures, event.live) == (
        0,
        "ejected",
        1.0,
        2,
        1,
    )
    state = pool.state(0)
    assert not state.live
    assert state.ejected_for == 1.0
    assert state.last_error == "connection refused"
    assert pool.live_count == 1
    assert pool.last_errors() == [(0, "connection refused")]
    assert all(pool.acquire() == 1 for _ in range(5))


def test_the_only_endpoint_is_never_ejected():
    pool, _ = make(1, eject_after=1)
    assert fail(pool, 0, times=10) is None
    assert pool.state(0).live
    assert pool.acquire() == 0
    assert pool.due_probes() == []
    assert pool.seconds_until_due() is None


def test_every_endpoint_ejected_means_none_to_acquire():
    pool, clock = make(2, eject_after=1)
    version = pool.version
    fail(pool, 0)
    fail(pool, 1)
    assert pool.version > version
    assert pool.acquire() is None
    assert pool.live_count == 0
    assert pool.seconds_until_due() == 1.0
    clock.advance(0.25)
    assert pool.seconds_until_due() == 0.75


def test_faults_of_requests_already_in_flight_are_ignored():
    pool, clock = make(2, eject_after=1)
    for _ in range(3):
        pool._endpoints[0].in_flight += 1
    assert pool.release(0, False, "first").kind == "ejected"
    assert pool.release(0, False, "second") is None  # not ejected again, no longer cool-down
    assert pool.release(0, True) is None  # a late success does not re-admit it either
    state = pool.state(0)
    assert (state.live, state.in_flight, state.ejected_for, state.last_error) == (
        False,
        0,
        1.0,
        "first",
    )
    clock.advance(1.0)
    assert pool.due_probes() == [0]


# --------------------------------------------------------------------------- probes


def test_probe_only_after_the_cooldown_and_one_at_a_time():
    pool, clock = make(2, eject_after=1, probe_stale_after=10.0)
    fail(pool, 0)
    assert pool.due_probes() == []
    clock.advance(0.999)
    assert pool.due_probes() == []
    clock.advance(0.001)
    version = pool.version
    assert pool.due_probes() == [0]
    assert pool.version > version  # a probe starting is a change waiters look at
    assert pool.state(0).probing
    assert pool.due_probes() == []  # already being probed
    assert pool.seconds_until_due() == 10.0  # until the probe would be stale
    clock.advance(10.0)
    assert pool.due_probes() == [0]  # never reported: given up, probed again


def test_healthy_probe_readmits():
    pool, clock = make(2, eject_after=1)
    fail(pool, 0)
    clock.advance(1.0)
    [index] = pool.due_probes()
    event = pool.probe_done(index, True)
    assert event is not None
    assert (event.kind, event.live) == ("readmitted", 2)
    assert pool.state(0).live
    assert not pool.state(0).probing
    assert pool.live_count == 2
    assert pool.seconds_until_due() is None
    assert sorted(pool.acquire() for _ in range(2)) == [0, 1]


def test_cooldown_doubles_up_to_the_cap():
    pool, clock = make(2, eject_after=1, cooldown=1.0, cooldown_max=5.0)
    cooldowns = [fail(pool, 0).cooldown]
    for _ in range(4):
        clock.advance(cooldowns[-1])
        assert pool.due_probes() == [0]
        event = pool.probe_done(0, False, "still refused")
        assert event.kind == "re-ejected"
        cooldowns.append(event.cooldown)
    assert cooldowns == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert pool.state(0).last_error == "still refused"


def test_growth_is_kept_until_a_request_succeeds():
    pool, clock = make(2, eject_after=1, cooldown=1.0)
    assert fail(pool, 0).cooldown == 1.0
    clock.advance(1.0)
    pool.due_probes()
    pool.probe_done(0, True)  # healthy, but its next request fails again: flapping
    assert fail(pool, 0).cooldown == 2.0
    clock.advance(2.0)
    pool.due_probes()
    pool.probe_done(0, True)
    pool._endpoints[0].in_flight += 1
    pool.release(0, True)  # a real success resets the growth
    assert fail(pool, 0).cooldown == 1.0


def test_cancelled_probe_leaves_the_endpoint_due():
    pool, clock = make(2, eject_after=1)
    fail(pool, 0)
    clock.advance(1.0)
    assert pool.due_probes() == [0]
    version = pool.version
    assert pool.probe_done(0, None) is None
    assert pool.version > version  # waiters look again
    assert not pool.state(0).live
    assert pool.seconds_until_due() == 0.0
    assert pool.due_probes() == [0]


def test_probe_of_a_live_endpoint_changes_nothing():
    pool, _ = make(2)
    assert pool.probe_done(1, False) is None
    assert pool.state(1).live


# --------------------------------------------------------------------------- misc


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"eject_after": 0},
        {"cooldown": -1.0},
        {"cooldown": 5.0, "cooldown_max": 1.0},
        {"probe_stale_after": 0.0},
    ],
)
def test_invalid_settings(kwargs):
    size = kwargs.pop("size", 2)
    with pytest.raises(ValueError, match=r"endpoint|eject_after|cooldown"):
        EndpointPool(size, **kwargs)


def test_thread_safe_accounting():
    pool, _ = make(4, eject_after=10**9)

    def hammer() -> None:
        for i in range(2000):
            index = pool.acquire()
            pool.release(index, i % 3 != 0)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [pool.state(i).in_flight for i in range(4)] == [0, 0, 0, 0]
    assert pool.live_count == 4
