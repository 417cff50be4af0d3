"""The rest of `linux`: sysctls, seccomp, masked and read-only paths, and fields PVE has no option for."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pveoci import errors
from pveoci.lxc.draft import Draft, by_alias, shown
from pveoci.lxc.fields_mounts import PATH_MAX
from pveoci.process import InitMount

#: Whether the spec's seccomp profile is applied: no, LXC applies PVE's own (seccomp() below; `pveoci features`
#: says so).
SECCOMP = False
#: The fields of `linux` PVE has no option for (`pveoci features` says intelRdt and netDevices are not supported).
UNSUPPORTED = ("rootfsPropagation", "mountLabel", "intelRdt", "memoryPolicy", "personality", "timeOffsets",
               "netDevices")


def sysctl(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.sysctl:
        d.note("linux.sysctl", "unsupported", "sysctls need raw lxc.sysctl keys (root@pam only)")


def seccomp(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.seccomp is not None:
        d.note("linux.seccomp", "unsupported", "LXC applies PVE's own seccomp profile instead")


def masked_paths(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.masked_paths:
        _paths(d, "linux.maskedPaths", "mask", d.spec.linux.masked_paths)
        d.note("linux.maskedPaths", "applied", "hidden by pveoci's init at the start (a directory under an empty "
               "read-only tmpfs, a file under /dev/null), after the mounts; a path the container lacks is left")


def readonly_paths(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.readonly_paths:
        _paths(d, "linux.readonlyPaths", "rdonly", d.spec.linux.readonly_paths)
        d.note("linux.readonlyPaths", "applied", "made read-only by pveoci's init at the start, after the mounts; a "
               "path the container lacks is left")


def _paths(d: Draft, field: str, kind: Literal["mask", "rdonly"], paths: list[str]) -> None:
    for i, path in enumerate(paths):
        if not path.startswith("/") or ".." in path.split("/") or not path.isprintable() or len(path) >= PATH_MAX:
            raise errors.MappingError(f"{field}[{i}]: {shown(path)} is not an absolute path in the container")
    d.process = replace(d.process, mounts=(*d.process.mounts, *(InitMount(p, kind=kind) for p in paths)))


def linux_other(d: Draft) -> None:
    linux = d.spec.linux
    if linux is not None:
        d.unsupported_if_set("linux", by_alias(linux, UNSUPPORTED), even_empty=False)


def cgroups_path(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.cgroups_path:
        d.note("linux.cgroupsPath", "approximated", "PVE places the container's cgroup itself")
