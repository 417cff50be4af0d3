"""The exceptions pveoci raises, each with a stable process exit code.

Only the command line turns these into messages and exit codes; library users
catch them by class. The codes are documented in docs/cli.md and never change
meaning once released.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pveoci.models import Check, Placement


class PveociError(Exception):
    """Base class: an operation failed for a reason the user can act on."""

    exit_code = 1

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Longer context (a task log, a server's reply) shown with --debug.
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ConfigError(PveociError):
    """The settings are missing, malformed or unsafe (e.g. a world-readable secret file)."""

    exit_code = 3


class ConnectError(PveociError):
    """The Proxmox API or a node could not be reached (refused, reset, timed out, proxy error)."""

    exit_code = 4


class TlsError(ConnectError):
    """The server's TLS certificate is not trusted or does not match the pinned fingerprint."""

    exit_code = 5


class AuthError(PveociError):
    """The API refused the credentials (bad token, wrong password, expired login)."""

    exit_code = 6


class PermissionDenied(PveociError):
    """The caller lacks a Proxmox privilege on a path."""

    exit_code = 7

    def __init__(
        self, message: str, *, path: str | None = None, privilege: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.path = path
        self.privilege = privilege


class NotFound(PveociError):
    """A container, node, storage or volume does not exist."""

    exit_code = 8


class AlreadyExists(PveociError):
    """Something with that id or name exists already."""

    exit_code = 9


class Locked(PveociError):
    """A guest's config is locked by another operation (create, backup, migrate, ...)."""

    exit_code = 10


class NoQuorum(PveociError):
    """The cluster has lost quorum: /etc/pve is read-only, nothing can change."""

    exit_code = 11


class NodeOffline(PveociError):
    """The node a request is for is offline or unreachable from the API node."""

    exit_code = 12

    def __init__(self, message: str, *, node: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.node = node


class InvalidParameter(PveociError):
    """Proxmox rejected a parameter (HTTP 400), with a message per parameter."""

    exit_code = 13

    def __init__(
        self, message: str, *, errors: Mapping[str, str] | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.errors = dict(errors or {})


class TaskFailed(PveociError):
    """A Proxmox task (UPID) ended with an error; the tail of its log is kept."""

    exit_code = 14

    def __init__(self, message: str, *, upid: str, exitstatus: str, log_tail: list[str]) -> None:
        super().__init__(message, detail="\n".join(log_tail) or None)
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail


class OperationTimeout(PveociError):
    """A wait (for a task, a lock, a state) ran out of time."""

    exit_code = 15


class SshError(PveociError):
    """An SSH connection to a node failed (refused, authentication, channel error)."""

    exit_code = 16


class HostKeyError(SshError):
    """A node's SSH host key is unknown or does not match known_hosts."""

    exit_code = 17


class BundleError(PveociError):
    """An OCI bundle is missing, its config.json is not valid JSON or not a valid runtime spec, or has no rootfs."""

    exit_code = 18


class MappingError(PveociError):
    """The bundle asks for something the cluster cannot do (in strict mode), before any remote change."""

    exit_code = 19


#: The name the public API documents for a strict-mode refusal.
UnsupportedByStrictMapping = MappingError


class ContainerStateError(PveociError):
    """The container is not in a state that allows the operation (the OCI state machine)."""

    exit_code = 20

    def __init__(self, message: str, *, status: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        #: the container's OCI status when the operation was refused
        self.status = status


class NotRunning(ContainerStateError):
    """The operation needs a running container (kill, exec, ps, pause)."""

    exit_code = 21


class NotCreated(ContainerStateError):
    """`start` needs a container that is created and was never started."""

    exit_code = 22


class Paused(ContainerStateError):
    """The container is paused: resume it first (only KILL reaches a paused container)."""

    exit_code = 23


class NotPaused(ContainerStateError):
    """`resume` needs a paused container."""

    exit_code = 24


class NotStopped(ContainerStateError):
    """`delete` without force needs a stopped (or created) container."""

    exit_code = 25


class HookFailed(PveociError):
    """An OCI hook (prestart, createRuntime) failed; the operation was undone."""

    exit_code = 26


class Unsupported(PveociError):
    """A flag, setting or feature pveoci cannot honour here (refused rather than ignored)."""

    exit_code = 27


class InUse(PveociError):
    """A template (or other resource) is still used by containers; force removes it anyway."""

    exit_code = 28

    def __init__(self, message: str, *, users: list[str] | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        #: the OCI ids of the containers that use it
        self.users = list(users or [])


class NoSuitableNode(PveociError):
    """No node can take the container: every one is offline, excluded, in maintenance or lacks what it needs."""

    exit_code = 29

    def __init__(self, message: str, *, placement: Placement | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        #: every node's score, or why it was rejected (pveoci.models.Placement)
        self.placement = placement


class MoveRefused(PveociError):
    """A migration's preflight failed: nothing was changed (the target does not allow it, HA or local
    resources keep the container where it is, ...)."""

    exit_code = 30

    def __init__(self, message: str, *, checks: Sequence[Check] = (), detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        #: the preflight's checks (pveoci.models.Check), the failing ones with status "fail"
        self.checks = list(checks)


class MarkerUnreadable(PveociError):
    """A container carries pveoci's tags but its ownership marker (the block in its notes) cannot be read: it
    is neither taken for another's nor changed (docs/state.md, "An unreadable marker")."""

    exit_code = 31

    def __init__(self, message: str, *, reason: str = "", node: str | None = None, vmid: int | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        #: what is wrong with the marker, e.g. "its JSON is not valid (...)"
        self.reason = reason or message
        self.node = node
        self.vmid = vmid


class ImageError(PveociError):
    """An image cannot be used: an unknown or malformed reference, a registry's refusal, a digest that does not
    match, an image for another architecture, a layer that is broken or would write outside the rootfs."""

    exit_code = 32


class RolledBack(PveociError):
    """An image update did not take: the new image's container did not start, or its process ended within the
    grace period; the container is back on its old image (as it was, with its data)."""

    exit_code = 33


class ChecksFailed(PveociError):
    """`pveoci doctor` found at least one failing check."""

    exit_code = 1


class ApiError(PveociError):
    """Any other error the Proxmox API reported."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.status = status


#: Exit codes of the command line, as documented in docs/cli.md.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


def exit_codes() -> dict[str, int]:
    """Every exception class of this module by name, with its exit code (for docs and tests)."""
    return {cls.__name__: cls.exit_code for cls in _all_classes(PveociError)}


def _all_classes(base: type[PveociError]) -> list[type[PveociError]]:
    out = [base]
    for sub in base.__subclasses__():
        out.extend(_all_classes(sub))
    return out
