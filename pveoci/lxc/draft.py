"""The mapping's Draft: the plan while the field functions (pveoci/lxc/fields_*.py) fill it in, one field at a time;
the Plan it becomes (PVE options, the process spec, findings) and what it is made from (the spec, a Target).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from pveoci import errors
from pveoci.lxc import properties
from pveoci.oci.runtime_spec import Namespace, Process, Spec
from pveoci.process import ProcessSpec

Status = Literal["applied", "approximated", "provided", "unsupported"]
Options = dict[str, str | int | float]
# find_program(name, PATH or None, cwd): the program's absolute path in the rootfs, None if there is none.
FindProgram = Callable[[str, str | None, str], str | None]
NO_OPTION = "no PVE container option for it"


@dataclass(frozen=True)
class HostFile:
    """What a bind mount's source is on the machine that runs pveoci (runc's host): a file is read for its copy
    (`data`, unless it is larger than the copy may be: `size` says how large)."""

    kind: Literal["file", "directory", "missing", "other"]
    size: int = 0
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes | None = None


# look_up(path): the bind mount source `path` as this machine has it.
LookUp = Callable[[str], HostFile]


def nothing_here(_path: str) -> HostFile:
    """The look-up of a mapping that sees no filesystem but the rootfs: every source is the node's."""
    return HostFile("missing")


@dataclass(frozen=True)
class CopiedFile:
    """A file of this machine's that a bind mount put in the container, copied there at create (`init files`)."""

    path: str            # in the container, absolute
    data: bytes
    mode: int
    uid: int
    gid: int


def by_alias(model: BaseModel, names: Iterable[str]) -> dict[str, Any]:
    """The values of a spec model's fields by their names in config.json (`createRuntime`: create_runtime's)."""
    attributes = {info.alias or name: name for name, info in type(model).model_fields.items()}
    return {name: getattr(model, attributes[name]) for name in names}


def shown(value: str) -> str:
    """A value of the spec in a message: quoted as Python does (a newline is `\\n`: the error stays one line), and
    cut short (the spec may hold megabytes)."""
    return repr(value if len(value) <= 60 else value[:60] + "...")


@dataclass(frozen=True)
class Finding:
    field: str          # the spec's JSON path, e.g. "linux.resources.pids.limit"
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Target:
    """What the mapping needs to know about the profile and the cluster."""

    pve_version: tuple[int, int] = (9, 1)
    root_pam: bool = False           # only root@pam (a password login, not a token) may set some options
    unprivileged: bool = True        # the profile's choice when the spec has no user namespace
    rootfs_storage: str = "local-lvm"
    disk_gib: int = 4
    bridge: str = "vmbr0"
    memory_mib: int = 512            # PVE's default, for a spec without a memory limit
    swap_mib: int = 512

    @property
    def has_entrypoint(self) -> bool:
        return self.pve_version >= (9, 1)


@dataclass
class Plan:
    """What to ask Proxmox for, what pveoci's init runs, and how each spec field fared."""

    options: Options
    process: ProcessSpec
    findings: list[Finding]
    stop_signal: str                 # its name; process.stop_signal is its number
    annotations: dict[str, str] = field(default_factory=dict)
    legacy_init: bool = False        # PVE < 9.1: no entrypoint option, the template's /sbin/init is pveoci's init
    files: tuple[CopiedFile, ...] = ()   # this machine's files that bind mounts put in the container

    @property
    def unsupported(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "unsupported"]

    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status in ("unsupported", "approximated")]

    def check(self, strict: bool) -> None:
        """In strict mode, refuse a bundle with any unsupported field, naming each one."""
        if strict and self.unsupported:
            names = ", ".join(dict.fromkeys(f.field for f in self.unsupported))
            raise errors.MappingError(f"--strict: this bundle asks for what Proxmox cannot do: {names} "
                                      "(pveoci plan shows why)")


def profile_property(make: Callable[[], str]) -> str:
    """An option made of the profile's values by pveoci.lxc.properties; one it refuses is a ConfigError."""
    try:
        return make()
    except properties.Refused as exc:
        raise errors.ConfigError(f"the profile's {exc.message}") from None


@dataclass
class Draft:
    """A plan being made: the spec and target it comes from, and what the field functions have made of it so far."""

    spec: Spec
    oci_process: Process             # spec.process, which a bundle must have
    target: Target
    container_id: str
    find_program: FindProgram
    options: Options = field(default_factory=dict)
    look_up: LookUp = nothing_here
    files: list[CopiedFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # Filled in by the process fields, the program first.
    process: ProcessSpec = field(default_factory=lambda: ProcessSpec(path="", args=()))
    stop_signal: str = "SIGTERM"
    annotations: dict[str, str] = field(default_factory=dict)

    def note(self, path: str, status: Status, detail: str) -> None:
        self.findings.append(Finding(path, status, detail))

    def property_value(self, path: str, make: Callable[[], str]) -> str:
        """An option made of the bundle's values by pveoci.lxc.properties; one it refuses is a MappingError that
        names the spec's field, before anything changes."""
        try:
            return make()
        except properties.Refused as exc:
            raise errors.MappingError(f"{path}: {exc.message}") from None

    def unsupported_if_set(self, prefix: str, values: Mapping[str, object], detail: str = NO_OPTION, *,
                           even_empty: bool = True) -> None:
        """An unsupported finding for each value the spec sets (with even_empty=False: each non-empty one)."""
        for name, value in values.items():
            if value is not None and (even_empty or value):
                self.note(f"{prefix}.{name}", "unsupported", detail)

    @property
    def namespaces(self) -> dict[str, Namespace]:
        """The spec's namespaces by type, in the spec's order."""
        linux = self.spec.linux
        return {ns.type: ns for ns in (linux.namespaces or [])} if linux else {}

    @property
    def unprivileged(self) -> bool:
        """A user namespace in the spec, or the profile's choice, makes an unprivileged container."""
        return "user" in self.namespaces or self.target.unprivileged

    def plan(self) -> Plan:
        return Plan(options=self.options, process=self.process, findings=self.findings, stop_signal=self.stop_signal,
                    annotations=self.annotations, legacy_init=not self.target.has_entrypoint, files=tuple(self.files))
