"""The world a contract case runs in: a Backend (in memory, the API on the bed, or pct on the bed), and the few
things a case arranges outside the protocol (a template file on a node's storage, a node going offline).

The bed is the session's; a bed case resets what it made (containers, templates, faults: Testbed.reset) and
its backend is kept for the session, so its SSH connections are made once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pveoci import settings
from pveoci.backends.base import Backend
from pveoci.backends.memory import MemoryBackend
from pveoci.template.pack import Packed, pack
from tests.testbed import Testbed

#: The name of the template creates are made from: a file on the node's `local` storage (the bed without LXC
#: never unpacks it).
TEMPLATE = "contract.tar.zst"


@dataclass
class World:
    """A backend under contract, and how a case arranges what the protocol does not do."""

    kind: str
    backend: Backend
    put_template: Callable[[str, str], None]      # (node, name): a template file appears on the node's `local`
    take_offline: Callable[[str], None]

    def template(self, node: str = "pve1", name: str = TEMPLATE) -> str:
        """A template on the node's `local` storage: its volume id."""
        self.put_template(node, name)
        return f"local:vztmpl/{name}"

    def create(self, node: str = "pve1", *, vmid: int | None = None, **options: Any) -> int:
        """A container made from the world's template (a free VMID unless given): its VMID."""
        vmid = vmid if vmid is not None else self.backend.next_vmid()
        self.backend.create(node, vmid, {"ostemplate": self.template(node), "hostname": f"ct{vmid}",
                                         "memory": 256, "rootfs": "local-lvm:1", **options})
        return vmid

    def running(self, node: str = "pve1") -> int:
        vmid = self.create(node)
        self.backend.start(node, vmid)
        return vmid


def _memory() -> World:
    memory = MemoryBackend(nodes=("pve1", "pve2"))

    def put(node: str, name: str) -> None:
        memory.template_files.setdefault((node, "local"), {})[name] = 4096

    def offline(node: str) -> None:
        memory.nodes_online[node] = False

    return World("memory", memory, put, offline)


@pytest.fixture(scope="session")
def bed_backends(bed: Testbed) -> Iterator[dict[str, Backend]]:
    """One API and one pct backend on the session's bed, made when first asked for."""
    made: dict[str, Backend] = {}
    yield made
    for backend in made.values():
        backend.close()


def _backend(kind: str, loaded: settings.Settings) -> Backend:
    """The backend pveoci.connect() makes for the profile (not imported from there: importing the module
    pveoci.connect first turns the package's `pveoci.connect` into that module for the rest of the session)."""
    if kind == "api":
        from pveoci.backends.api import ApiBackend
        from pveoci.pve.client import PveClient

        return ApiBackend(PveClient.from_settings(loaded), loaded)
    from pveoci.backends.pct import PctBackend

    return PctBackend(loaded)


def _on_bed(kind: str, bed: Testbed, backends: dict[str, Backend]) -> World:
    if kind not in backends:
        backends[kind] = _backend(kind, settings.load(config_path=bed.config_path, env={}, overrides={"backend": kind}))

    def put(node: str, name: str) -> None:
        path = bed.template_dir(node) / name
        if not path.exists():
            path.write_bytes(b"\0" * 4096)

    return World(kind, backends[kind], put, lambda node: bed.pve.set_node_offline(node))


@pytest.fixture(params=["memory", pytest.param("api", marks=pytest.mark.bed),
                        pytest.param("pct", marks=pytest.mark.bed)])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Each case once per backend: in memory, the API on the bed, pct on the bed."""
    if request.param == "memory":
        yield _memory()
        return
    bed: Testbed = request.getfixturevalue("bed")
    bed.reset()
    try:
        yield _on_bed(request.param, bed, request.getfixturevalue("bed_backends"))
    finally:
        bed.reset()


@pytest.fixture
def backend(world: World) -> Backend:
    return world.backend


@pytest.fixture(scope="session")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Packed:
    """A small packed template (one frame), made once."""
    where = tmp_path_factory.mktemp("contract-template")
    rootfs = where / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "data").write_bytes(os.urandom(64 * 1024))
    return pack(rootfs, where / "out")


def packed_again(tmp_path: Path, size: int = 32 * 1024) -> Packed:
    """Another small template, of its own content."""
    rootfs = tmp_path / "rootfs2"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "other").write_bytes(os.urandom(size))
    return pack(rootfs, tmp_path / "out2")
