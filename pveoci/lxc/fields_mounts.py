"""`mounts`: what LXC mounts itself, bind mounts as mount points (mp[n]) of a node's path or a new volume, this
machine's files copied in, and what PVE cannot mount."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from pveoci import errors
from pveoci.lxc import properties
from pveoci.lxc.draft import CopiedFile, Draft, HostFile, shown
from pveoci.oci.runtime_spec import Mount
from pveoci.process import (
    MS_DIRSYNC,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_RELATIME,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    InitMount,
)

# Mounts LXC sets up in every container (with lxcfs's views of /proc and /sys, and their read-only parts): a spec
# asking for them gets them, taken again at their place in the spec's order.
LXC_MOUNTS = frozenset({"/proc", "/sys", "/sys/fs/cgroup"})
#: Filesystems pveoci's init mounts itself, at the start, where the spec says (a tmpfs at /dev is a new /dev with
#: the container's devices carried into it). For an engine's bind at /dev/shm, /dev/mqueue or /dev/pts (a
#: directory of its own machine), the init mounts the kind of filesystem that belongs there.
INIT_MOUNTED = ("tmpfs", "devpts", "mqueue")
_BOUND_INSTEAD = {"/dev/shm": ("tmpfs", "shm", "nosuid,nodev,noexec", "mode=1777,size=65536k"),  # noqa: S108 - a mount point
                  "/dev/mqueue": ("mqueue", "mqueue", "nosuid,nodev,noexec", ""),
                  "/dev/pts": ("devpts", "devpts", "nosuid,noexec", "newinstance,ptmxmode=0666,mode=0620,gid=5")}
_KERNEL_FS = ("tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", None)
#: mount(8) options as flags: set, or cleared. Propagation options, `bind`/`rbind` and runc's `tmpcopyup` do not
#: apply to a new mount; everything else is the filesystem's own (`mode=`, `size=`, `newinstance`...).
_SET_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "sync": MS_SYNCHRONOUS,
              "dirsync": MS_DIRSYNC, "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
              "strictatime": MS_STRICTATIME}
_CLEAR_FLAGS = {"rw": MS_RDONLY, "suid": MS_NOSUID, "dev": MS_NODEV, "exec": MS_NOEXEC, "async": MS_SYNCHRONOUS,
                "atime": MS_NOATIME, "diratime": MS_NODIRATIME, "norelatime": MS_RELATIME,
                "nostrictatime": MS_STRICTATIME}
_NOT_FOR_NEW = frozenset({"bind", "rbind", "private", "rprivate", "shared", "rshared", "slave", "rslave",
                          "unbindable", "runbindable", "tmpcopyup", "defaults"})
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
    """Bind mounts become mp0, mp1, ... in the spec's order; the filesystems the init mounts go to the init."""
    points = 0
    made: list[InitMount] = []
    for i, mount in enumerate(d.spec.mounts or ()):
        if _init_mount(d, f"mounts[{i}]", mount, made):
            continue
        if _bind_mount_point(d, f"mounts[{i}]", mount, points):
            points += 1
    d.process = replace(d.process, mounts=tuple(made))


def _init_mount(d: Draft, path: str, mount: Mount, made: list[InitMount]) -> bool:
    """A mount LXC makes (taken again in the spec's order) or the init mounts; False for one of neither kind."""
    destination = mount.destination
    bound = _is_bind(mount)
    if destination in LXC_MOUNTS and ((not bound and mount.type in _KERNEL_FS) or
                                      (bound and mount.source == destination)):
        made.append(InitMount(destination, kind="lxc"))
        d.note(path, "provided", f"LXC mounts {destination} itself (lxcfs's views, its read-only parts)")
        return True
    if bound and destination in _BOUND_INSTEAD:
        fs, source, flags, data = _BOUND_INSTEAD[destination]
        made.append(_new_mount(path, destination, fs, source, [*flags.split(","), *data.split(",")]))
        d.note(path, "approximated", f"a {fs} of the container's own at {destination}, mounted by pveoci's init: "
               f"the engine's {shown(mount.source or '')} is on another machine")
        return True
    if bound or mount.type not in INIT_MOUNTED:
        return False
    made.append(_new_mount(path, destination, mount.type, mount.source or mount.type, mount.options or []))
    d.note(path, "applied", f"a {mount.type} at {destination}, mounted by pveoci's init at the start"
           + (" (the container's devices carried into it)" if destination == "/dev" else ""))
    return True


def _new_mount(path: str, destination: str, fs: str, source: str, options: list[str]) -> InitMount:
    if not destination.startswith("/") or destination == "/" or ".." in destination.split("/") or \
            len(destination) >= PATH_MAX or not destination.isprintable():
        raise errors.MappingError(f"{path}.destination: {shown(destination)} is not an absolute path in the container "
                                  "(other than /)")
    if not all(o.isprintable() for o in options) or not source.isprintable():
        raise errors.MappingError(f"{path}: an option or the source has a control character in it")
    flags, data = 0, []
    for option in filter(None, options):
        if option in _SET_FLAGS:
            flags |= _SET_FLAGS[option]
        elif option in _CLEAR_FLAGS:
            flags &= ~_CLEAR_FLAGS[option]
        elif option not in _NOT_FOR_NEW:
            data.append(option)
    return InitMount(destination, fs, source, flags, ",".join(data))


def _is_bind(mount: Mount) -> bool:
    opts = mount.options or []
    return mount.type == "bind" or "bind" in opts or "rbind" in opts


def _bind_mount_point(d: Draft, path: str, mount: Mount, n: int) -> bool:
    """Note what becomes of the mount; True if it became mount point `mp<n>`."""
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
