"""The API backend: containers through the Proxmox HTTP API (proxmoxer); in-container work over SSH.

Templates go to a node over SFTP (template.sftp) or through the API's upload (template.api_upload).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pveoci import errors
from pveoci.backends.base import Claim, TemplateUpload
from pveoci.backends.onnode import SshNode
from pveoci.models import Check, Destination, Guest, MigrationCheck, Node, Template
from pveoci.pve import cluster
from pveoci.pve.client import PveClient
from pveoci.pve.version import parse_version
from pveoci.retry import Backoff, poll
from pveoci.settings import Settings
from pveoci.ssh import SshConnector
from pveoci.template.delta import Delta
from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")

UNLOCK_WAIT = 30.0
CONFIG_READERS = 8        # parallel config reads when many containers are unknown to the cache
# What `uname -m` says on the machines Proxmox VE runs on (anything else, e.g. a stand-in's "fake", is asked
# of the node itself over SSH).
KNOWN_MACHINES = frozenset({"x86_64", "aarch64", "i686", "armv7l", "riscv64"})
_UNLOCK_POLL = Backoff(first=0.05, factor=2.0, cap=1.0)


class ApiBackend(SshNode):
    name = "api"

    def __init__(self, client: PveClient, settings: Settings) -> None:
        # SSH goes where the cluster says each node is, asked only when a node is first reached.
        super().__init__(SshConnector(settings.profile.ssh, lambda: cluster.quorum(client).addresses))
        self.client = client
        self.settings = settings

    def close(self) -> None:
        self.client.session.close()
        self.ssh.close_all()

    # ------------------------------------------------------------------ reads

    def version(self) -> tuple[int, int]:
        return parse_version(str(self.client.version().get("version", "")))

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
        wanted = list(guests)

        def one(g: Guest) -> tuple[int, dict[str, Any] | None]:
            try:
                return g.vmid, self.config(g.node, g.vmid)
            except (errors.NotFound, errors.NodeOffline):
                return g.vmid, None

        with ThreadPoolExecutor(max_workers=min(CONFIG_READERS, max(1, len(wanted)))) as pool:
            return {vmid: conf for vmid, conf in pool.map(one, wanted) if conf is not None}

    def next_vmid(self) -> int:
        return int(self.client.get("cluster", "nextid"))

    def node_machine(self, node: str) -> str:
        """From the node's status (PVE 8+ reports its kernel's machine); asked over SSH where it does not."""
        kernel = self.client.get("nodes", node, "status").get("current-kernel") or {}
        machine = str(kernel.get("machine") or "")
        return machine if machine in KNOWN_MACHINES else self.machine(node)

    def migrate_check(self, node: str, vmid: int, target: str) -> MigrationCheck:
        return cluster.migration_check(self.client.get("nodes", node, "lxc", vmid, "migrate", target=target))

    # ----------------------------------------------------------------- writes

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.client.wait(self.client.post("nodes", node, "lxc", vmid=vmid, **options))
        # After vzcreate the config may still say `lock: create` for a moment.
        poll(lambda: True if self.config(node, vmid).get("lock") != "create" else None, timeout=UNLOCK_WAIT,
             what=f"CT {vmid} on {node} is locked (create)", backoff=_UNLOCK_POLL)

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.client.put("nodes", node, "lxc", vmid, "config", **options)

    def _power(self, node: str, vmid: int, action: str, **params: Any) -> None:
        self.client.wait(self.client.post("nodes", node, "lxc", vmid, "status", action, **params))

    def start(self, node: str, vmid: int) -> None:
        self._power(node, vmid, "start")

    def stop(self, node: str, vmid: int) -> None:
        self._power(node, vmid, "stop")

    def shutdown(self, node: str, vmid: int, timeout: int) -> None:
        # forceStop: once the timeout has passed the task stops it, so TERM always ends in a stopped container.
        self._power(node, vmid, "shutdown", timeout=timeout, forceStop=1)

    def destroy(self, node: str, vmid: int) -> None:
        self.client.wait(self.client.delete("nodes", node, "lxc", vmid, purge=1, **{"destroy-unreferenced-disks": 1}))

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                on_log: Callable[[str], None] | None = None) -> None:
        params: dict[str, Any] = {"target": target}
        if restart:
            params["restart"] = 1
        self.client.wait(self.client.post("nodes", node, "lxc", vmid, "migrate", **params), on_log=on_log)

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
        config = self.client.get("storage", storage)
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
        from pveoci.template.sftp import SftpUploader

        return SftpUploader(self.ssh).upload(packed, dest, progress)

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
