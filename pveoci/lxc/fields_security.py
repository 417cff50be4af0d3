"""The rest of `linux`: sysctls, seccomp, masked and read-only paths, and fields PVE has no option for."""

from __future__ import annotations

from pveoci.lxc.draft import Draft, by_alias

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
        d.note("linux.maskedPaths", "approximated", "LXC masks parts of /proc and /sys its own way")


def readonly_paths(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.readonly_paths:
        d.note("linux.readonlyPaths", "approximated", "LXC write-protects parts of /proc and /sys its own way")


def linux_other(d: Draft) -> None:
    linux = d.spec.linux
    if linux is not None:
        d.unsupported_if_set("linux", by_alias(linux, UNSUPPORTED), even_empty=False)


def cgroups_path(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.cgroups_path:
        d.note("linux.cgroupsPath", "approximated", "PVE places the container's cgroup itself")
