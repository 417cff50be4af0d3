"""The API backend: containers through the Proxmox HTTP API (proxmoxer); in-container work over SSH.

Templates go to a node over SFTP (template.sftp) or through the API's upload (template.api_upload).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from pveoci.backends.onnode import SshNode
from pveoci.backends.reads import PathReads
from pveoci.models import Check, Destination
from pveoci.pve import cluster
from pveoci.pve.client import PveClient
from pveoci.retry import Backoff, poll
from pveoci.settings import Settings
from pveoci.ssh import SshConnector
from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")

UNLOCK_WAIT = 30.0
_UNLOCK_POLL = Backoff(first=0.05, factor=2.0, cap=1.0)


class ApiBackend(PathReads, SshNode):
    name = "api"

    def __init__(self, client: PveClient, settings: Settings) -> None:
        # SSH goes where the cluster says each node is, asked only when a node is first reached.
        super().__init__(SshConnector(settings.profile.ssh, lambda: cluster.quorum(client).addresses))
        self.client = client
        self.reader = client
        self.settings = settings

    def close(self) -> None:
        self.client.session.close()

    # ------------------------------------------------------------------ reads

    def node_machine(self, node: str) -> str:
        """From the node's status (PVE 8+ reports its kernel's machine); asked over SSH where it does not."""
        return cluster.machine(self.client, node) or self.machine(node)

    def privileged(self) -> bool:
        profile = self.settings.profile
        return profile.auth_method == "ticket" and profile.user == "root@pam"

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

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool) -> None:
        params: dict[str, Any] = {"target": target}
        if restart:
            params["restart"] = 1
        self.client.wait(self.client.post("nodes", node, "lxc", vmid, "migrate", **params))

    # -------------------------------------------------------------- templates

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        if transport == "api":
            from pveoci.template.api_upload import upload as api_upload

            return api_upload(self.client, packed, dest, progress)
        from pveoci.template.sftp import SftpUploader

        return SftpUploader(self.ssh).upload(packed, dest, progress)

    def remove_template(self, dest: Destination, name: str) -> None:
        self.client.wait(self.client.delete("nodes", dest.node, "storage", dest.storage, "content",
                                            dest.volid(name)))

    # -------------------------------------------------------------- diagnosis

    def checks(self) -> Iterator[Check]:
        from pveoci import doctor

        return doctor.diagnose(self.settings, self.client)

