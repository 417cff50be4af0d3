"""The container's process as pveoci's init runs it: argv, exact env, cwd, user, limits.

Pure data, made by the OCI-to-LXC mapping from `process` in config.json (the program already
looked up in the rootfs), carried to the init with the container (never in the template), and
encoded for it by `encode`. docs/init.md describes the format and what the init does with it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

RLIM_INFINITY = 2**64 - 1
ID_MAX = 2**32 - 2          # (uid_t)-1 means "unchanged" to setresuid(): not a valid id
NGROUPS_MAX = 65536
MOUNTS_MAX = 256            # mounts the init makes (init.c's MOUNTS_MAX)
MAGIC = b"PVEOCI-SPEC 1\n"

# Linux resource numbers (include/uapi/asm-generic/resource.h; the same on x86_64 and arm64).
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


# Linux capability numbers (include/uapi/linux/capability.h), as the runtime-spec names them.
CAPABILITIES: dict[str, int] = {f"CAP_{name}": number for number, name in enumerate((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE"))}
# mount(2) flags (include/uapi/linux/mount.h).
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_DIRSYNC = 1, 2, 4, 8, 16, 128
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24


@dataclass(frozen=True)
class CapSets:
    """The process's capability sets as bit masks (bit N: capability N)."""

    bounding: int = 0
    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    ambient: int = 0

    def masks(self) -> tuple[int, int, int, int, int]:
        return self.bounding, self.effective, self.permitted, self.inheritable, self.ambient


@dataclass(frozen=True)
class InitMount:
    """A mount the init makes at the start, in the spec's order. `kind`: "new", the filesystem mounted there;
    "lxc", LXC's own mount at `destination` taken again at its place in that order; "mask", the path hidden
    (linux.maskedPaths); "rdonly", the path made read-only (linux.readonlyPaths)."""

    destination: str
    type: str = ""
    source: str = ""
    flags: int = 0
    data: str = ""
    kind: Literal["new", "lxc", "mask", "rdonly"] = "new"

    def record(self) -> str:
        return "\n".join((self.kind, self.type, self.source, self.destination, str(self.flags), self.data))


@dataclass(frozen=True)
class DeviceNode:
    """A device node of linux.devices the init makes at the start: kind c (character), b (block) or p (FIFO)."""

    path: str
    kind: Literal["c", "b", "p"]
    major: int = 0
    minor: int = 0
    mode: int = 0o666
    uid: int = 0
    gid: int = 0

    def record(self) -> str:
        return f"{self.kind}:{self.major}:{self.minor}:{self.mode}:{self.uid}:{self.gid}:{self.path}"


@dataclass(frozen=True)
class Rlimit:
    resource: int       # a value of RLIMITS
    soft: int
    hard: int           # RLIM_INFINITY for "unlimited"


@dataclass(frozen=True)
class ProcessSpec:
    """What the init applies before it executes the program (docs/init.md, in this order)."""

    path: str                               # absolute path of the program inside the rootfs
    args: tuple[str, ...]                   # argv, argv[0] included
    env: tuple[str, ...] = ()               # exactly the environment the process gets ("KEY=VALUE")
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None                # None: the init's own (022)
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    terminal: bool = False                  # the process gets the console, not pipes (no log)
    stop_signal: int = 15                   # what the init sends when LXC asks it to halt (SIGPWR)
    stdin: bool = False                     # its stdin is relayed (`init stdin`, the stand-in), not /dev/null
    pty: bool = False                       # a pty of its own, logged and relayed (a stand-in's terminal)
    capabilities: CapSets | None = None     # None: the container's (LXC's) set, unchanged
    mounts: tuple[InitMount, ...] = ()      # made by the init at the start (PID 1 only), in this order
    devices: tuple[DeviceNode, ...] = ()    # made by the init at the start, after the mounts (PID 1 only)

    def problems(self) -> list[str]:
        """Why the init could not carry this out (empty when it can): one sentence per problem."""
        out = []
        if not self.path.startswith("/"):
            out.append(f"program path must be absolute: {self.path!r}")
        if not self.cwd.startswith("/"):
            out.append(f"cwd must be absolute: {self.cwd!r}")
        if not self.args:
            out.append("args must not be empty")
        for what, values in (("path", (self.path,)), ("cwd", (self.cwd,)), ("args", self.args),
                             ("env", self.env)):
            if any("\0" in v for v in values):
                out.append(f"{what}: a NUL byte cannot be passed to a program")
            if not all(_encodable(v) for v in values):
                out.append(f"{what}: not valid Unicode (a lone UTF-16 surrogate)")
        if any("=" not in e or e.startswith("=") for e in self.env):
            out.append("env: every entry must be KEY=VALUE")
        return out + self._range_problems()

    def _range_problems(self) -> list[str]:
        out = [f"user or group id out of range: {ident}" for ident in (self.uid, self.gid, *self.additional_gids)
               if not 0 <= ident <= ID_MAX]
        if len(self.additional_gids) > NGROUPS_MAX:
            out.append(f"more than {NGROUPS_MAX} additional gids")
        if self.umask is not None and not 0 <= self.umask <= 0o777:
            out.append(f"umask out of range: {self.umask:#o}")
        if self.oom_score_adj is not None and not -1000 <= self.oom_score_adj <= 1000:
            out.append(f"oomScoreAdj out of range: {self.oom_score_adj}")
        if self.pty and self.terminal:
            out.append("a pty of its own and the console: one or the other")
        for mount in self.mounts:
            fields = (mount.destination, mount.type, mount.source, mount.data)
            if not mount.destination.startswith("/") or any(c in f for f in fields for c in "\0\n"):
                out.append(f"mount at {mount.destination!r}: not an absolute path, or a NUL or newline in it")
        if len(self.mounts) > MOUNTS_MAX or len(self.devices) > MOUNTS_MAX:
            out.append(f"more than {MOUNTS_MAX} mounts or devices")
        for node in self.devices:
            if not node.path.startswith("/") or "\0" in node.path or not 0 <= node.mode <= 0o7777 or \
                    not all(0 <= n < 1 << 32 for n in (node.major, node.minor)) or \
                    not all(0 <= n <= ID_MAX for n in (node.uid, node.gid)):
                out.append(f"device {node.path!r}: not an absolute path, or a number out of range")
        if self.capabilities is not None and not all(0 <= m < 1 << 64 for m in self.capabilities.masks()):
            out.append("capability mask out of range")
        if not 1 <= self.stop_signal <= 64:
            out.append(f"stop signal out of range: {self.stop_signal}")
        for lim in self.rlimits:
            if not 0 <= lim.resource < 64 or not 0 <= lim.soft <= RLIM_INFINITY or not 0 <= lim.hard <= RLIM_INFINITY:
                out.append(f"rlimit out of range: {lim.resource} {lim.soft}:{lim.hard}")
            elif lim.soft > lim.hard:
                out.append(f"rlimit {rlimit_name(lim.resource)}: soft limit {lim.soft} is above the hard limit "
                           f"{lim.hard}")
        return out


def _encodable(text: str) -> bool:
    """Whether `encode` can carry it: UTF-8, and the bytes a command line held that were not (surrogateescape)."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def rlimit_name(resource: int) -> str:
    return next((name for name, number in RLIMITS.items() if number == resource), f"resource {resource}")


def encode(spec: ProcessSpec) -> bytes:
    """The spec as the init reads it: MAGIC, then `key=value` records each ended by a NUL byte."""
    records: list[tuple[str, str]] = [("path", spec.path)]
    records += [("arg", a) for a in spec.args]
    records += [("env", e) for e in spec.env]
    records += [("cwd", spec.cwd), ("uid", str(spec.uid)), ("gid", str(spec.gid))]
    records += [("group", str(g)) for g in spec.additional_gids]
    if spec.umask is not None:
        records.append(("umask", f"{spec.umask:o}"))
    records += [("rlimit", f"{r.resource}:{r.soft}:{r.hard}") for r in spec.rlimits]
    if spec.no_new_privileges:
        records.append(("nnp", "1"))
    if spec.oom_score_adj is not None:
        records.append(("oom", str(spec.oom_score_adj)))
    if spec.terminal:
        records.append(("terminal", "1"))
    records.append(("stopsignal", str(spec.stop_signal)))
    if spec.stdin:
        records.append(("stdin", "1"))
    if spec.pty:
        records.append(("pty", "1"))
    if spec.capabilities is not None:
        records.append(("caps", ":".join(str(m) for m in spec.capabilities.masks())))
    records += [("mount", m.record()) for m in spec.mounts]
    records += [("device", n.record()) for n in spec.devices]
    return MAGIC + b"".join(k.encode() + b"=" + v.encode("utf-8", "surrogateescape") + b"\0" for k, v in records)


def encode_arg(spec: ProcessSpec) -> str:
    """The spec as one command-line word (base64url, no padding): LXC splits lxc.init.cmd on spaces."""
    return base64.urlsafe_b64encode(encode(spec)).rstrip(b"=").decode()
