"""What the runtime needs from a cluster, whatever carries it: the Proxmox API, pct/pvesh, or memory.

The runtime (pveoci.runtime) talks to a cluster only through these protocols; adapters implement
them (backends.api over the HTTP API and SSH; backends.pct over pct and pvesh on the nodes;
backends.memory in memory, for tests). Each method
is one thing Proxmox does; policy (OCI states, retries of races, rollback) stays in the runtime.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from pveoci.models import Check, Completed, Destination, Guest, MigrationCheck, Node, Template, UnpackedImage

if TYPE_CHECKING:  # the packer's types only: a command that sends no template does not load the packer
    from pveoci.template.delta import Delta
    from pveoci.template.pack import Packed


class Facts(Protocol):
    """Where a backend keeps what rarely changes (the cluster's version, its nodes' addresses) between commands:
    the local cache, for one cluster. A fact older than `max_age` seconds is None, as one never kept."""

    def recall(self, key: str, max_age: float) -> Any | None: ...

    def remember(self, key: str, value: Any) -> None: ...

    def forget(self, key: str) -> None: ...


class NoFacts:
    """Facts kept nowhere: every question goes to the cluster."""

    def recall(self, key: str, max_age: float) -> Any | None:
        return None

    def remember(self, key: str, value: Any) -> None:
        return None

    def forget(self, key: str) -> None:
        return None


class ClusterReads(Protocol):
    """What the cluster looks like."""

    def version(self) -> tuple[int, int]:
        """Proxmox VE's (major, minor)."""

    def nodes(self) -> list[Node]:
        """Every node, with its load, (when online) its storages, and whether it is in HA maintenance."""

    def overview(self) -> tuple[list[Node], list[Guest]]:
        """Every node's status, load and HA maintenance (without storages) and every container: one call where
        the backend can."""

    def guests(self) -> list[Guest]:
        """Every container of the cluster (with its memory and HA state), in one call where the backend can."""

    def status(self, node: str, vmid: int) -> Guest:
        """One container's current status (its pid when running); NotFound if it is not there."""

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        """One container's configuration; NotFound if it is not there."""

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        """The configurations of many containers by VMID (those that vanished meanwhile left out); a backend
        may read them in parallel."""

    def statuses(self, guests: Iterable[Guest]) -> dict[int, Guest]:
        """The current status (with pid) of many containers by VMID (vanished ones left out); in parallel where
        the backend can."""

    def next_vmid(self) -> int:
        """A VMID the cluster considers free now (it reserves nothing)."""

    def node_machine(self, node: str) -> str:
        """The node's machine name as `uname -m` gives it (x86_64, aarch64, ...)."""

    def privileged(self) -> bool:
        """True when the cluster sees root@pam act (a password login as root@pam, or pct run as root on a
        node): only then are options that root@pam alone may set (bind mounts, devices) planned."""

    def migrate_check(self, node: str, vmid: int, target: str) -> MigrationCheck:
        """What Proxmox says of moving the container to target, changing nothing: the nodes it allows, those HA
        rules block, the HA resources that would move along."""


class Lifecycle(Protocol):
    """Changes to containers; each waits until Proxmox has done it (a task ended) and raises if it failed."""

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None: ...

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None: ...

    def start(self, node: str, vmid: int) -> None: ...

    def stop(self, node: str, vmid: int) -> None: ...

    def shutdown(self, node: str, vmid: int, timeout: int) -> None: ...

    def destroy(self, node: str, vmid: int) -> None: ...

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                on_log: Callable[[str], None] | None = None) -> None:
        """Move the container (a running one in restart mode); the task's log lines go to on_log as they come.
        For an HA-managed container this returns once HA has the request: its outcome is the runtime's to see."""


class OnNode(Protocol):
    """What only the node itself can do: run a program in a container, signal, freeze."""

    def exec(self, node: str, vmid: int, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
             stderr: IO[bytes] | None, tty: bool = False) -> int:
        """Run argv in the container with these streams (None: nothing in, output dropped); its exit status."""

    def capture(self, node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> Completed:
        """Run argv in the container and collect what it prints."""

    def exec_command(self, node: str, vmid: int, argv: list[str], *, tty: bool = False) -> list[str] | None:
        """The command for this machine that runs argv in the container with the streams it is given: for a
        process of its own that outlives pveoci's (the stand-in). None where no command reaches the cluster."""

    def log_after_command(self, node: str, vmid: int, offset: str) -> list[str] | None:
        """The command for this machine that says where a container whose log a follower lost is (`running`,
        `missing`, `stopped STATUS`, `stopped -`, `error WHY`: one line) and, when it is stopped, prints its
        init's log from the byte offset `offset` (a word the caller replaces) on. None as exec_command."""

    def signal(self, node: str, pid: int, signame: str, *, children: bool = False) -> None:
        """Send a signal (a name, or a number as text) to a process of the node, a container's init by its host
        pid; with `children`, to that process's children instead (the init's process, for KILL and STOP)."""

    def read_file(self, node: str, vmid: int, path: str) -> bytes | None:
        """A file of a stopped container (None if it has none there)."""

    def swap_rootfs(self, node: str, vmid: int, action: str, *, pid: int = 0, template: str = "",
                    owner: str = "0:0", userns: Sequence[str] = (), keep: Sequence[str] = (),
                    need: int = 0) -> tuple[str, str]:
        """One step of an image update on a container's root filesystem (pveoci.backends.swapscript): `swap`
        to a template (its path on the node), `back`, `commit`, `check` (it fits: nothing changes) or `state`;
        the update's state after it and the template's name. Locked for a `swap` over an update that did not
        finish (detail: "STATE NAME")."""

    def describe_image(self, node: str, vmid: int, *, archive: str = "", digest: str = "", owner: str = "0:0",
                       userns: Sequence[str] = (), into: str = "", like: str = "",
                       init: bytes = b"") -> UnpackedImage:
        """What Proxmox unpacked into a stopped container (`--pull node`: pveoci.backends.imagescript): its
        tree's listing and /etc/passwd, /etc/group. With `into` (the template directory on the node), the tree
        with `init` as pveoci's init is packed into pveoci's template there, named by its digest and `like`.
        `archive` (a path on the node) is first checked to hold the manifest `digest`."""

    def freeze(self, node: str, vmid: int) -> None: ...

    def thaw(self, node: str, vmid: int) -> None: ...

    def reach(self, node: str) -> None:
        """Connect to the node now, for a command to come (its login overlaps what the caller asks meanwhile);
        nothing where no connection is kept. A failure here is the caller's to ignore: that command fails
        as it would have."""


class Claim(Protocol):
    """The right to pack and upload one rootfs's template to one storage; other creates wait for it."""

    ours: bool                      # True: this caller holds it; False: another did, see result()

    def result(self) -> str | None:
        """The template name the holder recorded when it was done (None: not done, or it gave up)."""

    def wait(self, timeout: float) -> str | None:
        """Wait (not holding it) until the holder is done: its result, or None if it gave up or went quiet."""

    def take_over(self) -> bool:
        """The holder gave up or went quiet: try to become the holder; True if now ours."""

    def heartbeat(self) -> None:
        """Still at it (a holder that goes quiet for long is taken over)."""

    def release(self, name: str | None) -> None:
        """Done: record the template name (None: gave up) and let the waiters go on."""


class TemplateUpload(Protocol):
    """A template on its way to a storage: its compressed bytes in order, then finished or aborted."""

    sent: int

    def write(self, data: bytes) -> object: ...

    def finish(self, packed: Packed, claim: Claim | None = None) -> bool:
        """Verify what arrived against packed and move it into place under packed's name; False if the storage
        had that template by then (this copy is dropped). `claim`: the claim it was sent under; an upload that
        can record the name in it in the same step does, and the claim's release has nothing left to do."""

    def abort(self) -> None:
        """Drop what was sent (never visible to Proxmox)."""


class TemplateStorage(Protocol):
    """The storages templates live on."""

    def template_destination(self, node: str, storage: str) -> Destination:
        """The storage on that node, checked: it exists there, is active and takes templates."""

    def templates(self, dest: Destination) -> list[Template]:
        """pveoci's templates on that storage, as that node lists them."""

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        """Put the packed template (a local file) on dest, atomically and verified; the bytes sent."""

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        """Start an upload whose bytes come while the template is still being packed."""

    def upload_delta(self, packed: Packed, base: str, delta: Delta, dest: Destination, *,
                     progress: Callable[[int], None]) -> int:
        """Put packed (a local file) on dest by sending only delta's new frames; the node rebuilds the rest from
        the template `base` it has, byte-identical to packed. The bytes sent. Unsupported where it cannot."""

    def claim_template(self, dest: Destination, key: str) -> Claim:
        """Claim the packing and upload of the template keyed so (manifest.key) on dest."""

    def sweep_templates(self, dest: Destination) -> list[str]:
        """Remove what killed uploads left on dest (partial files, stale claims); what was removed."""

    def remove_template(self, dest: Destination, name: str) -> None: ...

    def pull_image(self, dest: Destination, reference: str, filename: str) -> None:
        """Proxmox VE 9.1's own pull (`oci-registry-pull`) of a registry image by tag onto dest, as the OCI
        archive `filename`.tar; TaskFailed (with the node's words) when it fails."""


class Backend(ClusterReads, Lifecycle, OnNode, TemplateStorage, Protocol):
    """Everything at once: what `pveoci.connect()` plugs into the runtime."""

    name: str

    def checks(self) -> Iterator[Check]:
        """Diagnose the connection to the cluster (`pveoci doctor`), one Check at a time."""

    def close(self) -> None:
        """Release connections."""


def operations(protocol: type) -> tuple[str, ...]:
    """The methods a protocol of this module declares (its bases' too), by name: what a backend that delegates
    routes, so that an operation added to a protocol needs no line in any delegation."""
    names = {name for cls in protocol.__mro__ if cls.__module__ == __name__
             for name, value in vars(cls).items() if not name.startswith("_") and inspect.isfunction(value)}
    return tuple(sorted(names))
