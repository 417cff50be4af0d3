"""`linux.devices` and the device cgroup: what LXC creates and allows, and devices passed through (dev[n])."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Literal

from pveoci import errors
from pveoci.lxc import properties
from pveoci.lxc.draft import Draft, shown
from pveoci.lxc.fields_mounts import PATH_MAX
from pveoci.oci.runtime_spec import Device
from pveoci.process import DeviceNode

# Device nodes LXC creates in every container.
LXC_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/console",
               "/dev/ptmx"}
# (type, major, minor) of the character devices LXC's default cgroup allows; None is a wildcard.
_LXC_ALLOWED = {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
                ("c", 5, 2), ("c", 136, None), ("c", 10, 229), ("c", 10, 200)}


def _standard_device(kind: str | None, major: int | None, minor: int | None) -> bool:
    return (kind, major, minor) in _LXC_ALLOWED or (kind, major, None) in _LXC_ALLOWED


def devices(d: Draft) -> None:
    """Devices under /dev/ become dev0, dev1, ... in the spec's order as root@pam (the node's device passed through:
    its node and its use); the others' nodes are made by the init."""
    linux = d.spec.linux
    n = 0
    made: list[DeviceNode] = []
    for i, dev in enumerate((linux.devices or []) if linux else []):
        path = f"linux.devices[{i}]"
        if dev.path in LXC_DEVICES:
            d.note(path, "provided", f"LXC creates {dev.path}")
        elif dev.type == "p" or not d.target.root_pam or not dev.path.startswith("/dev/"):
            made.append(_node(path, dev))
            if dev.type == "p":
                d.note(path, "applied", f"a FIFO at {dev.path}, made by pveoci's init at the start")
            else:
                d.note(path, "approximated", f"the node {dev.path} ({dev.type} {dev.major}:{dev.minor}) made by "
                       "pveoci's init at the start, where the container may make nodes (a privileged one); using "
                       "it is what the device cgroup allows: LXC's standard devices, and the node's devices passed "
                       "through with dev[n] (root@pam, under /dev/)")
        else:
            d.options[f"dev{n}"] = d.property_value(path, partial(properties.device, f"dev{n}", dev.path,
                                                                  mode=dev.file_mode, uid=dev.uid, gid=dev.gid))
            d.note(path, "applied", f"dev{n}")
            n += 1
    d.process = replace(d.process, devices=tuple(made))


def _node(path: str, dev: Device) -> DeviceNode:
    where = dev.path
    if ".." in where.split("/") or not where.isprintable() or len(where) >= PATH_MAX or where == "/":
        raise errors.MappingError(f"{path}.path: {shown(where)} is not an absolute path in the container")
    kind: Literal["c", "b", "p"] = "c" if dev.type == "u" else dev.type
    major, minor = dev.major or 0, dev.minor or 0
    if not (0 <= major < 1 << 32 and 0 <= minor < 1 << 32):
        raise errors.MappingError(f"{path}: major and minor must be 0 to 4294967295")
    mode = 0o666 if dev.file_mode is None else dev.file_mode & 0o7777
    return DeviceNode(where, kind, major, minor, mode, dev.uid or 0, dev.gid or 0)


def device_cgroup(d: Draft) -> None:
    resources = d.spec.linux.resources if d.spec.linux else None
    if resources is None or not resources.devices:
        return
    allowed = [r for r in resources.devices if r.allow and not _standard_device(r.type, r.major, r.minor)]
    if allowed:
        d.note("linux.resources.devices", "approximated", "PVE sets the device cgroup: LXC's standard devices, "
               "plus dev[n]; the spec's other allow rules do not apply")
    else:
        d.note("linux.resources.devices", "provided", "LXC's own device allow-list applies")
