"""runc's events in the runtime: the figures of a container once (`stats`) or every interval (`events`), on a clock
of the test's own: the ticks, rounds the cluster cannot answer, and the stream's end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime
from pveoci.runtime import figures as events_module
from tests.inmemory import tiny_bundle


class Clock:
    """A clock that moves only when the stream sleeps (or a round takes `work` seconds)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.naps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


@pytest.fixture
def web(rt: Runtime, tmp_path: Path, memory: MemoryBackend) -> int:
    return rt.run("web", tiny_bundle(tmp_path / "b")).vmid


def stream(rt: Runtime, clock: Clock, interval: float = 5.0):  # type: ignore[no-untyped-def]
    return events_module.events(rt._ctx, "web", interval, clock=clock, sleep=clock.sleep)


def test_stats_are_the_status_figures(rt: Runtime, web: int, memory: MemoryBackend) -> None:
    memory.cts[web].figures = {"mem": 1234, "netin": 99}
    stats = rt.stats("web")
    assert (stats.id, stats.guest.vmid, stats.guest.mem, stats.guest.netin) == ("web", web, 1234, 99)
    assert stats.guest.maxmem == 512 * 1024 * 1024


def test_the_first_figures_come_after_one_interval_then_one_per_interval(rt: Runtime, web: int) -> None:
    clock = Clock()
    got = stream(rt, clock)
    times = []
    for _ in range(3):
        next(got)
        times.append(clock.now)
    assert times == [5.0, 10.0, 15.0]


def test_a_long_round_is_followed_at_once_and_the_missed_ticks_are_dropped(rt: Runtime, web: int) -> None:
    clock = Clock()
    got = stream(rt, clock, interval=1.0)
    next(got)                  # at 1
    clock.now += 3.5           # the reader took 3.5 s over it: ticks 2, 3 and 4 missed
    next(got)                  # one waited: at once
    assert clock.now == 4.5
    next(got)
    assert clock.now == 5.5    # then one per interval again


def test_a_round_the_cluster_cannot_answer_is_skipped_with_a_warning(rt: Runtime, web: int, memory: MemoryBackend,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    got = stream(rt, clock)
    next(got)
    memory.fail("status", errors.ConnectError("connection refused"))
    with caplog.at_level(logging.WARNING, logger="pveoci"):
        next(got)
    assert clock.now == 15.0   # the round at 10 was skipped
    assert "container web: no figures this round: connection refused" in caplog.text


@pytest.mark.parametrize("end", ["stop", "delete"])
def test_the_stream_ends_when_the_container_stops_or_goes(rt: Runtime, web: int, memory: MemoryBackend,
                                                          end: str) -> None:
    clock = Clock()
    got = stream(rt, clock)
    next(got)
    memory.exit(web, 0)
    if end == "delete":
        rt.delete("web")
    assert list(got) == []


def test_the_stream_follows_a_container_that_moved(rt: Runtime, web: int, memory: MemoryBackend) -> None:
    got = stream(rt, Clock())
    assert next(got).guest.node == "pve1"
    memory.cts[web].node = "pve2"   # moved behind pveoci's back: the cache's guess is wrong
    assert next(got).guest.node == "pve2"


def test_a_stopped_container_has_no_figures(rt: Runtime, web: int, memory: MemoryBackend) -> None:
    memory.exit(web, 0)
    for call in (lambda: rt.stats("web"), lambda: next(rt.events("web"))):
        with pytest.raises(errors.NotRunning) as err:
            call()
        assert (err.value.exit_code, err.value.message) == (21, "container with id web is not running")


def test_an_interval_must_be_positive(rt: Runtime, web: int) -> None:
    with pytest.raises(errors.InvalidParameter):
        next(rt.events("web", interval=0))
