"""The rest of `linux`: sysctls, seccomp, masked and read-only paths, and fields PVE has no option for."""

from __future__ import annotations

from pveoci.lxc.draft import Draft


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
        d.unsupported_if_set("linux", {
            "rootfsPropagation": linux.rootfs_propagation, "mountLabel": linux.mount_label,
            "intelRdt": linux.intel_rdt, "memoryPolicy": linux.memory_policy, "personality": linux.personality,
            "timeOffsets": linux.time_offsets, "netDevices": linux.net_devices}, even_empty=False)


def cgroups_path(d: Draft) -> None:
    if d.spec.linux and d.spec.linux.cgroups_path:
        d.note("linux.cgroupsPath", "approximated", "PVE places the container's cgroup itself")
