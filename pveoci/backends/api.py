"""The API backend: containers through the Proxmox HTTP API (proxmoxer); in-container work over SSH.

Templates go to a node over SFTP (template.sftp) or through the API's upload (template.api_upload).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pveoci import errors
from pveoci.backends.base import Claim, Facts, NoFacts, TemplateUpload
from pveoci.backends.onnode import SshNode
from pveoci.models import Check, Destination, Guest, Node, Template
from pveoci.pve import cluster
from pveoci.pve.client import PveClient
from pveoci.pve.version import parse_version
from pveoci.settings import Settings
from pveoci.ssh import SshConnector
from pveoci.template.delta import Delta
from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")

READERS = 16              # requests in flight at once for many containers' configs or statuses
FACT_AGE = 600.0          # seconds the cluster's version, node addresses and storage paths are trusted
TASK_MEMORY = 7 * 86400.0 # how long a task kind's last duration guides the first wait for the next one
# What `uname -m` says on the machines Proxmox VE runs on (anything else, e.g. a stand-in's "fake", is asked
# of the node itself over SSH).
KNOWN_MACHINES = frozenset({"x86_64", "aarch64", "i686", "armv7l", "riscv64"})
T = TypeVar("T")


class ApiBackend(SshNode):
    name = "api"

    def __init__(self, client: PveClient, settings: Settings, facts: Facts | None = None) -> None:
        # SSH goes where the cluster says each node is, asked only when a node is first reached.
        super().__init__(SshConnector(settings.profile.ssh, self._addresses, refresh=self._fresh_addresses))
        self.client = client
        self.settings = settings
        self.facts: Facts = facts or NoFacts()

    def _fact(self, key: str, max_age: float, ask: Callable[[], T]) -> T:
        """A fact from the cache while it is young enough, else from the cluster (and then kept)."""
        found = self.facts.recall(key, max_age)
        if found is None:
            found = ask()
            self.facts.remember(key, found)
        return found

    def _addresses(self) -> dict[str, str]:
        return self._fact("addresses", FACT_AGE, lambda: cluster.quorum(self.client).addresses)

    def _fresh_addresses(self) -> dict[str, str]:
        found = cluster.quorum(self.client).addresses
        self.facts.remember("addresses", found)
        return found

    def close(self) -> None:
        self.client.session.close()
        self.ssh.close_all()

    # ------------------------------------------------------------------ reads

    def version(self) -> tuple[int, int]:
        text = self._fact("version", FACT_AGE, lambda: str(self.client.version().get("version", "")))
        return parse_version(text)

    def nodes(self) -> list[Node]:
        return cluster.nodes(self.client)

    def guests(self) -> list[Guest]:
        return [cluster.guest_from_api(item) for item in self.client.get("cluster", "resources", type="vm")
                if item.get("type") == "lxc"]

    def status(self, node: str, vmid: int) -> Guest:
        return cluster.guest_from_api({"vmid": vmid, **self.client.get("nodes", node, "lxc", vmid, "status",
                                                                        "current")}, node)

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        data: dict[str, Any] = self.client.get("nodes", node, "lxc", vmid, "config")
        return data

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        return self._each(guests, self.config)

    def statuses(self, guests: Iterable[Guest]) -> dict[int, Guest]:
        return self._each(guests, self.status)

    def _each(self, guests: Iterable[Guest], read: Callable[[str, int], T]) -> dict[int, T]:
        """read(node, vmid) for many containers, READERS at a time (those that vanished left out)."""
        wanted = list(guests)

        def one(g: Guest) -> tuple[int, T | None]:
            try:
                return g.vmid, read(g.node, g.vmid)
            except (errors.NotFound, errors.NodeOffline):
                return g.vmid, None

        if not wanted:
            return {}
        with ThreadPoolExecutor(max_workers=min(READERS, len(wanted))) as pool:
            return {vmid: found for vmid, found in pool.map(one, wanted) if found is not None}

    def next_vmid(self) -> int:
        return int(self.client.get("cluster", "nextid"))

    def node_machine(self, node: str) -> str:
        """From the node's status (PVE 8+ reports its kernel's machine); asked over SSH where it does not."""
        kernel = self.client.get("nodes", node, "status").get("current-kernel") or {}
        machine = str(kernel.get("machine") or "")
        return machine if machine in KNOWN_MACHINES else self.machine(node)

    # ----------------------------------------------------------------- writes

    def _wait(self, upid: str) -> None:
        """Wait for a task, first for about as long as the last of its kind took on this cluster: most tasks
        are then asked after once or twice, not every few milliseconds."""
        kind = f"task:{upid.split(':')[5] if upid.count(':') >= 6 else 'unknown'}"
        expect = self.facts.recall(kind, TASK_MEMORY)
        began = time.monotonic()
        self.client.wait(upid, expect=float(expect) * 0.8 if isinstance(expect, (int, float)) else 0.0)
        took = time.monotonic() - began
        self.facts.remember(kind, took if not isinstance(expect, (int, float)) else 0.5 * expect + 0.5 * took)

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        # The runtime waits for `lock: create` to clear (it may linger a moment after vzcreate).
        self._wait(self.client.post("nodes", node, "lxc", vmid=vmid, **options))

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.client.put("nodes", node, "lxc", vmid, "config", **options)

    def _power(self, node: str, vmid: int, action: str, **params: Any) -> None:
        self._wait(self.client.post("nodes", node, "lxc", vmid, "status", action, **params))

    def start(self, node: str, vmid: int) -> None:
        self._power(node, vmid, "start")

    def stop(self, node: str, vmid: int) -> None:
        self._power(node, vmid, "stop")

    def shutdown(self, node: str, vmid: int, timeout: int) -> None:
        # forceStop: once the timeout has passed the task stops it, so TERM always ends in a stopped container.
        self._power(node, vmid, "shutdown", timeout=timeout, forceStop=1)

    def destroy(self, node: str, vmid: int) -> None:
        self._wait(self.client.delete("nodes", node, "lxc", vmid, purge=1, **{"destroy-unreferenced-disks": 1}))

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool) -> None:
        params: dict[str, Any] = {"target": target}
        if restart:
            params["restart"] = 1
        self._wait(self.client.post("nodes", node, "lxc", vmid, "migrate", **params))

    # -------------------------------------------------------------- templates

    def template_destination(self, node: str, storage: str) -> Destination:
        found = {s["storage"]: s for s in self.client.node_storages(node)}
        item = found.get(storage)
        if item is None:
            raise errors.NotFound(f"storage '{storage}' is not available on node '{node}' "
                                  f"(there: {', '.join(sorted(found)) or 'none'})")
        if "vztmpl" not in str(item.get("content", "")).split(","):
            raise errors.ConfigError(f"storage '{storage}' does not hold container templates (content vztmpl)")
        if not item.get("active", 1):
            raise errors.ApiError(f"storage '{storage}' is not active on node '{node}'")
        config = self._fact(f"storage:{storage}", FACT_AGE, lambda: dict(self.client.get("storage", storage)))
        path = config.get("path")
        directory = f"{str(path).rstrip('/')}/{_content_dir(config)}" if path else None
        avail = item.get("avail")
        return Destination(node=node, storage=storage, shared=bool(item.get("shared")), directory=directory,
                           avail=int(avail) if avail not in (None, "") else None)

    def templates(self, dest: Destination) -> list[Template]:
        items = self.client.get("nodes", dest.node, "storage", dest.storage, "content", content="vztmpl")
        out = []
        for item in items:
            name = str(item["volid"]).split("/", 1)[-1]
            out.append(Template(node=dest.node, storage=dest.storage, volid=str(item["volid"]), name=name,
                                size=int(item.get("size") or 0), ctime=int(item.get("ctime") or 0),
                                shared=dest.shared))
        return sorted(out, key=lambda t: t.name)

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        if transport == "api":
            from pveoci.template.api_upload import upload as api_upload

            return api_upload(self.client, packed, dest, progress)
        from pveoci.template.sftp import upload as sftp_upload

        return sftp_upload(self.ssh, packed, dest, progress)

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        if transport == "api":
            from pveoci.template.api_upload import SpooledUpload

            return SpooledUpload(self.client, dest, progress)
        from pveoci.template.remote import SftpStream

        return SftpStream(self.ssh, dest, progress)

    def upload_delta(self, packed: Packed, base: str, delta: Delta, dest: Destination, *,
                     progress: Callable[[int], None]) -> int:
        if dest.directory is None:
            raise errors.Unsupported(f"deltas need SSH to the node's template directory ({dest.storage})")
        from pveoci.template.remote import send_delta

        return send_delta(self.ssh, dest, packed, base, delta, progress)

    def claim_template(self, dest: Destination, key: str) -> Claim:
        from pveoci.template.remote import RemoteClaim

        if dest.directory is None:  # no SSH way to the storage (API uploads): claims within this machine
            from pveoci.template.claims import LocalClaim

            return LocalClaim(dest, key)
        return RemoteClaim(self.ssh, dest, key)

    def sweep_templates(self, dest: Destination) -> list[str]:
        from pveoci.template.remote import sweep

        return sweep(self.ssh, dest) if dest.directory is not None else []

    def remove_template(self, dest: Destination, name: str) -> None:
        self.client.wait(self.client.delete("nodes", dest.node, "storage", dest.storage, "content",
                                            dest.volid(name)))

    # -------------------------------------------------------------- diagnosis

    def checks(self) -> Iterator[Check]:
        from pveoci import doctor

        return doctor.diagnose(self.settings, self.client)


def _content_dir(config: dict[str, Any]) -> str:
    """The vztmpl directory below the storage path: `template/cache`, unless content-dirs moves it."""
    for item in str(config.get("content-dirs") or "").split(","):
        kind, _, where = item.partition("=")
        if kind.strip() == "vztmpl" and where.strip():
            return where.strip().strip("/")
    return "template/cache"
