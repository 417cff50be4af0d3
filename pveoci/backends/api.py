"""The API backend: containers through the Proxmox HTTP API (proxmoxer); in-container work over SSH.

Templates go to a node over SFTP (template.sftp) or through the API's upload (template.api_upload).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pveoci.backends.base import Facts, NoFacts, TemplateUpload
from pveoci.backends.onnode import SshNode
from pveoci.backends.reads import PathReads
from pveoci.backends.sshtemplates import SshTemplates
from pveoci.models import Check, Destination
from pveoci.pve import cluster
from pveoci.pve.client import PveClient
from pveoci.pve.version import parse_version
from pveoci.settings import Settings
from pveoci.ssh import SshConnector

if TYPE_CHECKING:  # types only: a command that sends no template does not load the packer
    from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")

FACT_AGE = 600.0          # seconds the cluster's version, node addresses and storage paths are trusted
TASK_MEMORY = 7 * 86400.0 # how long a task kind's last duration guides the first wait for the next one
T = TypeVar("T")


class ApiBackend(PathReads, SshTemplates, SshNode):
    name = "api"
    parallel = 16             # requests in flight at once for many containers' configs or statuses

    def __init__(self, client: PveClient, settings: Settings, facts: Facts | None = None) -> None:
        # SSH goes where the cluster says each node is, asked only when a node is first reached.
        super().__init__(SshConnector(settings.profile.ssh, self._addresses, refresh=self._fresh_addresses))
        self.client = client
        self.reader = client
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

    def node_machine(self, node: str) -> str:
        """From the node's status (PVE 8+ reports its kernel's machine); asked over SSH where it does not."""
        return cluster.machine(self.client, node) or self.machine(node)

    def privileged(self) -> bool:
        profile = self.settings.profile
        return profile.auth_method == "ticket" and profile.user == "root@pam"

    # ----------------------------------------------------------------- writes

    def _wait(self, upid: str, on_log: Callable[[str], None] | None = None) -> None:
        """Wait for a task, first for about as long as the last of its kind took on this cluster: most tasks
        are then asked after once or twice, not every few milliseconds (unless its log is followed)."""
        kind = f"task:{upid.split(':')[5] if upid.count(':') >= 6 else 'unknown'}"
        expect = self.facts.recall(kind, TASK_MEMORY)
        began = time.monotonic()
        self.client.wait(upid, expect=float(expect) * 0.8 if isinstance(expect, (int, float)) else 0.0,
                         on_log=on_log)
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

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                on_log: Callable[[str], None] | None = None) -> None:
        params: dict[str, Any] = {"target": target}
        if restart:
            params["restart"] = 1
        self._wait(self.client.post("nodes", node, "lxc", vmid, "migrate", **params), on_log=on_log)

    # -------------------------------------------------------------- templates

    def template_destination(self, node: str, storage: str) -> Destination:
        return cluster.template_destination(self.client, node, storage, lambda: self._fact(
            f"storage:{storage}", FACT_AGE, lambda: dict(self.client.get("storage", storage))))

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        if transport == "api":
            from pveoci.template.api_upload import upload as api_upload

            return api_upload(self.client, packed, dest, progress)
        return super().upload(packed, dest, transport=transport, progress=progress)

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        if transport == "api":
            from pveoci.template.api_upload import SpooledUpload

            return SpooledUpload(self.client, dest, progress)
        return super().begin_upload(dest, transport=transport, progress=progress)

    def remove_template(self, dest: Destination, name: str) -> None:
        self.client.wait(self.client.delete("nodes", dest.node, "storage", dest.storage, "content",
                                            dest.volid(name)))

    # -------------------------------------------------------------- diagnosis

    def checks(self) -> Iterator[Check]:
        from pveoci import doctor

        return doctor.diagnose(self.settings, self.client)

