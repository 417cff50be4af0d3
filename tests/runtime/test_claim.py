"""One id, one container: creates that race for the same id never both keep it (runtime.claim).

The real `claim` runs in threads that a scheduler lets take one step at a time, in an order a seed
chooses; every read and write of the cluster is a step, and time passes only when the scheduler
says so. Hundreds of orders are tried, with the contenders registering at different moments.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pveoci.backends.memory import MemoryBackend
from pveoci.cache import Cache
from pveoci.models import Guest
from pveoci.runtime import claim as claiming
from pveoci.runtime.context import Context
from pveoci.runtime.ids import id_tag
from pveoci.settings import Profile, Settings


@dataclass
class Scheduler:
    """Lets one thread at a time go on, chosen at random; a thread waits at every cluster call and sleep."""

    rng: random.Random
    now: float = 0.0
    cond: threading.Condition = field(default_factory=threading.Condition)
    waiting: set[int] = field(default_factory=set)
    turn: int | None = None
    unfinished: int = 0

    def step(self) -> None:
        me = threading.get_ident()
        with self.cond:
            self.waiting.add(me)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.turn == me)
            self.waiting.discard(me)
            self.turn = None

    def run(self, bodies: list[Callable[[], None]]) -> None:
        threads = [threading.Thread(target=self._wrap(b)) for b in bodies]
        self.unfinished = len(threads)
        for t in threads:
            t.start()
        while True:
            with self.cond:
                ready = self.cond.wait_for(lambda: self.unfinished == 0 or (
                    self.turn is None and len(self.waiting) == self.unfinished), timeout=10)
                assert ready, "a contender neither finished nor waited"
                if self.unfinished == 0:
                    break
                self.now += 0.1
                self.turn = self.rng.choice(sorted(self.waiting))
                self.cond.notify_all()
        for t in threads:
            t.join(10)

    def _wrap(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                self.step()
                body()
            finally:
                with self.cond:
                    self.unfinished -= 1
                    self.cond.notify_all()
        return run


class SteppedBackend(MemoryBackend):
    """Every read and write of the cluster waits for the scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self.scheduler = scheduler

    def guests(self) -> list[Guest]:
        self.scheduler.step()
        return super().guests()

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.scheduler.step()
        super().set_options(node, vmid, options)


def race(seed: int, contenders: int, tmp_path: Path) -> list[int]:
    """Run `contenders` creates of one id; the VMIDs that kept it."""
    rng = random.Random(seed)
    scheduler = Scheduler(rng)
    backend = SteppedBackend(scheduler)
    ctx = Context(backend, Cache(tmp_path / f"c{seed}"), Settings(Profile(name="x"), tmp_path / "x.toml"))
    tags = {"pveoci", id_tag("web")}
    winners: list[int] = []

    def contender(vmid: int, delay: int) -> Callable[[], None]:
        def body() -> None:
            for _ in range(delay):
                scheduler.step()
            with backend._lock:   # register: the container appears, being created
                backend.cts[vmid] = _ct(backend, vmid, tags, lock=True)
            for _ in range(rng.randint(0, 3)):
                scheduler.step()
            with backend._lock:   # the create task ends
                backend.cts[vmid].config.pop("lock")
            if claiming.claim(ctx, "web", "pve1", vmid, tags, sleep=lambda _s: scheduler.step(),
                              clock=lambda: scheduler.now):
                winners.append(vmid)
            else:
                with backend._lock:  # the loser rolls back
                    del backend.cts[vmid]
        return body

    vmids = rng.sample(range(100, 200), contenders)
    scheduler.run([contender(v, rng.randint(0, 6)) for v in vmids])
    ctx.cache.close()
    return winners


def _ct(backend: MemoryBackend, vmid: int, tags: set[str], lock: bool) -> Any:
    from pveoci.backends.memory import MemoryCt

    config: dict[str, Any] = {"tags": ";".join(sorted(tags))}
    if lock:
        config["lock"] = "create"
    return MemoryCt(vmid=vmid, node="pve1", config=config)


@pytest.mark.parametrize("contenders", [2, 3, 5])
def test_racing_creates_of_one_id_never_both_keep_it(contenders: int, tmp_path: Path) -> None:
    outcomes = [race(seed, contenders, tmp_path) for seed in range(60)]
    assert all(len(w) <= 1 for w in outcomes), [w for w in outcomes if len(w) > 1]
    # Losing all is allowed in slow races, but must stay rare.
    assert sum(len(w) == 1 for w in outcomes) >= 0.9 * len(outcomes)


def test_a_create_alone_wins_without_writing_a_ticket(tmp_path: Path) -> None:
    backend = MemoryBackend()
    ctx = Context(backend, Cache(tmp_path / "c"), Settings(Profile(name="x"), tmp_path / "x.toml"))
    tags = {"pveoci", id_tag("web")}
    backend.cts[100] = _ct(backend, 100, tags, lock=False)
    assert claiming.claim(ctx, "web", "pve1", 100, tags)
    assert "set_options" not in backend.calls
