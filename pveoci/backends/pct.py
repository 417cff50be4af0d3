"""The pct backend: containers through Proxmox's own command-line tools on the nodes, run as root.

Reads go through `pvesh get ... --output-format json` on the node the cluster is entered by (it
reaches the others itself); changes to a container go through `pct` on the node that owns it (pct
acts on its own node only), and a container found elsewhere is followed there. Over SSH (the
profile's host is the entry; the other nodes' addresses come from /cluster/status) or, when pveoci
runs on a node, right there (backends.runner). Its parts (backends.assembled): the cluster read through
pvesh (backends.reads), changes through pct (PctLifecycle), programs in containers, signals and freezing
over the same runner (backends.onnode), templates over SFTP (PctTemplates). No API credentials are needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pveoci import errors
from pveoci.backends.assembled import Assembled
from pveoci.backends.base import TemplateUpload
from pveoci.backends.onnode import NodeCommands
from pveoci.backends.pvesh import Pvesh, failure, options, reason
from pveoci.backends.reads import PathReads
from pveoci.backends.runner import LocalRunner, Runner, tools_here
from pveoci.backends.sshrunner import SshRunner
from pveoci.backends.sshtemplates import SshTemplates
from pveoci.models import Check, Completed, Destination
from pveoci.pve import cluster
from pveoci.settings import Settings
from pveoci.ssh import SshConnector

if TYPE_CHECKING:  # types only: a command that sends no template does not load the packer
    from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")

# pct's subcommands that run a Proxmox task, and the task's type (as the API's UPIDs name it).
TASKS = {"create": "vzcreate", "start": "vzstart", "stop": "vzstop", "shutdown": "vzshutdown",
         "destroy": "vzdestroy", "migrate": "vzmigrate"}
# How pve-container refuses before a task starts, where the wording names no error class of its own.
_BEFORE_TASK = ("not running", "already running", "container is running")


class PctLifecycle:
    """Lifecycle (pveoci.backends.base) as pct on the node that owns the container, each waited for by pct."""

    def __init__(self, runner: Runner, *, task_timeout: float, owner: Callable[[int], str | None]) -> None:
        """`owner`: the node the cluster says a container lives on (None: nowhere)."""
        self.runner = runner
        self.task_timeout = task_timeout
        self.owner = owner

    def pct(self, node: str, subcommand: str, *args: object, params: Mapping[str, object] | None = None) -> Completed:
        """`pct SUBCOMMAND ARGS --key=value...` on the node; a typed error when it fails."""
        argv = ["pct", subcommand, *(str(a) for a in args), *options(params or {})]
        # pct waits for its task: as long as a task may take, and a little more.
        done = self.runner.run(node, argv, timeout=self.task_timeout + 60)
        if done.status != 0:
            raise self._failure(node, subcommand, args, done)
        for line in done.stderr.decode(errors="replace").splitlines():
            if line.strip():
                log.info("pct %s on %s: %s", subcommand, node, line.strip())
        return done

    def _failure(self, node: str, subcommand: str, args: tuple[object, ...], done: Completed) -> errors.PveociError:
        named = failure("pct", f"node {node}", done)
        # A create's container is not there yet: what it did not find (a template volume, a storage) failed its
        # task, as the API reports it (the runtime sends a template again on that TaskFailed).
        if named is not None and not (subcommand == "create" and isinstance(named, errors.NotFound)):
            return named
        text = reason(done) or f"exit {done.status}"
        what = f"{TASKS.get(subcommand, subcommand)} {args[0] if args else ''}".strip()
        if subcommand not in TASKS or any(words in text for words in _BEFORE_TASK):
            return errors.ApiError(f"Proxmox VE refused pct {subcommand} on {node}: {text}")
        tail = done.stdout.decode(errors="replace").splitlines()[-10:]
        # pct prints no UPID: the task is named by its type and id, as the API's would be.
        return errors.TaskFailed(f"Proxmox task {what} on {node} failed: {text}", upid="", exitstatus=text,
                                 log_tail=tail)

    def on_owner(self, node: str, vmid: int, subcommand: str, *args: object,
                 params: Mapping[str, object] | None = None) -> Completed:
        """pct on the node that owns the container: `node`, or where the cluster says it lives when pct there
        does not know it (its config is elsewhere: "does not exist", or "not running" for stop and shutdown)."""
        try:
            return self.pct(node, subcommand, vmid, *args, params=params)
        except errors.PveociError as exc:
            if f"lxc/{vmid}.conf' does not exist" not in exc.message and f"CT {vmid} not running" not in exc.message:
                raise
            owner = self.owner(vmid)
            if owner is None or owner == node:
                raise
            log.info("CT %s lives on %s, not %s: pct %s runs there", vmid, owner, node, subcommand)
            return self.pct(owner, subcommand, vmid, *args, params=params)

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        params = dict(options)
        template = str(params.pop("ostemplate", ""))
        if not template or template.startswith("-"):
            raise errors.InvalidParameter(f"not a template volume: {template!r}")
        self.pct(node, "create", vmid, template, params=params)

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.on_owner(node, vmid, "set", params=options)

    def start(self, node: str, vmid: int) -> None:
        self.on_owner(node, vmid, "start")

    def stop(self, node: str, vmid: int) -> None:
        self.on_owner(node, vmid, "stop")

    def shutdown(self, node: str, vmid: int, timeout: int) -> None:
        # forceStop: once the timeout has passed the task stops it, as with the API backend.
        self.on_owner(node, vmid, "shutdown", params={"timeout": timeout, "forceStop": 1})

    def destroy(self, node: str, vmid: int) -> None:
        self.on_owner(node, vmid, "destroy", params={"purge": 1, "destroy-unreferenced-disks": 1})

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                on_log: Callable[[str], None] | None = None) -> None:
        if target.startswith("-"):
            raise errors.InvalidParameter(f"not a node name: {target!r}")
        done = self.on_owner(node, vmid, "migrate", target, params={"restart": 1 if restart else None})
        if on_log is not None:  # pct prints the task's log when the task is over
            for line in done.stdout.decode(errors="replace").splitlines():
                on_log(line)


class PctTemplates(SshTemplates):
    """TemplateStorage over SSH (SFTP only: `--transport api` is the API's), removed through pvesh."""

    def __init__(self, ssh: SshConnector, pvesh: Pvesh) -> None:
        super().__init__(ssh, pvesh)
        self.pvesh = pvesh

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        _sftp_only(transport)
        return super().upload(packed, dest, transport=transport, progress=progress)

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        _sftp_only(transport)
        return super().begin_upload(dest, transport=transport, progress=progress)

    def remove_template(self, dest: Destination, name: str) -> None:
        self.pvesh.task("delete", "nodes", dest.node, "storage", dest.storage, "content", dest.volid(name))

    def pull_image(self, dest: Destination, reference: str, filename: str) -> None:
        self.pvesh.task("create", "nodes", dest.node, "storage", dest.storage, "oci-registry-pull",
                        reference=reference, filename=filename)


class PctBackend(Assembled):
    name = "pct"

    def __init__(self, settings: Settings, runner: Runner | None = None) -> None:
        """Over `runner`, or the one the profile says (pct_runner: local on a node, else SSH to its host)."""
        profile = settings.profile
        self.settings = settings
        self._lock = threading.Lock()
        self._quorum: cluster.Quorum | None = None
        # SSH goes where /cluster/status (asked through the entry node) says each node is.
        self.ssh = SshConnector(profile.ssh, lambda: self.cluster_status().addresses)
        self.runner = runner or self._runner()
        entry = "this node" if self.local else str(self._entry() or "the entry node")
        #: How the way into the cluster is named in messages.
        self.entry_label = entry if self.local else f"SSH to {entry}"
        self.pvesh = Pvesh(self.runner, task_timeout=profile.task_timeout, label=entry)
        self.node: NodeCommands = NodeCommands(self.runner)
        # pct runs as root on the node: root@pam's options (bind mounts, devices) are open.
        self.reads = PathReads(self.pvesh, machine=self.node.machine, privileged=True)
        self.lifecycle = PctLifecycle(self.runner, task_timeout=profile.task_timeout, owner=self._owner)
        self.storage = PctTemplates(self.ssh, self.pvesh)

    def _entry(self) -> str | None:
        """The host the cluster is entered by over SSH: the profile's host, else the first node address it gives."""
        profile = self.settings.profile
        return profile.host or next((n.address for n in profile.ssh.nodes.values() if n.address), None)

    def _runner(self) -> Runner:
        profile = self.settings.profile
        remote = SshRunner(self.ssh, entry=self._entry())
        local = profile.pct_runner == "local" or (profile.pct_runner == "auto" and tools_here())
        return LocalRunner(self.here, remote) if local else remote

    @property
    def local(self) -> bool:
        return isinstance(self.runner, LocalRunner)

    def cluster_status(self) -> cluster.Quorum:
        """Quorum, node addresses and the entry node's name, asked once."""
        with self._lock:
            if self._quorum is None:
                self._quorum = cluster.quorum(self.pvesh)
                if isinstance(self.runner, SshRunner):
                    self.runner.entry_node = self._quorum.local  # one connection to the node entered by
            return self._quorum

    def here(self) -> str:
        """The node pveoci runs on (the local runner's), as the cluster names it."""
        name = self.cluster_status().local
        if not name:
            raise errors.ApiError("pvesh did not say which node it runs on (/cluster/status has no local node)")
        return name

    def _owner(self, vmid: int) -> str | None:
        return next((g.node for g in self.reads.guests() if g.vmid == vmid), None)

    def checks(self) -> Iterator[Check]:
        from pveoci.backends.pct_checks import diagnose_pct

        return diagnose_pct(self)

    def close(self) -> None:
        self.runner.close()


def _sftp_only(transport: str) -> None:
    if transport == "api":
        raise errors.Unsupported("--transport api uploads through the Proxmox API: the pct backend uploads "
                                 "over SFTP (--transport sftp)")
