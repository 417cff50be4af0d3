"""From a bundle and a profile to a Plan: the Proxmox options, the process, a finding per field."""

from __future__ import annotations

import math
from collections.abc import Callable

from pveoci import errors
from pveoci.lxc.mapping import Plan, Target, map_spec
from pveoci.oci.bundle import Bundle
from pveoci.oci.rootfs import find_executable
from pveoci.settings import Profile
from pveoci.template.pack import rootfs_size

GIB = 1024**3
ASSUMED_VERSION = (9, 1)


def disk_gib(size: int) -> int:
    """A root disk with room to spare: the rootfs plus a quarter, at least 1 GiB more, whole GiB."""
    return max(2, math.ceil(size * 1.25 / GIB) + 1)


def target_for(profile: Profile, pve_version: tuple[int, int], size: int, root_pam: bool | None = None) -> Target:
    """What the bundle is mapped for; `root_pam` (None: a password login as root@pam) says whether root acts."""
    if root_pam is None:
        root_pam = profile.auth_method == "ticket" and profile.user == "root@pam"
    return Target(pve_version=pve_version, root_pam=root_pam,
                  unprivileged=profile.unprivileged, rootfs_storage=profile.rootfs_storage,
                  disk_gib=disk_gib(size), bridge=profile.bridge)


def plan_bundle(bundle: Bundle, profile: Profile, *, container_id: str, pve_version: tuple[int, int],
                size: int | None = None, root_pam: bool | None = None) -> Plan:
    """`size`: the rootfs's bytes, when a scan already has them (else they are counted here)."""
    def find(name: str, path_env: str | None, cwd: str) -> str | None:
        return find_executable(bundle.rootfs, name, path_env, cwd)

    target = target_for(profile, pve_version, rootfs_size(bundle.rootfs) if size is None else size, root_pam)
    return map_spec(bundle.spec, target, container_id=container_id, find_program=find)


def cluster_version(get_version: Callable[[], tuple[int, int]]) -> tuple[tuple[int, int], str | None]:
    """The cluster's version, or the assumed one with the reason it could not be asked."""
    try:
        return get_version(), None
    except errors.PveociError as exc:
        return ASSUMED_VERSION, exc.message
