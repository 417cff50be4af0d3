"""An image's config as the container's config.json: the process podman would run, changed by the user's flags.

As podman and docker do (and unlike Proxmox VE 9.1, which lets the image overwrite what was given at create):
the arguments are Entrypoint + Cmd, `--entrypoint` replaces Entrypoint and drops Cmd, trailing arguments
replace Cmd; the environment is the image's with `-e` on top; `-w` and `-u` replace WorkingDir and User. A user
given by name is looked up in the image's /etc/passwd and /etc/group, with the groups that list it; StopSignal
becomes the annotation runtimes read. Volumes and ExposedPorts cannot be honoured as podman does (no volume
is made, no port published): they are findings, shown by `plan --image`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pveoci import errors
from pveoci.lxc.draft import Finding
from pveoci.oci.defaults import default_spec

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: podman's default capabilities (containers.conf): what an application image expects to have.
CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT")
STOP_SIGNAL = "org.opencontainers.image.stopSignal"
IMAGE_NAME = "org.opencontainers.image.ref.name"
IMAGE_DIGEST = "io.pveoci.image.digest"
ID_MAX = 2**32 - 2

ReadFile = Callable[[str], "bytes | None"]


@dataclass(frozen=True)
class Overrides:
    """What the user's flags change of the image's process (None: the image's)."""

    entrypoint: Sequence[str] | None = None
    args: Sequence[str] | None = None
    env: Sequence[str] = ()
    cwd: str | None = None
    user: str | None = None
    terminal: bool = False


@dataclass(frozen=True)
class Process:
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    groups: list[int]
    stop_signal: str | None
    findings: list[Finding] = field(default_factory=list)


def parse_entrypoint(text: str) -> list[str]:
    """`--entrypoint`: a program, or a JSON array of strings (podman's two forms); "" clears it."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise errors.InvalidParameter(f"--entrypoint {text!r}: not a JSON array of strings") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise errors.InvalidParameter(f"--entrypoint {text!r}: not a JSON array of strings")
        return value
    return [text] if text else []


def process_of(config: dict[str, Any], overrides: Overrides, read_file: ReadFile, where: str, *,
               users: bool = True) -> Process:
    """The process the image's `config` object says, changed by `overrides`; `read_file` reads the image's files
    (`users=False`: not yet readable, the user is left as root until they are)."""
    entrypoint = _strings(config.get("Entrypoint"), "Entrypoint", where)
    cmd = _strings(config.get("Cmd"), "Cmd", where)
    if overrides.entrypoint is not None:
        entrypoint, cmd = list(overrides.entrypoint), []
    if overrides.args is not None and (overrides.args or overrides.entrypoint is None):
        cmd = list(overrides.args)
    args = entrypoint + cmd
    if not args:
        raise errors.ImageError(f"{where} says nothing to run (no Entrypoint or Cmd): give a command after the "
                                "image, or --entrypoint")
    env = _environment(_strings(config.get("Env"), "Env", where), overrides.env)
    cwd = overrides.cwd or _text(config.get("WorkingDir"), "WorkingDir", where) or "/"
    if not cwd.startswith("/"):
        raise errors.ImageError(f"{where}: WorkingDir {cwd!r} is not an absolute path")
    user = overrides.user if overrides.user is not None else _text(config.get("User"), "User", where)
    uid, gid, groups = resolve_user(user or "", read_file, where) if users else (0, 0, [])
    stop = _text(config.get("StopSignal"), "StopSignal", where) or None
    return Process(args, env, cwd, uid, gid, groups, stop, _findings(config))


def spec_document(process: Process, *, terminal: bool, name: str, digest: str) -> dict[str, Any]:
    """The config.json of a container of this image (runc's starter spec, with podman's capabilities)."""
    spec = default_spec(process.args)
    proc = spec["process"]
    proc["terminal"] = terminal
    proc["user"] = {"uid": process.uid, "gid": process.gid} | (
        {"additionalGids": process.groups} if process.groups else {})
    proc["env"] = process.env
    proc["cwd"] = process.cwd
    proc["capabilities"] = {kind: list(CAPABILITIES) for kind in ("bounding", "effective", "permitted")}
    proc["noNewPrivileges"] = False
    spec["root"] = {"path": "rootfs", "readonly": False}
    annotations = {IMAGE_NAME: name, IMAGE_DIGEST: digest}
    if process.stop_signal:
        annotations[STOP_SIGNAL] = process.stop_signal
    spec["annotations"] = annotations
    return spec


def _environment(image: list[str], given: Sequence[str]) -> list[str]:
    """The image's Env with the user's on top (same name: the user's value, at the image's place)."""
    merged: dict[str, str] = {}
    for entry in [*image, *given]:
        key = entry.partition("=")[0]
        if not key:
            raise errors.InvalidParameter(f"environment entry {entry!r} has no name")
        merged[key] = entry if "=" in entry else f"{key}="
    if "PATH" not in merged:
        merged = {"PATH": DEFAULT_PATH} | merged
    return list(merged.values())


def resolve_user(user: str, read_file: ReadFile, where: str) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary groups of `user`, `uid`, `user:group` as the image's files say (docker's rules:
    a numeric uid need not exist; a name must; the gid is the group's, else the passwd entry's, else 0)."""
    name, _, group = user.partition(":")
    passwd = _table(read_file("/etc/passwd"))
    groups = _table(read_file("/etc/group"))
    entry = None
    if not name:
        uid = 0
        entry = next((row for row in passwd if len(row) > 3 and row[2] == "0"), None)
    elif name.isdigit():
        uid = _id(name, "user", where)
        entry = next((row for row in passwd if len(row) > 3 and row[2] == name), None)
    else:
        entry = next((row for row in passwd if len(row) > 3 and row[0] == name), None)
        if entry is None:
            raise errors.ImageError(f"{where}: user {name!r} is not in the image's /etc/passwd")
        uid = _id(entry[2], f"user {name}", where)
    if group.isdigit():
        gid = _id(group, "group", where)
    elif group:
        row = next((g for g in groups if len(g) > 2 and g[0] == group), None)
        if row is None:
            raise errors.ImageError(f"{where}: group {group!r} is not in the image's /etc/group")
        gid = _id(row[2], f"group {group}", where)
    else:
        gid = _id(entry[3], "its group", where) if entry is not None and entry[3].isdigit() else 0
    login = entry[0] if entry is not None else None
    extra = sorted({_id(g[2], f"group {g[0]}", where) for g in groups if len(g) > 3 and g[2].isdigit()
                    and login is not None and login in g[3].split(",")} - {gid}) if not group else []
    return uid, gid, extra


def _table(data: bytes | None) -> list[list[str]]:
    if not data:
        return []
    text = data.decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _id(text: str, what: str, where: str) -> int:
    if not text.isdigit() or int(text) > ID_MAX:
        raise errors.ImageError(f"{where}: {what}: {text!r} is not a valid id")
    return int(text)


def _strings(value: object, name: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.ImageError(f"{where}: {name} is not a list of strings")
    return list(value)


def _text(value: object, name: str, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errors.ImageError(f"{where}: {name} is not a string")
    return value


def _findings(config: dict[str, Any]) -> list[Finding]:
    out = []
    volumes = config.get("Volumes")
    for path in sorted(volumes) if isinstance(volumes, dict) else []:
        out.append(Finding(f"image.Volumes[{path}]", "approximated",
                           "a directory of the container's root disk, not a volume of its own: give it a mount "
                           "point (a Proxmox volume) to keep its data apart"))
    ports = config.get("ExposedPorts")
    for port in sorted(ports) if isinstance(ports, dict) else []:
        out.append(Finding(f"image.ExposedPorts[{port}]", "provided",
                           "the container has its own address on the profile's network: the port is reachable "
                           "there; nothing is published on the node"))
    return out
