"""The on-node contract, where no process has to run: signals to nothing, freezing or running a program in what
does not run. (What runs in a container, and files of a stopped one, need real LXC: tests/test_journey.py.)"""

from __future__ import annotations

import io

import pytest

from pveoci import errors
from pveoci.backends.base import Backend
from tests.contract.conftest import World


def test_a_signal_to_no_process_is_an_error(backend: Backend) -> None:
    with pytest.raises(errors.PveociError, match="999999"):
        backend.signal("pve1", 999999, "TERM")


def test_a_stopped_container_cannot_be_frozen(world: World, backend: Backend) -> None:
    vmid = world.create()
    with pytest.raises(errors.PveociError, match=str(vmid)):
        backend.freeze("pve1", vmid)


def test_nothing_runs_in_a_stopped_container(world: World, backend: Backend) -> None:
    vmid = world.create()
    # pct exec fails as the program would (its status and words), it raises nothing: the runtime reads both.
    done = backend.capture("pve1", vmid, ["true"])
    assert done.status == 255
    assert done.stderr.strip()
    err = io.BytesIO()
    assert backend.exec("pve1", vmid, ["true"], stdin=None, stdout=None, stderr=err) == 255
    assert err.getvalue().strip()
