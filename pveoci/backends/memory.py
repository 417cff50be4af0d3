"""A cluster in memory: the Backend protocol without Proxmox, for the runtime's unit tests and for yours.

It keeps what a Proxmox cluster keeps (nodes, storages, containers with their config and tags,
templates) and refuses what Proxmox refuses, in Proxmox's words: a taken VMID, a template that
is not on the node's storage, destroying a running container. A started container runs a model of
pveoci's init: it waits for the start signal, then "runs" the process until `exit(vmid, status)`
ends it (or a signal it cannot survive). Programs run in a container by a function you give
(`programs`); faults are injected with `fail`.

    from pveoci.backends.memory import MemoryBackend
    from pveoci.connect import connect

    rt = connect(settings=my_settings, backend=MemoryBackend(nodes=("pve1", "pve2")))
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pveoci import errors
from pveoci.models import (
    Check,
    Completed,
    Destination,
    Guest,
    MigrationCheck,
    Node,
    Storage,
    Template,
    UnpackedImage,
)
from pveoci.template.delta import Delta
from pveoci.template.pack import Packed

#: A program in a container: (node, vmid, argv, stdin) -> (exit status, stdout, stderr).
Program = Callable[[str, int, list[str], bytes], tuple[int, bytes, bytes]]

GIB = 1024**3
MIB = 1024**2

T = TypeVar("T")


def _number(signame: str) -> int:
    import signal

    return int(signame) if signame.isdigit() else int(signal.Signals[signame if signame.startswith("SIG")
                                                                      else "SIG" + signame])


@dataclass(frozen=True)
class RegistryImage:
    """An image a node of the memory cluster can pull: its manifest digest (for the node's architecture) and the
    tree Proxmox would unpack (backends.imagescript's listing and files)."""

    digest: str
    config_digest: str
    listing: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    size: int = 1 << 20


@dataclass
class MemoryCt:
    vmid: int
    node: str
    config: dict[str, Any]
    status: str = "stopped"
    pid: int | None = None
    frozen: bool = False
    phase: str = ""                 # the init's: "waiting" for start, "running" the process, "" when stopped
    exit_status: int | None = None  # the process's, once it ended
    signals: list[str] = field(default_factory=list)   # what the process was sent
    ha_state: str | None = None     # HA-managed: its HA resource's state (started, stopped, ...)
    started: float = 0.0            # when it was started (time.time())
    figures: dict[str, Any] = field(default_factory=dict)  # Guest figures its status reports while it runs (a test's)
    swap: tuple[str, str] = ("none", "")   # an image update's state on the node, and the template it is to
    rootfs_template: str = ""              # the template its root filesystem holds (its create's, or a swap's)
    previous_template: str = ""            # what `back` puts back

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(t for t in str(self.config.get("tags") or "").split(";") if t)


class MemoryBackend:
    """The Backend protocol (pveoci.backends.base) over dictionaries; thread-safe."""

    name = "memory"

    def __init__(self, nodes: Iterable[str] = ("pve1",), *, version: tuple[int, int] = (9, 1),
                 shared_templates: bool = False, programs: Program | None = None, machine: str = "x86_64",
                 root: bool = False) -> None:
        self.nodes_online = dict.fromkeys(nodes, True)
        self.maintenance: set[str] = set()                               # nodes in HA maintenance
        self.load: dict[str, dict[str, Any]] = {}                        # node -> Node fields to report (mem, cpu, ...)
        self.node_storages: dict[str, tuple[Storage, ...]] = {}          # node -> its storages, where not the default
        self.ha_blocked: dict[str, str] = {}                             # node -> why HA rules keep HA CTs from it
        self.version_ = version
        self.shared_templates = shared_templates
        self.programs = programs
        self.machine = machine
        self.root = root  # acts as root@pam: bind mounts and devices are planned
        self.cts: dict[int, MemoryCt] = {}
        self.template_files: dict[tuple[str, str], dict[str, int]] = {}  # (node or "", storage) -> {name: size}
        self.uploads: list[tuple[str, str]] = []                          # (node, template name) per upload
        self.sent_bytes = 0                                               # template bytes sent, uploads and deltas
        self.claims: dict[tuple[str, str, str], dict[str, Any]] = {}
        # Registry images a node can pull (`pull_image`): "host/repo:tag" -> what Proxmox would unpack of it.
        self.registry: dict[str, RegistryImage] = {}
        self.pulled: list[tuple[str, str]] = []                           # (node, reference) per node pull
        self._archives: dict[str, str] = {}                               # archive name -> reference
        self.signals: list[tuple[str, int, str]] = []
        self.calls: list[str] = []
        self._failures: dict[str, list[errors.PveociError]] = {}
        self._pids = itertools.count(1000)
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- faults

    def fail(self, method: str, error: errors.PveociError, times: int = 1) -> None:
        """Make the next `times` calls of `method` (e.g. "create") raise `error` before doing anything."""
        self._failures.setdefault(method, []).extend([error] * times)

    def _call(self, method: str) -> None:
        self.calls.append(method)
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def _ct(self, node: str, vmid: int) -> MemoryCt:
        ct = self.cts.get(vmid)
        if ct is None or ct.node != node:
            raise errors.NotFound(f"Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
        if not self.nodes_online.get(node, False):
            raise errors.NodeOffline(f"node '{node}' is offline", node=node)
        return ct

    # ------------------------------------------------------------------ reads

    def version(self) -> tuple[int, int]:
        self._call("version")
        return self.version_

    def overview(self) -> tuple[list[Node], list[Guest]]:
        self._call("overview")
        return [replace(n, storages=()) for n in self._nodes()], self._guests()

    def nodes(self) -> list[Node]:
        self._call("nodes")
        return self._nodes()

    def _nodes(self) -> list[Node]:
        out = []
        for n, on in sorted(self.nodes_online.items()):
            fields: dict[str, Any] = {"maxcpu": 4, "mem": 0, "maxmem": 8 * GIB, **self.load.get(n, {})}
            out.append(Node(name=n, online=on, storages=self.node_storages.get(n, self._storages()) if on else (),
                            maintenance=n in self.maintenance, **fields))
        return out

    def _storages(self) -> tuple[Storage, ...]:
        return (Storage("local", "dir", ("vztmpl", "iso"), self.shared_templates, True, 100 * GIB, 200 * GIB),
                Storage("local-lvm", "lvmthin", ("rootdir", "images"), False, True, 100 * GIB, 200 * GIB))

    def guests(self) -> list[Guest]:
        self._call("guests")
        return self._guests()

    def _guests(self) -> list[Guest]:
        with self._lock:
            return [self._guest(ct) for ct in sorted(self.cts.values(), key=lambda c: c.vmid)]

    def _guest(self, ct: MemoryCt) -> Guest:
        online = self.nodes_online.get(ct.node, False)
        return Guest(vmid=ct.vmid, node=ct.node, status=ct.status if online else "unknown", tags=ct.tags,
                     lock=ct.config.get("lock"), pid=ct.pid, name=str(ct.config.get("hostname", "")),
                     ha_state=ct.ha_state, **self._figures(ct))

    @staticmethod
    def _figures(ct: MemoryCt) -> dict[str, Any]:
        """What Proxmox reports of its use of resources: its limits, and while it runs a little memory and CPU
        (`ct.figures` says otherwise) and the time since its start."""
        maxmem = int(ct.config.get("memory") or 512) * MIB
        limits = {"maxmem": maxmem, "maxswap": int(ct.config.get("swap") or 0) * MIB, "maxdisk": 4 * GIB,
                  "cpus": float(ct.config.get("cores") or 1)}
        if ct.status != "running":
            return limits
        return {**limits, "mem": min(32 * MIB, maxmem), "cpu": 0.01, "disk": 64 * MIB,
                "uptime": int(time.time() - ct.started), **ct.figures}

    def status(self, node: str, vmid: int) -> Guest:
        self._call("status")
        with self._lock:
            return self._guest(self._ct(node, vmid))

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        self._call("config")
        with self._lock:
            return dict(self._ct(node, vmid).config)

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        return {vmid: found for vmid, found in ((g.vmid, self._maybe(self.config, g)) for g in guests) if found}

    def statuses(self, guests: Iterable[Guest]) -> dict[int, Guest]:
        return {vmid: found for vmid, found in ((g.vmid, self._maybe(self.status, g)) for g in guests) if found}

    @staticmethod
    def _maybe(read: Callable[[str, int], T], g: Guest) -> T | None:
        try:
            return read(g.node, g.vmid)
        except (errors.NotFound, errors.NodeOffline):
            return None

    def next_vmid(self) -> int:
        self._call("next_vmid")
        with self._lock:
            return next(v for v in itertools.count(100) if v not in self.cts)

    def node_machine(self, node: str) -> str:
        self._call("node_machine")
        return self.machine

    def privileged(self) -> bool:
        return self.root

    def migrate_check(self, node: str, vmid: int, target: str) -> MigrationCheck:
        """As PVE answers: every other node is allowed (offline ones too), but those `ha_blocked` names for an
        HA-managed container."""
        self._call("migrate_check")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.config.get("lock"):
                raise errors.Locked(f"CT is locked ({ct.config['lock']})")
            blocked = {n: why for n, why in self.ha_blocked.items() if ct.ha_state is not None and n != node}
            allowed = tuple(n for n in sorted(self.nodes_online) if n != node and n not in blocked)
            return MigrationCheck(running=ct.status == "running", allowed=allowed,
                                  blocked=tuple(sorted(blocked.items())))

    # ----------------------------------------------------------------- writes

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self._call("create")
        with self._lock:
            if not self.nodes_online.get(node, False):  # the request goes to the node: nothing else is asked
                raise errors.NodeOffline(f"node '{node}' is offline", node=node)
            if vmid in self.cts:
                raise errors.AlreadyExists(f"CT {vmid} already exists on node '{self.cts[vmid].node}'")
            volid = str(options.get("ostemplate", ""))
            storage, _, volname = volid.partition(":")
            if volname.split("/", 1)[-1] not in self._files(node, storage):
                # PVE's own words (PVE::Storage::abs_filesystem_path, in the vzcreate task).
                raise errors.TaskFailed(f"Proxmox task vzcreate {vmid} on {node} failed: unable to create CT "
                                        f"{vmid} - can't find file '{volid}'", upid="UPID:memory",
                                        exitstatus=f"unable to create CT {vmid} - can't find file '{volid}'",
                                        log_tail=[])
            config = {k: v for k, v in options.items() if k not in ("ostemplate", "start")}
            config["tags"] = ";".join(sorted({t.lower() for t in str(config.get("tags") or "").split(";") if t}))
            self.cts[vmid] = ct = MemoryCt(vmid=vmid, node=node, config=config)
            ct.rootfs_template = ct.previous_template = volname.split("/", 1)[-1]
            if options.get("start"):
                self._boot(ct)

    def _boot(self, ct: MemoryCt) -> None:
        ct.status, ct.pid, ct.phase, ct.exit_status = "running", next(self._pids), "waiting", None
        ct.started = time.time()

    def _halt(self, ct: MemoryCt, status: int | None = None) -> None:
        ct.status, ct.pid, ct.frozen, ct.phase = "stopped", None, False, ""
        if status is not None:
            ct.exit_status = status

    def exit(self, vmid: int, status: int) -> None:
        """The process of CT vmid ends with this status: the init ends, the CT stops."""
        with self._lock:
            self._halt(self.cts[vmid], status)

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self._call("set_options")
        with self._lock:
            ct = self._ct(node, vmid)
            options = dict(options)
            for key in str(options.pop("delete", None) or "").split(","):  # as PVE: back to their defaults
                ct.config.pop(key, None)
            ct.config.update(options)
            if "tags" in options:
                ct.config["tags"] = ";".join(sorted({t.lower() for t in str(options["tags"]).split(";") if t}))

    def start(self, node: str, vmid: int) -> None:
        self._call("start")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.status == "running":
                raise errors.ApiError(f"CT {vmid} already running")
            self._boot(ct)

    def _running(self, node: str, vmid: int) -> MemoryCt:
        """As Proxmox: stopping a container that does not run here (stopped, or not on this node at all) is
        refused before its config is looked at."""
        ct = self.cts.get(vmid)
        if ct is None or ct.node != node or ct.status != "running":
            raise errors.ApiError(f"CT {vmid} not running")
        return self._ct(node, vmid)

    def stop(self, node: str, vmid: int) -> None:
        self._call("stop")
        with self._lock:
            self._halt(self._running(node, vmid), 137)

    def shutdown(self, node: str, vmid: int, timeout: int) -> None:
        self._call("shutdown")
        with self._lock:
            self._halt(self._running(node, vmid), 143)

    def destroy(self, node: str, vmid: int) -> None:
        self._call("destroy")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.status == "running":  # refused before any task starts
                raise errors.ApiError(f"unable to destroy CT {vmid} - container is running")
            del self.cts[vmid]

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                on_log: Callable[[str], None] | None = None) -> None:
        """A restart-mode move starts the CT again on target: its init waits for the start signal anew."""
        self._call("migrate")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.status == "running" and not restart and ct.ha_state is None:
                raise errors.ApiError("can't migrate running container without --online or --restart")
            if not self.nodes_online.get(target, False):
                raise errors.NodeOffline(f"node '{target}' is offline", node=target)
            log = on_log or (lambda line: None)
            log(f"Requesting HA migration for CT {vmid} to node {target}" if ct.ha_state
                else f"starting migration of CT {vmid} to node '{target}'")
            ct.node = target
            if ct.status == "running":
                ct.pid, ct.phase, ct.frozen, ct.started = next(self._pids), "waiting", False, time.time()
            log("migration finished successfully")

    # -------------------------------------------------------- on the node

    def exec(self, node: str, vmid: int, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
             stderr: IO[bytes] | None, tty: bool = False) -> int:
        done = self.capture(node, vmid, argv, stdin=stdin.read() if stdin is not None else None)
        for stream, data in ((stdout, done.stdout), (stderr, done.stderr)):
            if stream is not None and data:
                stream.write(data)
        return done.status

    def exec_command(self, node: str, vmid: int, argv: list[str], *, tty: bool = False) -> list[str] | None:
        return None    # a cluster in this process: no command of this machine reaches it

    def log_after_command(self, node: str, vmid: int, offset: str) -> list[str] | None:
        return None

    def capture(self, node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> Completed:
        """The init's `state` is answered from the model of the init; anything else runs `programs`."""
        self._call("exec")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.status != "running":  # as pct exec says it, and exits
                return Completed(255, b"", f"container '{vmid}' not running!\n".encode())
            if argv == ["/.pveoci/init", "state"]:
                state = {"waiting": "created", "running": "running"}.get(ct.phase, "stopped")
                return Completed(0, f'{{"state": "{state}", "pid": null, "status": null}}\n'.encode(), b"")
        if self.programs is None:
            return Completed(0, b"", b"")
        return Completed(*self.programs(node, vmid, argv, stdin or b""))

    def signal(self, node: str, pid: int, signame: str, *, children: bool = False) -> None:
        """A model of the init: the start signal starts the process; any other signal ends a waiting init;
        a running process notes what it was sent and dies of KILL (sent to it: `children`)."""
        self._call("signal")
        self.signals.append((node, pid, signame))
        with self._lock:
            ct = next((c for c in self.cts.values() if c.pid == pid and c.node == node), None)
            if ct is None:
                raise errors.PveociError(f"cannot send {signame} to pid {pid} on {node}: no such process")
            number = _number(signame)
            if ct.phase == "waiting":
                if number == 40:
                    ct.phase = "running"
                elif not children:
                    self._halt(ct, 128 + number)
            elif ct.phase == "running":
                ct.signals.append(signame)
                if number == 9:
                    self._halt(ct, 137)

    def reach(self, node: str) -> None:
        """Nothing to connect to."""

    def read_file(self, node: str, vmid: int, path: str) -> bytes | None:
        self._call("read_file")
        with self._lock:
            ct = self._ct(node, vmid)
            if path.endswith("/status") and ct.exit_status is not None:
                return str(ct.exit_status).encode()
            return None

    def swap_rootfs(self, node: str, vmid: int, action: str, *, pid: int = 0, template: str = "",
                    owner: str = "0:0", userns: Sequence[str] = (), keep: Sequence[str] = (),
                    need: int = 0) -> tuple[str, str]:
        """A model of the node's side: the update's state and the template it is to, per container."""
        self._call("swap_rootfs")
        with self._lock:
            ct = self._ct(node, vmid)
            if (ct.status == "running") != bool(pid):
                raise errors.PveociError(f"cannot {action} the root filesystem of CT {vmid} on {node}: "
                                         + ("CT is running" if ct.status == "running" else "no such process"))
            state, name = ct.swap
            if action == "swap":
                if state != "none":
                    raise errors.Locked(f"CT {vmid} on {node} has an image update that did not finish ({state})",
                                        detail=f"{state} {name}")
                ct.swap = ("swapped", template.rsplit("/", 1)[-1])
                ct.rootfs_template = ct.swap[1]
            elif action == "back":
                if state != "none":
                    ct.rootfs_template = ct.previous_template
                ct.swap = ("none", "")
            elif action == "commit":
                ct.previous_template = ct.rootfs_template
                ct.swap = ("none", "")
            return ct.swap

    def describe_image(self, node: str, vmid: int, *, archive: str = "", digest: str = "", owner: str = "0:0",
                       userns: Sequence[str] = (), into: str = "", like: str = "",
                       init: bytes = b"") -> UnpackedImage:
        """A model of backends.imagescript: the registry image the container was made from, as its tree."""
        self._call("describe_image")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.status == "running":
                raise errors.PveociError(f"cannot read the image Proxmox unpacked in CT {vmid} on {node}: running")
            image = self.registry.get(self._archives.get(ct.rootfs_template, ""))
            if image is None:
                raise errors.PveociError(f"cannot read the image Proxmox unpacked in CT {vmid} on {node}: no image")
            if archive and image.config_digest != digest:
                raise errors.PveociError(f"cannot read the image Proxmox unpacked in CT {vmid} on {node}: the pulled "
                                         f"archive holds the image {image.config_digest}, not {digest}")
            if not into:
                return UnpackedImage(image.listing, dict(image.files))
            from pveoci.template.pack import template_name

            name = template_name(hashlib.sha256(image.digest.encode() + init).hexdigest(), like)
            storage = into.split("/")[4] if into.startswith("/var/lib/vz/") else "local"
            self._files(node, storage)[name] = image.size
            self._archives[name] = self._archives[ct.rootfs_template]   # a container of it has the same tree
            self.sent_bytes += len(init)
            return UnpackedImage(image.listing, dict(image.files), name, image.size)

    def freeze(self, node: str, vmid: int) -> None:
        self._call("freeze")
        with self._lock:
            ct = self._ct(node, vmid)
            if ct.status != "running":  # lxc-freeze finds no running container to freeze
                raise errors.PveociError(f"cannot freeze CT {vmid} on {node}: {vmid} is not running")
            ct.frozen = True

    def thaw(self, node: str, vmid: int) -> None:
        self._call("thaw")
        with self._lock:
            self._ct(node, vmid).frozen = False

    # -------------------------------------------------------------- templates

    def _files(self, node: str, storage: str) -> dict[str, int]:
        key = ("" if self.shared_templates and storage == "local" else node, storage)
        return self.template_files.setdefault(key, {})

    def template_destination(self, node: str, storage: str) -> Destination:
        self._call("template_destination")
        found = {s.name: s for s in self.node_storages.get(node, self._storages())}
        if storage not in found:
            raise errors.NotFound(f"storage '{storage}' is not available on node '{node}'")
        if "vztmpl" not in found[storage].content:
            raise errors.ConfigError(f"storage '{storage}' does not hold container templates (content vztmpl)")
        return Destination(node=node, storage=storage, shared=self.shared_templates,
                           directory=f"/var/lib/vz/{storage}/template/cache", avail=100 * GIB)

    def templates(self, dest: Destination) -> list[Template]:
        self._call("templates")
        with self._lock:
            return [Template(node=dest.node, storage=dest.storage, volid=dest.volid(name), name=name, size=size,
                             ctime=0, shared=self.shared_templates)
                    for name, size in sorted(self._files(dest.node, dest.storage).items())]

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        self._call("upload")
        with self._lock:
            self._files(dest.node, dest.storage)[packed.name] = packed.size
            self.uploads.append((dest.node, packed.name))
            self.sent_bytes += packed.size
        progress(packed.size)
        return packed.size

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> MemoryUpload:
        self._call("begin_upload")
        return MemoryUpload(self, dest, progress)

    def upload_delta(self, packed: Packed, base: str, delta: Delta, dest: Destination, *,
                     progress: Callable[[int], None]) -> int:
        self._call("upload_delta")
        with self._lock:
            files = self._files(dest.node, dest.storage)
            if base not in files:
                raise errors.NotFound(f"volume '{dest.volid(base)}' does not exist")
            files[packed.name] = packed.size
            self.uploads.append((dest.node, packed.name))
            self.sent_bytes += delta.new_bytes
        progress(delta.new_bytes)
        return delta.new_bytes

    def claim_template(self, dest: Destination, key: str) -> MemoryClaim:
        self._call("claim_template")
        return MemoryClaim(self, (dest.node, dest.storage, key))

    def sweep_templates(self, dest: Destination) -> list[str]:
        self._call("sweep_templates")
        return []   # nothing here is ever left half-made by a killed process

    def pull_image(self, dest: Destination, reference: str, filename: str) -> None:
        """Proxmox 9.1's oci-registry-pull, modelled: the archive appears, or the task fails as skopeo would."""
        self._call("pull_image")
        with self._lock:
            if self.version_ < (9, 1):
                raise errors.ApiError("Method 'POST /nodes/{node}/storage/{storage}/oci-registry-pull' not "
                                      "implemented", status=501)
            image = self.registry.get(reference)
            name = f"{filename}.tar"
            if image is None:
                raise errors.TaskFailed(f"Proxmox task ociregistrypull on {dest.node} failed: manifest unknown",
                                        upid="UPID:memory", exitstatus="manifest unknown", log_tail=[])
            if name in self._files(dest.node, dest.storage):
                raise errors.TaskFailed(f"Proxmox task ociregistrypull on {dest.node} failed: file exists",
                                        upid="UPID:memory", exitstatus="file exists", log_tail=[])
            self._files(dest.node, dest.storage)[name] = image.size
            self._archives[name] = reference
            self.pulled.append((dest.node, reference))

    def remove_template(self, dest: Destination, name: str) -> None:
        self._call("remove_template")
        with self._lock:
            if self._files(dest.node, dest.storage).pop(name, None) is None:
                raise errors.NotFound(f"volume '{dest.volid(name)}' does not exist")

    # ------------------------------------------------------------------ misc

    def checks(self) -> Iterator[Check]:
        yield Check("memory", "pass", f"an in-memory cluster of {len(self.nodes_online)} node(s)")

    def close(self) -> None:
        return None


class MemoryUpload:
    """A streamed upload into a MemoryBackend: it lands at finish(), under the packed name, unless there."""

    def __init__(self, backend: MemoryBackend, dest: Destination, progress: Callable[[int], None]) -> None:
        self.backend, self.dest, self.progress = backend, dest, progress
        self.sent = 0

    def write(self, data: bytes) -> int:
        self.sent += len(data)
        self.progress(len(data))
        return len(data)

    def finish(self, packed: Packed, claim: Claim | None = None) -> bool:
        b = self.backend
        with b._lock:
            b.sent_bytes += self.sent
            files = b._files(self.dest.node, self.dest.storage)
            if packed.name in files:
                return False
            files[packed.name] = packed.size
            b.uploads.append((self.dest.node, packed.name))
            return True

    def abort(self) -> None:
        self.backend.sent_bytes += self.sent


class MemoryClaim:
    """A claim in a MemoryBackend, kept as a node keeps one (pveoci.template.node_claim): who claims first holds
    it, the others wait in it; the holder's result is read by each waiter, and the claim goes once it has its
    result and no waiter is left in it (a finished claim leaves nothing); a holder that gives up removes it, and
    its waiters find it gone and take over."""

    def __init__(self, backend: MemoryBackend, key: tuple[str, str, str]) -> None:
        self.backend, self.key = backend, key
        self._result: str | None = None
        with backend._lock:
            self.slot = backend.claims.setdefault(key, {"holder": None, "result": None, "waiters": set()})
            if self.slot["holder"] is None:
                self.slot["holder"] = self
            else:
                self.slot["waiters"].add(self)
            self.ours = self.slot["holder"] is self

    def _leave(self) -> None:
        """Out of the claim (lock held); the claim goes when it has its result and nobody waits in it."""
        self.slot["waiters"].discard(self)
        if self.slot["result"] is not None and not self.slot["waiters"]:
            self._gone()

    def _gone(self) -> None:
        if self.backend.claims.get(self.key) is self.slot:
            del self.backend.claims[self.key]
        self.slot["holder"] = None

    def _poll(self) -> tuple[bool, str | None]:
        """(still held, its result), this waiter leaving once it has read the result (lock held)."""
        if self.backend.claims.get(self.key) is not self.slot or self not in self.slot["waiters"]:
            return False, None
        if self.slot["result"] is not None:
            self._result = self.slot["result"]
            self._leave()
            return False, self._result
        return True, None

    def result(self) -> str | None:
        if self._result is None and not self.ours:
            with self.backend._lock:
                self._poll()
        return self._result

    def wait(self, timeout: float) -> str | None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.backend._lock:
                held, result = self._poll()
            if not held:
                return result
            time.sleep(0.01)
        return None

    def take_over(self) -> bool:
        """The holder gave up (or went quiet): remove the claim this one waited in, and take it anew."""
        with self.backend._lock:
            if self.backend.claims.get(self.key) is self.slot and self in self.slot["waiters"]:
                self._gone()
            self._result = None
            self.slot = self.backend.claims.setdefault(self.key, {"holder": None, "result": None, "waiters": set()})
            if self.slot["holder"] is None:
                self.slot["holder"] = self
            else:
                self.slot["waiters"].add(self)
            self.ours = self.slot["holder"] is self
            return self.ours

    def heartbeat(self) -> None:
        return None

    def release(self, name: str | None) -> None:
        """Done (the name, for the waiters), or given up (None: the claim goes); a waiter that stops waiting
        leaves it."""
        with self.backend._lock:
            if self.ours and self.slot["holder"] is self:
                if name:
                    self.slot["result"] = name
                    self._leave()
                else:
                    self._gone()
            elif not self.ours and self._result is None:
                self._leave()


if TYPE_CHECKING:
    from pveoci.backends.base import Backend, Claim

    def _conforms(backend: MemoryBackend) -> Backend:  # mypy checks the protocol here
        return backend
