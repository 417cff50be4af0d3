"""From a bundle and a profile to a Plan: the Proxmox options, the process, a finding per field."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable

from pveoci import errors
from pveoci.lxc.draft import HostFile
from pveoci.lxc.fields_mounts import COPY_MAX
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
    image = bundle.image

    def find(name: str, path_env: str | None, cwd: str) -> str | None:
        if image is not None:
            return image.find_executable(name, path_env, cwd)
        return find_executable(bundle.rootfs, name, path_env, cwd)

    if size is None:
        size = image.size if image is not None else rootfs_size(bundle.rootfs)
    target = target_for(profile, pve_version, size, root_pam)
    plan = map_spec(bundle.spec, target, container_id=container_id, find_program=find, look_up=look_up)
    if image is not None:
        plan.findings += image.findings
    return plan


def look_up(source: str) -> HostFile:
    """A bind mount's source on this machine: a regular file read for its copy (up to the cap), a directory, missing,
    or something else (a socket, a device: never opened)."""
    try:
        info = os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        return HostFile("missing")
    except OSError as exc:
        raise errors.BundleError(f"bind mount source {source}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        return HostFile("directory")
    if not stat.S_ISREG(info.st_mode):
        return HostFile("other")
    try:
        with open(source, "rb") as file:
            data = file.read(COPY_MAX + 1)
    except OSError as exc:
        raise errors.BundleError(f"bind mount source {source}: {exc.strerror}") from None
    size = max(info.st_size, len(data))
    return HostFile("file", size=size, mode=info.st_mode, uid=info.st_uid, gid=info.st_gid,
                    data=data if len(data) <= COPY_MAX else None)


def cluster_version(get_version: Callable[[], tuple[int, int]]) -> tuple[tuple[int, int], str | None]:
    """The cluster's version, or the assumed one with the reason it could not be asked."""
    try:
        return get_version(), None
    except errors.PveociError as exc:
        return ASSUMED_VERSION, exc.message
