"""Values in Proxmox's property strings: each checked against its PVE format here, the one place they are made.

PVE reads an option such as mp0, net0, rootfs or dev0 as comma-separated parts, `key=value` or,
first, one unnamed value (pve-common's JSONSchema::parse_property_string), and keeps it as one line
of /etc/pve/lxc/VMID.conf, white space at its ends dropped (pve-container's parse_pct_config).
Nothing in it is quoted or escaped: a ',' in a value starts another part (a host path `/h,ro=0` is a
path and a read-only flag), an '=' in the unnamed value makes it a key, a line break ends the line.
So a value is refused, never escaped: each builder below checks every value it puts into its option
against the option's format (the `why_not_*` functions, PVE's formats and what PVE's reader would
split on) and raises Refused, one line naming the value, the option and the reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from pveoci import errors

# PVE's formats (pve-common JSONSchema.pm, pve-container LXC/Config.pm), whole values only.
_BRIDGE = re.compile(r"[-_.A-Za-z0-9]+")                              # pve-bridge-id
_STORAGE = re.compile(r"[a-z][a-z0-9\-_.]*[a-z0-9]", re.I)             # pve-storage-id
_TAG = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*", re.I)                   # pve-tag
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")                    # dns-name
_DOTS = re.compile(r"/\.\.?/|/\.\.?$|^\.\./")                          # what verify_lxc_mp_string refuses
DNS_NAME_MAX = 255
SHOWN_MAX = 60
# Control characters (NUL, CR, LF, ...), line and paragraph separators, and surrogates (no UTF-8 for them).
_LINE_BREAKING = ("Cc", "Cs", "Zl", "Zp")


class Refused(errors.PveociError):
    """A value an option of Proxmox's cannot carry. Callers raise it again as the error of where the value came
    from (MappingError for a bundle's, ConfigError for a profile's), with its message."""

    def __init__(self, option: str, part: str, value: str, reason: str) -> None:
        super().__init__(f"{part} {shown(value)} cannot go into Proxmox's {option}: {reason}")
        self.option, self.part, self.value, self.reason = option, part, value, reason


def shown(value: str) -> str:
    """A value quoted for a one-line message: control and invisible characters escaped, a long one cut short."""
    out = "".join(_escaped(c) if _invisible(c) else c for c in value)
    return "'" + (out if len(out) <= SHOWN_MAX else out[:SHOWN_MAX - 3] + "...") + "'"


def _escaped(char: str) -> str:
    n = ord(char)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _invisible(char: str) -> bool:
    """A character that would break a line or hide in it: control, format, separator, surrogate, unassigned."""
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def _why_not_value(value: str, *, unnamed: bool = False) -> str | None:
    """What keeps a value from standing as one part of a property string on one config line."""
    if not value:
        return "it is empty"
    bad = next((c for c in value if unicodedata.category(c) in _LINE_BREAKING), None)
    if bad is not None:
        return f"it contains the control character {shown(bad)[1:-1]}"
    if "," in value:
        return "it contains ',', which would start another setting"
    if unnamed and "=" in value:
        return "it contains '=', which would make it a setting's name"
    if value != value.strip():
        return "it begins or ends with white space, which Proxmox drops"
    return None


def why_not_bridge(value: str) -> str | None:
    """Why `value` is not a PVE bridge id (pve-bridge-id), or None."""
    return None if _BRIDGE.fullmatch(value) else "a bridge name is letters, digits, '-', '_' and '.' only"


def why_not_storage(value: str) -> str | None:
    """Why `value` is not a PVE storage id (pve-storage-id), or None."""
    if len(value) >= 2 and _STORAGE.fullmatch(value):
        return None
    return "a storage id is a letter, then letters, digits, '-', '_' or '.', ending with a letter or digit"


def why_not_tag(value: str) -> str | None:
    """Why `value` is not a PVE tag (pve-tag), or None."""
    if _TAG.fullmatch(value):
        return None
    return "a tag is letters, digits, '_', '-', '+' and '.', and does not begin with '-', '+' or '.'"


def why_not_dns_name(value: str) -> str | None:
    """Why `value` is not a PVE dns-name (the hostname option), or None."""
    if len(value) <= DNS_NAME_MAX and _DNS_NAME.fullmatch(value):
        return None
    return "a host name is dot-separated labels of letters, digits and inner '-'"


def why_not_mp_path(value: str, *, unnamed: bool = False) -> str | None:
    """Why `value` cannot be a path of a mount point (pve-lxc-mp-string, in a property string), or None."""
    problem = _why_not_value(value, unnamed=unnamed)
    if problem is None and _DOTS.search(value):
        problem = "Proxmox refuses '.' and '..' components in mount point paths"
    return problem


def why_not_dev_path(value: str) -> str | None:
    """Why `value` cannot be a device passed through (pve-lxc-dev-string, the unnamed value of dev[n]), or None."""
    problem = _why_not_value(value, unnamed=True)
    if problem is None and not value.startswith("/dev/"):
        problem = "Proxmox passes through device paths under /dev/ only"
    if problem is None and re.search(r"/\.\.?(?:/|$)", value):
        problem = "Proxmox refuses '.' and '..' components in device paths"
    return problem


def _need(option: str, part: str, value: str, problem: str | None) -> str:
    if problem is not None:
        raise Refused(option, part, value, problem)
    return value


# The options, each made here only.

def rootfs(storage: str, gib: int, *, readonly: bool) -> str:
    """`rootfs`: a new volume of `gib` GiB on `storage`."""
    value = f"{_need('rootfs', 'rootfs_storage', storage, why_not_storage(storage))}:{int(gib)}"
    return value + (",ro=1" if readonly else "")


def net(bridge: str) -> str:
    """`net0`: eth0 on `bridge`, addresses from DHCP and SLAAC."""
    return f"name=eth0,bridge={_need('net0', 'bridge', bridge, why_not_bridge(bridge))},ip=dhcp,ip6=auto"


def mount_point(option: str, source: str, destination: str, *, readonly: bool) -> str:
    """`mp[n]`: the node's `source` (an absolute path) bind-mounted at `destination` in the container."""
    source = _need(option, "source", source, why_not_mp_path(source, unnamed=True))
    if not source.startswith("/"):
        raise Refused(option, "source", source, "a bind mount's source is an absolute path on the node")
    destination = _need(option, "destination", destination, why_not_mp_path(destination))
    return f"{source},mp={destination}" + (",ro=1" if readonly else "")


_STORAGE_ID = re.compile(r"[a-z][a-z0-9_.-]*[a-z0-9]\Z|[a-z]\Z")
VOLUME_GIB_MAX = 131072


def volume_mount_point(option: str, spec: str, destination: str, *, readonly: bool) -> str:
    """`mp[n]`: a new volume of `spec` (STORAGE:GiB) at `destination`, made with the container and removed with it."""
    storage, _, size = spec.partition(":")
    if not _STORAGE_ID.match(storage):
        raise Refused(option, "storage", storage, "a Proxmox storage id: a lower-case letter, then letters, digits, "
                      "'-', '_' or '.'")
    if not size.isascii() or not size.isdigit() or not 1 <= int(size) <= VOLUME_GIB_MAX:
        raise Refused(option, "size", size, f"a volume's size is a whole number of GiB, 1 to {VOLUME_GIB_MAX}")
    destination = _need(option, "destination", destination, why_not_mp_path(destination))
    return f"{storage}:{int(size)},mp={destination}" + (",ro=1" if readonly else "")


def device(option: str, path: str, *, mode: int | None, uid: int | None, gid: int | None) -> str:
    """`dev[n]`: the node's device `path` passed through, with its mode (0000-0777) and owner when given."""
    value = _need(option, "path", path, why_not_dev_path(path))
    if mode is not None:
        if not 0 <= mode <= 0o777:
            raise Refused(option, "mode", f"{mode:o}", "a device's mode is 0000 to 0777")
        value += f",mode={mode:04o}"
    for key, number in (("uid", uid), ("gid", gid)):
        if number is not None:
            if number < 0:
                raise Refused(option, key, str(number), f"a {key} is not negative")
            value += f",{key}={int(number)}"
    return value


def hostname(name: str) -> str:
    """`hostname`: a DNS name (pveoci.lxc.fields_container makes one of anything)."""
    return _need("hostname", "host name", name, why_not_dns_name(name))


def tag_list(tags: Iterable[str]) -> str:
    """`tags`: PVE's tag list, sorted and ';'-separated, as PVE stores it."""
    return ";".join(sorted(_need("tags", "tag", t, why_not_tag(t)) for t in set(tags)))
