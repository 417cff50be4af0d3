"""The API backend: containers through the Proxmox HTTP API (proxmoxer); in-container work over SSH.

Its parts (backends.assembled): the cluster read through the API's paths (backends.reads), changes as
the API's tasks (ApiLifecycle), programs, signals and freezing over SSH (backends.onnode), and templates
sent over SFTP (template.sftp) or through the API's upload (template.api_upload).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pveoci.backends.assembled import Assembled
from pveoci.backends.base import Facts, NoFacts, TemplateUpload
from pveoci.backends.onnode import NodeCommands
from pveoci.backends.reads import FACT_AGE, PathReads, remembered
from pveoci.backends.sshrunner import SshRunner
from pveoci.backends.sshtemplates import SshTemplates
from pveoci.models import Check, Destination
from pveoci.pve import cluster
from pveoci.pve.client import PveClient
from pveoci.settings import Settings
from pveoci.ssh import SshConnector

if TYPE_CHECKING:  # types only: a command that sends no template does not load the packer
    from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")

TASK_MEMORY = 7 * 86400.0 # how long a task kind's last duration guides the first wait for the next one


class ApiLifecycle:
    """Lifecycle (pveoci.backends.base) as the API's tasks, each waited for."""

    def __init__(self, client: PveClient, facts: Facts) -> None:
        """`facts`: where how long each kind of task took is kept, to size the first wait for the next."""
        self.client = client
        self.facts = facts

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


class ApiTemplates(SshTemplates):
    """TemplateStorage over SSH, with the API's own upload (`--transport api`) and removal."""

    def __init__(self, client: PveClient, ssh: SshConnector, facts: Facts) -> None:
        """`facts`: where each storage's configuration (its path) is kept."""
        super().__init__(ssh, client)
        self.client = client
        self.facts = facts

    def template_destination(self, node: str, storage: str) -> Destination:
        return cluster.template_destination(self.client, node, storage, lambda: remembered(
            self.facts, f"storage:{storage}", FACT_AGE, lambda: dict(self.client.get("storage", storage))))

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

    def pull_image(self, dest: Destination, reference: str, filename: str) -> None:
        self.client.wait(self.client.post("nodes", dest.node, "storage", dest.storage, "oci-registry-pull",
                                          reference=reference, filename=filename))


class ApiBackend(Assembled):
    name = "api"
    #: Requests in flight at once for many containers' configs or statuses.
    parallel = 16

    def __init__(self, client: PveClient, settings: Settings, facts: Facts | None = None, *,
                 ssh: SshConnector | None = None) -> None:
        """`facts`: where what rarely changes is kept between commands (the local cache); `ssh`: the connections
        to the nodes (by default to where the cluster says each node is, asked when a node is first reached)."""
        self.client = client
        self.settings = settings
        self.facts: Facts = facts or NoFacts()
        self.ssh = ssh or SshConnector(settings.profile.ssh, self._addresses, refresh=self._fresh_addresses)
        self.node: NodeCommands = NodeCommands(SshRunner(self.ssh))
        profile = settings.profile
        self.reads = PathReads(client, machine=self._machine, parallel=self.parallel, facts=self.facts,
                               privileged=profile.auth_method == "ticket" and profile.user == "root@pam")
        self.lifecycle = ApiLifecycle(client, self.facts)
        self.storage = ApiTemplates(client, self.ssh, self.facts)

    def _addresses(self) -> dict[str, str]:
        return remembered(self.facts, "addresses", FACT_AGE, lambda: cluster.quorum(self.client).addresses)

    def _fresh_addresses(self) -> dict[str, str]:
        found = cluster.quorum(self.client).addresses
        self.facts.remember("addresses", found)
        return found

    def _machine(self, node: str) -> str:
        """A node's machine asked over SSH (`uname -m`), by whatever node part the backend has then."""
        return self.node.machine(node)

    def checks(self) -> Iterator[Check]:
        from pveoci.checks import diagnose

        return diagnose(self.settings, self.client)

    def close(self) -> None:
        self.client.close()
        self.ssh.close_all()
