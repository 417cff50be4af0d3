"""`mounts`: what LXC mounts itself, bind mounts as mount points (mp[n]) of a node's path or a new volume, this
machine's files copied in, and what PVE cannot mount."""

from __future__ import annotations

from functools import partial

from pveoci import errors
from pveoci.lxc import properties
from pveoci.lxc.draft import CopiedFile, Draft, HostFile, shown
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
#: A bind mount's source on a node (a path there), or a new Proxmox volume: `node:/srv/data`, `volume:local-lvm:8`.
NODE = "node:"
VOLUME = "volume:"
#: What a bind mount of this machine's file may copy into a container: each file, and all of them.
COPY_MAX = 1 << 20
COPIES_MAX = 8 << 20
PATH_MAX = 4096


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
        # runc's rootless spec binds the host's /sys where it cannot mount sysfs: LXC mounts it anyway; an engine
        # binds a /dev/shm of its own (podman's userdata/shm): LXC's is there
        return (mount.source == mount.destination and lxc_fs in ("proc", "sysfs", "cgroup")) or \
            lxc_fs in ("tmpfs", "mqueue", "devpts")
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
    source = mount.source or ""
    readonly = "ro" in (mount.options or [])
    if source.startswith(VOLUME):
        value = d.property_value(path, partial(properties.volume_mount_point, f"mp{n}", source[len(VOLUME):],
                                               mount.destination, readonly=readonly))
        d.options[f"mp{n}"] = value
        storage, size = value.split(",", 1)[0].split(":", 1)
        _noted(d, path, mount, f"mp{n}: a new {size} GiB volume on {storage}, at {mount.destination} (it goes with "
                                "the container)")
        return True
    if source.startswith(NODE):
        return _node_path(d, path, mount, n, source[len(NODE):], readonly)
    if not source.startswith("/"):
        d.note(path, "unsupported", f"a bind mount needs an absolute source path (of this machine; {NODE}PATH for "
               f"the node's, {VOLUME}STORAGE:GiB for a new volume), not {shown(source)}")
        return False
    found = d.look_up(source)
    if found.kind == "file":
        _copy(d, path, mount, found, readonly)
        return False
    if found.kind == "directory":
        raise errors.MappingError(
            f"{path}: {shown(source)} is a directory of this machine, which a container on a Proxmox node cannot see: "
            f"bind a node's directory (\"source\": \"{NODE}/srv/data\") or a new volume (\"source\": "
            f"\"{VOLUME}local-lvm:8\"), see docs/mapping.md")
    # Not on this machine, or a socket or device (/dev/log, /dev/fuse), which a copy cannot carry: the node's, as
    # 0.2 took every source.
    return _node_path(d, path, mount, n, source, readonly)


def _node_path(d: Draft, path: str, mount: Mount, n: int, source: str, readonly: bool) -> bool:
    if not d.target.root_pam:
        d.note(path, "unsupported", f"bind mount of {source} needs mp[n] with a host path, which only root@pam may "
               "set")
        return False
    if not source.startswith("/"):
        d.note(path, "unsupported", "a bind mount needs an absolute source path on the node")
        return False
    d.options[f"mp{n}"] = d.property_value(path, partial(properties.mount_point, f"mp{n}", source,
                                                         mount.destination, readonly=readonly))
    _noted(d, path, mount, f"mp{n}: {source} on the node, at {mount.destination}")
    return True


def _noted(d: Draft, path: str, mount: Mount, detail: str) -> None:
    shortfalls = []
    ignored = [shown(option) for option in mount.options or () if option not in MOUNT_OPTIONS]
    if ignored:
        shortfalls.append(f"not applied: {', '.join(ignored[:8])} (PVE binds the source alone, without the mounts "
                          "under it, and with none of these options)")
    if mount.uid_mappings is not None:
        shortfalls.append("without its id mapping (PVE's mount points have none)")
    d.note(path, "approximated" if shortfalls else "applied", "; ".join([detail, *shortfalls]))


def _copy(d: Draft, path: str, mount: Mount, found: HostFile, readonly: bool) -> None:
    """A file of this machine's (an engine's /etc/hosts, /etc/resolv.conf, a secret): copied into the container at
    create, within the caps."""
    destination = mount.destination
    if not destination.startswith("/") or "\0" in destination or ".." in destination.split("/") or \
            len(destination) >= PATH_MAX:
        raise errors.MappingError(f"{path}.destination: {shown(destination)} is not an absolute path in the container")
    if found.data is None or found.size > COPY_MAX:
        raise errors.MappingError(f"{path}: {shown(mount.source or '')} is {found.size} bytes, more than the "
                                  f"{COPY_MAX >> 10} KiB a file copied into a container may have: bind a node's file "
                                  f"(\"source\": \"{NODE}PATH\") instead")
    total = sum(len(f.data) for f in d.files if f.path != destination) + len(found.data)
    if total > COPIES_MAX:
        raise errors.MappingError(f"{path}: the files bind mounts copy into the container come to {total} bytes, more "
                                  f"than {COPIES_MAX >> 20} MiB: bind a node's files (\"{NODE}PATH\") instead")
    d.files[:] = [f for f in d.files if f.path != destination]
    d.files.append(CopiedFile(destination, found.data, found.mode & 0o7777, found.uid, found.gid))
    read_only = ", writable there (a copy)" if readonly else ""
    d.note(path, "approximated", f"{mount.source} copied to {destination} at create ({len(found.data)} bytes); later "
           f"changes on this machine do not reach it{read_only}")
