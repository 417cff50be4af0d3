"""`linux.devices` and the device cgroup: what LXC creates and allows, and devices passed through (dev[n])."""

from __future__ import annotations

from functools import partial

from pveoci.lxc import properties
from pveoci.lxc.draft import Draft

# Device nodes LXC creates in every container.
LXC_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/console",
               "/dev/ptmx"}
# (type, major, minor) of the character devices LXC's default cgroup allows; None is a wildcard.
_LXC_ALLOWED = {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
                ("c", 5, 2), ("c", 136, None), ("c", 10, 229), ("c", 10, 200)}


def _standard_device(kind: str | None, major: int | None, minor: int | None) -> bool:
    return (kind, major, minor) in _LXC_ALLOWED or (kind, major, None) in _LXC_ALLOWED


def devices(d: Draft) -> None:
    """Other devices become dev0, dev1, ... in the spec's order."""
    linux = d.spec.linux
    n = 0
    for i, dev in enumerate((linux.devices or []) if linux else []):
        path = f"linux.devices[{i}]"
        if dev.path in LXC_DEVICES:
            d.note(path, "provided", f"LXC creates {dev.path}")
        elif not d.target.root_pam:
            d.note(path, "unsupported", f"passing {dev.path} through needs dev[n], which only root@pam may set")
        elif not dev.path.startswith("/dev/"):
            d.note(path, "unsupported", f"Proxmox passes through devices under /dev/ only, not {dev.path}")
        else:
            d.options[f"dev{n}"] = d.property_value(path, partial(properties.device, f"dev{n}", dev.path,
                                                                  mode=dev.file_mode, uid=dev.uid, gid=dev.gid))
            d.note(path, "applied", f"dev{n}")
            n += 1


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
