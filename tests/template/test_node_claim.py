"""Claims on a node's template directory, on the bed: one holder, waiters that learn its result however late they
read it, and nothing left in the directory once the last of them is done."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pveoci
from pveoci.backends.base import Claim
from pveoci.models import Destination
from pveoci.template import node_claim
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

ROOT = Path(__file__).resolve().parents[2]
KEY = "c" * 64          # a claim's key (manifest.key)
NAME = "pveoci-0123456789abcdef.tar.zst"


@pytest.fixture
def runtime(cluster: Testbed, tmp_path: Path) -> Iterator[pveoci.Runtime]:
    rt = pveoci.connect(config=cluster.config_path, root=tmp_path / "cache")
    yield rt
    rt.close()


@pytest.fixture
def dest(runtime: pveoci.Runtime) -> Destination:
    return runtime.backend.template_destination("pve1", "local")


def leftovers(bed: Testbed) -> list[str]:
    return sorted(p.name for p in bed.template_dir("pve1").iterdir() if p.name.startswith("."))


def test_waiters_learn_the_holders_result_and_the_last_to_read_it_removes_the_claim(
        cluster: Testbed, runtime: pveoci.Runtime, dest: Destination) -> None:
    holder = runtime.backend.claim_template(dest, KEY)
    assert holder.ours
    waiters = [runtime.backend.claim_template(dest, KEY) for _ in range(2)]
    assert not any(w.ours for w in waiters)
    holder.release(NAME)
    assert leftovers(cluster) != []           # kept for the waiters that have not read it yet
    late = runtime.backend.claim_template(dest, KEY)
    assert not late.ours                      # done, but not gone: a create arriving now learns the result too
    assert [w.wait(10) for w in (*waiters, late)] == [NAME, NAME, NAME]
    assert leftovers(cluster) == []


def test_a_holder_that_gives_up_lets_a_waiter_take_over_at_once_and_leaves_nothing(
        cluster: Testbed, runtime: pveoci.Runtime, dest: Destination) -> None:
    holder = runtime.backend.claim_template(dest, KEY)
    waiter = runtime.backend.claim_template(dest, KEY)
    holder.release(None)
    started = time.monotonic()
    assert waiter.wait(60) is None
    assert time.monotonic() - started < 10    # not after the claim went quiet (a minute)
    assert waiter.take_over()
    waiter.release(NAME)
    assert leftovers(cluster) == []


def test_a_waiter_that_gives_up_waiting_leaves_the_claim_to_its_holder_alone(
        cluster: Testbed, runtime: pveoci.Runtime, dest: Destination) -> None:
    holder = runtime.backend.claim_template(dest, KEY)
    waiter = runtime.backend.claim_template(dest, KEY)
    waiter.release(None)                      # e.g. interrupted while it waited
    holder.release(NAME)
    assert leftovers(cluster) == []


WAITER_KILLED = """
import os, signal, sys, pveoci
rt = pveoci.connect(config=sys.argv[1], root=sys.argv[2])
dest = rt.backend.template_destination("pve1", "local")
assert not rt.backend.claim_template(dest, sys.argv[3]).ours
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_claim_whose_waiter_was_killed_before_it_read_the_result_is_swept(
        cluster: Testbed, runtime: pveoci.Runtime, dest: Destination, tmp_path: Path) -> None:
    holder: Claim = runtime.backend.claim_template(dest, KEY)
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(WAITER_KILLED), str(cluster.config_path),
                             str(tmp_path / "other"), KEY], env=cluster.env(), capture_output=True, text=True,
                            check=False, timeout=120, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr
    holder.release(NAME)
    assert leftovers(cluster) != []           # its waiter never read the result
    gc = pveoci.connect(config=cluster.config_path, root=tmp_path / "gc")   # as `pveoci gc` sweeps, later
    try:
        assert gc.backend.sweep_templates(dest) == [f".pveoci-claim-{KEY[:32]}"]
    finally:
        gc.close()
    assert leftovers(cluster) == []


def test_a_holder_whose_claim_was_taken_from_it_does_not_block_the_storage_with_its_heartbeat(
        cluster: Testbed, runtime: pveoci.Runtime, dest: Destination, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = runtime.backend.claim_template(dest, KEY)
    claim = cluster.template_dir("pve1") / f".pveoci-claim-{KEY[:32]}"
    for entry in claim.iterdir():   # taken over (it went quiet), its new holder done and gone
        entry.unlink()
    claim.rmdir()
    monkeypatch.setattr(node_claim, "HEARTBEAT", 0.0)
    holder.heartbeat()              # late, from a holder still at work
    assert leftovers(cluster) == []
    again = runtime.backend.claim_template(dest, KEY)
    assert again.ours
    again.release(NAME)
