"""`mounts`: what LXC mounts itself, bind mounts as mount points (mp[n]), and what PVE cannot mount."""

from __future__ import annotations

from functools import partial

from pveoci.lxc import properties
from pveoci.lxc.draft import Draft, shown
from pveoci.oci.runtime_spec import Mount

# Mounts LXC sets up in every container: a spec asking for them gets them.
LXC_MOUNTS = {"/proc": "proc", "/sys": "sysfs", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",  # noqa: S108 - a mount point, not a temp file
              "/dev/mqueue": "mqueue", "/sys/fs/cgroup": "cgroup"}
_KERNEL_FS = ("tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", None)
#: The options of a bind mount that its mount point (mp[n]) honours: `bind`, `ro` (ro=1) and `rw` (the default).
#: PVE binds with `mount -o bind`, so `rbind` leaves out the mounts under the source. `pveoci features` lists these.
MOUNT_OPTIONS = ("bind", "ro", "rw")
#: Whether a mount's uidMappings/gidMappings (an id-mapped mount) are applied: no, PVE's mount points have none
#: (`pveoci features` says so).
ID_MAPPED_MOUNTS = False


def mounts(d: Draft) -> None:
    """Bind mounts become mp0, mp1, ... in the spec's order."""
    points = 0
    for i, mount in enumerate(d.spec.mounts or ()):
        if _bind_mount_point(d, f"mounts[{i}]", mount, points):
            points += 1


def _is_bind(mount: Mount) -> bool:
    opts = mount.options or []
    return mount.type == "bind" or "bind" in opts or "rbind" in opts


def _provided_by_lxc(mount: Mount) -> bool:
    lxc_fs = LXC_MOUNTS.get(mount.destination)
    if lxc_fs is None:
        return False
    if _is_bind(mount):
        # runc's rootless spec binds the host's /sys where it cannot mount sysfs: LXC mounts it anyway
        return mount.source == mount.destination and lxc_fs in ("proc", "sysfs", "cgroup")
    return mount.type in _KERNEL_FS


def _bind_mount_point(d: Draft, path: str, mount: Mount, n: int) -> bool:
    """Note what becomes of the mount; True if it became mount point `mp<n>`."""
    if _provided_by_lxc(mount):
        d.note(path, "provided", f"LXC mounts {mount.destination} itself")
        return False
    if not _is_bind(mount):
        d.note(path, "unsupported", f"a {mount.type or 'typeless'} mount at {mount.destination}: PVE mounts only "
               "volumes and host paths")
        return False
    if not d.target.root_pam:
        d.note(path, "unsupported", f"bind mount of {mount.source} needs mp[n] with a host path, which only "
               "root@pam may set")
        return False
    if not mount.source or not mount.source.startswith("/"):
        d.note(path, "unsupported", "a bind mount needs an absolute source path on the node")
        return False
    d.options[f"mp{n}"] = d.property_value(path, partial(properties.mount_point, f"mp{n}", mount.source,
                                                         mount.destination, readonly="ro" in (mount.options or [])))
    shortfalls = []
    ignored = [shown(option) for option in mount.options or () if option not in MOUNT_OPTIONS]
    if ignored:
        shortfalls.append(f"not applied: {', '.join(ignored[:8])} (PVE binds the source alone, without the mounts "
                          "under it, and with none of these options)")
    if mount.uid_mappings is not None:
        shortfalls.append("without its id mapping (PVE's mount points have none)")
    d.note(path, "approximated" if shortfalls else "applied",
           "; ".join([f"mp{n}: {mount.source} on the node, at {mount.destination}", *shortfalls]))
    return True
