"""Typed models of an OCI runtime-spec v1.3 config.json (its Linux parts), and its validation errors as one line
that names the JSON path of each invalid value. Unknown properties are ignored, as config.md says.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from pveoci.errors import BundleError

MAX_ERRORS = 5
MAX_ARG_STRLEN = 32 * 4096   # bytes of one argument or environment string, its NUL included
PATH_MAX = 4096              # bytes of a path, its NUL included
M = TypeVar("M", bound="_Model")

# The SemVer 2.0.0 grammar (semver.org), ASCII digits only.
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
_RLIMIT = re.compile(r"RLIMIT_[A-Z]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _quote(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _semver(value: str) -> str:
    if not _SEMVER.fullmatch(value):
        raise ValueError(f"must be a SemVer 2.0.0 version such as 1.3.0, not {_quote(value)}")
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, not {_quote(value)}")
    return value


def _no_nul(value: str) -> str:
    # A program's arguments, environment and paths are C strings: a NUL would cut them short.
    if "\0" in value:
        raise ValueError("must not contain a NUL byte")
    return value


def _utf8_size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _arg_size(value: str) -> str:
    # execve(2) refuses a longer argument or environment string (E2BIG): no program can be given it.
    if len(value) >= MAX_ARG_STRLEN or _utf8_size(value) >= MAX_ARG_STRLEN:
        raise ValueError(f"must be shorter than {MAX_ARG_STRLEN} bytes (Linux's MAX_ARG_STRLEN)")
    return value


def _path_size(value: str) -> str:
    # No system call takes a longer path (ENAMETOOLONG).
    if len(value) >= PATH_MAX or _utf8_size(value) >= PATH_MAX:
        raise ValueError(f"must be shorter than {PATH_MAX} bytes (Linux's PATH_MAX)")
    return value


def _env_entry(value: str) -> str:
    # The entry is not echoed: environment values are often secrets.
    key, sep, _ = value.partition("=")
    if not key or not sep:
        raise ValueError("must be KEY=VALUE with a non-empty KEY")
    return value


def _rlimit_type(value: str) -> str:
    if not _RLIMIT.fullmatch(value):
        raise ValueError(f"must be an RLIMIT_* name such as RLIMIT_NOFILE, not {_quote(value)}")
    return value


# Integer widths of the schema (defs.json); strict mode below keeps JSON's 1.0 and "1" out of them.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
UInt16 = Annotated[int, Field(ge=0, le=2**16 - 1)]
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
FileMode = Annotated[int, Field(ge=0, le=0o777)]
AbsPath = Annotated[str, AfterValidator(_absolute), AfterValidator(_no_nul), AfterValidator(_path_size)]
EnvEntry = Annotated[str, AfterValidator(_env_entry), AfterValidator(_no_nul), AfterValidator(_arg_size)]
Arg = Annotated[str, AfterValidator(_no_nul), AfterValidator(_arg_size)]

NamespaceType = Literal["mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time"]
SeccompAction = Literal[
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
]
SeccompArch = Literal[
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
]
SeccompFlag = Literal[
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
]
SeccompOperator = Literal[
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
]
SchedulerPolicy = Literal[
    "SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO", "SCHED_IDLE", "SCHED_DEADLINE",
]
SchedulerFlag = Literal[
    "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_KEEP_POLICY",
    "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN", "SCHED_FLAG_UTIL_CLAMP_MAX",
]
MemoryPolicyMode = Literal[
    "MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY", "MPOL_LOCAL",
]
MemoryPolicyFlag = Literal["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]


class _Model(BaseModel):
    # strict: runc reads config.json with Go's encoding/json, where "1" is no number and 1.0 no integer.
    # The schemas are built when a spec is first validated, in one piece, not model by model at import: 5 ms of
    # every command that reads a bundle.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True, defer_build=True)


# --- process ---


class ConsoleSize(_Model):
    height: UInt64
    width: UInt64


class User(_Model):
    uid: UInt32
    gid: UInt32
    umask: UInt32 | None = None
    additional_gids: list[UInt32] | None = Field(default=None, alias="additionalGids")
    username: str | None = None


class Capabilities(_Model):
    bounding: list[str] | None = None
    effective: list[str] | None = None
    inheritable: list[str] | None = None
    permitted: list[str] | None = None
    ambient: list[str] | None = None


class Rlimit(_Model):
    type: Annotated[str, AfterValidator(_rlimit_type)]
    hard: UInt64
    soft: UInt64


class Scheduler(_Model):
    policy: SchedulerPolicy
    nice: Int32 | None = None
    priority: Int32 | None = None
    flags: list[SchedulerFlag] | None = None
    runtime: UInt64 | None = None
    deadline: UInt64 | None = None
    period: UInt64 | None = None


class IoPriority(_Model):
    class_: Literal["IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"] = Field(alias="class")
    priority: Int32


class ExecCpuAffinity(_Model):
    initial: str | None = Field(default=None, pattern=r"^[0-9, -]*$")
    final: str | None = Field(default=None, pattern=r"^[0-9, -]*$")


class Process(_Model):
    terminal: bool | None = None
    console_size: ConsoleSize | None = Field(default=None, alias="consoleSize")
    user: User | None = None
    # config.md: at least one entry is REQUIRED on every platform but Windows.
    args: Annotated[list[Arg], Field(min_length=1)]
    command_line: str | None = Field(default=None, alias="commandLine")
    env: list[EnvEntry] | None = None
    cwd: AbsPath
    capabilities: Capabilities | None = None
    rlimits: list[Rlimit] | None = None
    no_new_privileges: bool | None = Field(default=None, alias="noNewPrivileges")
    apparmor_profile: str | None = Field(default=None, alias="apparmorProfile")
    oom_score_adj: Int64 | None = Field(default=None, alias="oomScoreAdj")
    scheduler: Scheduler | None = None
    selinux_label: str | None = Field(default=None, alias="selinuxLabel")
    io_priority: IoPriority | None = Field(default=None, alias="ioPriority")
    exec_cpu_affinity: ExecCpuAffinity | None = Field(default=None, alias="execCPUAffinity")

    @field_validator("rlimits")
    @classmethod
    def _unique_rlimits(cls, value: list[Rlimit] | None) -> list[Rlimit] | None:
        seen: set[str] = set()
        for limit in value or []:
            if limit.type in seen:
                raise ValueError(f"{limit.type} is listed more than once")
            seen.add(limit.type)
        return value


# --- root, mounts, hooks ---


class Root(_Model):
    path: Annotated[str, Field(min_length=1)]
    readonly: bool | None = None


class IdMapping(_Model):
    container_id: UInt32 = Field(alias="containerID")
    host_id: UInt32 = Field(alias="hostID")
    size: UInt32


class Mount(_Model):
    # A relative destination is deprecated but valid on Linux: it is relative to "/" (config.md).
    destination: Annotated[str, Field(min_length=1), AfterValidator(lambda d: d if d.startswith("/") else "/" + d)]
    type: str | None = None
    source: str | None = None
    options: list[str] | None = None
    uid_mappings: list[IdMapping] | None = Field(default=None, alias="uidMappings")
    gid_mappings: list[IdMapping] | None = Field(default=None, alias="gidMappings")

    @model_validator(mode="after")
    def _mappings_in_pairs(self) -> Mount:
        if (self.uid_mappings is None) != (self.gid_mappings is None):
            raise ValueError("uidMappings and gidMappings must be given together")
        return self


class Hook(_Model):
    path: AbsPath
    args: list[Arg] | None = None
    env: list[EnvEntry] | None = None
    timeout: Annotated[int, Field(ge=1)] | None = None


class Hooks(_Model):
    prestart: list[Hook] | None = None
    create_runtime: list[Hook] | None = Field(default=None, alias="createRuntime")
    create_container: list[Hook] | None = Field(default=None, alias="createContainer")
    start_container: list[Hook] | None = Field(default=None, alias="startContainer")
    poststart: list[Hook] | None = None
    poststop: list[Hook] | None = None


# --- linux ---


class Namespace(_Model):
    type: NamespaceType
    path: AbsPath | None = None


class TimeOffset(_Model):
    secs: Int64 | None = None
    nanosecs: UInt32 | None = None


class TimeOffsets(_Model):
    boottime: TimeOffset | None = None
    monotonic: TimeOffset | None = None


class Device(_Model):
    path: AbsPath
    type: Literal["c", "b", "u", "p"]
    major: Int64 | None = None
    minor: Int64 | None = None
    file_mode: FileMode | None = Field(default=None, alias="fileMode")
    uid: UInt32 | None = None
    gid: UInt32 | None = None

    @model_validator(mode="after")
    def _numbers(self) -> Device:
        if self.type != "p" and (self.major is None or self.minor is None):
            raise ValueError("major and minor are required unless type is p")
        return self


class NetDevice(_Model):
    name: str | None = None


class DeviceCgroup(_Model):
    allow: bool
    type: Literal["a", "b", "c"] | None = None
    major: Int64 | None = None
    minor: Int64 | None = None
    access: str | None = None


class Memory(_Model):
    limit: Int64 | None = None
    reservation: Int64 | None = None
    swap: Int64 | None = None
    kernel: Int64 | None = None
    kernel_tcp: Int64 | None = Field(default=None, alias="kernelTCP")
    swappiness: UInt64 | None = None
    disable_oom_killer: bool | None = Field(default=None, alias="disableOOMKiller")
    use_hierarchy: bool | None = Field(default=None, alias="useHierarchy")
    check_before_update: bool | None = Field(default=None, alias="checkBeforeUpdate")


class Cpu(_Model):
    shares: UInt64 | None = None
    quota: Int64 | None = None
    burst: UInt64 | None = None
    period: UInt64 | None = None
    realtime_runtime: Int64 | None = Field(default=None, alias="realtimeRuntime")
    realtime_period: UInt64 | None = Field(default=None, alias="realtimePeriod")
    cpus: str | None = None
    mems: str | None = None
    idle: Int64 | None = None


class Pids(_Model):
    limit: Int64


class WeightDevice(_Model):
    major: Int64
    minor: Int64
    weight: UInt16 | None = None
    leaf_weight: UInt16 | None = Field(default=None, alias="leafWeight")


class ThrottleDevice(_Model):
    major: Int64
    minor: Int64
    rate: UInt64


class BlockIo(_Model):
    weight: UInt16 | None = None
    leaf_weight: UInt16 | None = Field(default=None, alias="leafWeight")
    weight_device: list[WeightDevice] | None = Field(default=None, alias="weightDevice")
    throttle_read_bps_device: list[ThrottleDevice] | None = Field(default=None, alias="throttleReadBpsDevice")
    throttle_write_bps_device: list[ThrottleDevice] | None = Field(default=None, alias="throttleWriteBpsDevice")
    throttle_read_iops_device: list[ThrottleDevice] | None = Field(default=None, alias="throttleReadIOPSDevice")
    throttle_write_iops_device: list[ThrottleDevice] | None = Field(default=None, alias="throttleWriteIOPSDevice")


class HugepageLimit(_Model):
    page_size: str = Field(alias="pageSize", pattern=r"^[1-9][0-9]*[KMG]B$")
    limit: UInt64


class InterfacePriority(_Model):
    name: str
    priority: UInt32


class Network(_Model):
    class_id: UInt32 | None = Field(default=None, alias="classID")
    priorities: list[InterfacePriority] | None = None


class Rdma(_Model):
    hca_handles: UInt32 | None = Field(default=None, alias="hcaHandles")
    hca_objects: UInt32 | None = Field(default=None, alias="hcaObjects")


class Resources(_Model):
    devices: list[DeviceCgroup] | None = None
    memory: Memory | None = None
    cpu: Cpu | None = None
    pids: Pids | None = None
    block_io: BlockIo | None = Field(default=None, alias="blockIO")
    hugepage_limits: list[HugepageLimit] | None = Field(default=None, alias="hugepageLimits")
    network: Network | None = None
    rdma: dict[str, Rdma] | None = None
    unified: dict[str, str] | None = None


class SyscallArg(_Model):
    index: UInt32
    value: UInt64
    value_two: UInt64 | None = Field(default=None, alias="valueTwo")
    op: SeccompOperator


class Syscall(_Model):
    names: Annotated[list[str], Field(min_length=1)]
    action: SeccompAction
    errno_ret: UInt32 | None = Field(default=None, alias="errnoRet")
    args: list[SyscallArg] | None = None


class Seccomp(_Model):
    default_action: SeccompAction = Field(alias="defaultAction")
    default_errno_ret: UInt32 | None = Field(default=None, alias="defaultErrnoRet")
    architectures: list[SeccompArch] | None = None
    flags: list[SeccompFlag] | None = None
    listener_path: str | None = Field(default=None, alias="listenerPath")
    listener_metadata: str | None = Field(default=None, alias="listenerMetadata")
    syscalls: list[Syscall] | None = None


class IntelRdt(_Model):
    clos_id: str | None = Field(default=None, alias="closID")
    schemata: list[str] | None = None
    l3_cache_schema: str | None = Field(default=None, alias="l3CacheSchema")
    mem_bw_schema: str | None = Field(default=None, alias="memBwSchema", pattern=r"^MB:[^\n]*$")
    enable_monitoring: bool | None = Field(default=None, alias="enableMonitoring")


class MemoryPolicy(_Model):
    mode: MemoryPolicyMode
    nodes: str | None = None
    flags: list[MemoryPolicyFlag] | None = None


class Personality(_Model):
    domain: Literal["LINUX", "LINUX32"]
    flags: list[str] | None = None


class Linux(_Model):
    uid_mappings: list[IdMapping] | None = Field(default=None, alias="uidMappings")
    gid_mappings: list[IdMapping] | None = Field(default=None, alias="gidMappings")
    sysctl: dict[str, str] | None = None
    resources: Resources | None = None
    cgroups_path: str | None = Field(default=None, alias="cgroupsPath")
    namespaces: list[Namespace] | None = None
    devices: list[Device] | None = None
    net_devices: dict[str, NetDevice] | None = Field(default=None, alias="netDevices")
    seccomp: Seccomp | None = None
    rootfs_propagation: Literal["private", "shared", "slave", "unbindable"] | None = Field(
        default=None, alias="rootfsPropagation")
    masked_paths: list[AbsPath] | None = Field(default=None, alias="maskedPaths")
    readonly_paths: list[AbsPath] | None = Field(default=None, alias="readonlyPaths")
    mount_label: str | None = Field(default=None, alias="mountLabel")
    intel_rdt: IntelRdt | None = Field(default=None, alias="intelRdt")
    memory_policy: MemoryPolicy | None = Field(default=None, alias="memoryPolicy")
    personality: Personality | None = None
    time_offsets: TimeOffsets | None = Field(default=None, alias="timeOffsets")

    @field_validator("namespaces")
    @classmethod
    def _unique_namespaces(cls, value: list[Namespace] | None) -> list[Namespace] | None:
        seen: set[str] = set()
        for ns in value or []:
            if ns.type in seen:
                raise ValueError(f"{ns.type} is listed more than once")
            seen.add(ns.type)
        return value


class Spec(_Model):
    """A config.json. `process` and `root` are optional here as in the schema; `Bundle.load` requires both."""

    oci_version: Annotated[str, AfterValidator(_semver)] = Field(alias="ociVersion")
    process: Process | None = None
    root: Root | None = None
    hostname: str | None = None
    domainname: str | None = None
    mounts: list[Mount] | None = None
    hooks: Hooks | None = None
    annotations: dict[str, str] | None = None
    linux: Linux | None = None

    @field_validator("annotations")
    @classmethod
    def _named_annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and "" in value:
            raise ValueError("keys must not be empty")
        return value


# --- errors ---


def json_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a JSON path: `process.env[2]`, `linux.sysctl["net.ipv4.ip_forward"]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


# pydantic's words are about Python ("a valid dictionary"); these are about JSON.
_PLAIN = {
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
}


def _describe(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        return f"must be {ctx['expected']}, not {_quote(err['input'])}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}, not {_quote(err['input'])}"
    msg = err["msg"]
    return msg[:1].lower() + msg[1:]


def format_errors(exc: ValidationError, limit: int = MAX_ERRORS) -> str:
    """The errors as `path: problem` joined by "; ", at most `limit` of them, then "(and N more)"."""
    parts = []
    for err in exc.errors():
        where = json_path(tuple(err["loc"])) or "top level"
        parts.append(f"{where}: {_describe(err)}")
    text = "; ".join(parts[:limit])
    if len(parts) > limit:
        text += f" (and {len(parts) - limit} more)"
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(data: object) -> str | None:
    """The JSON path of the first string (or key) with a lone surrogate ("\\ud800" in JSON): no valid UTF-8 has
    one, so no program, environment or Proxmox option can be given it. None when there is none."""
    try:  # the document as text, at C speed: most have none, and need no walk
        if not _SURROGATE.search(json.dumps(data, ensure_ascii=False, check_circular=False)):
            return None
    except (TypeError, ValueError, RecursionError):
        pass  # not a JSON document (a caller's own objects): walked as it is
    stack: list[tuple[tuple[int | str, ...], object]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str) and _SURROGATE.search(value):
            return json_path(loc) or "top level"
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if _SURROGATE.search(key):  # the key itself cannot be named in the path: its object is
                    return json_path(loc) or "top level"
                stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in reversed(list(enumerate(value))))
    return None


def parse_spec(data: object, *, where: str = "config.json") -> Spec:
    """Validate decoded config.json data; a one-line BundleError `invalid <where>: <path>: <problem>` if not valid."""
    return _validate(Spec, data, where)


def parse_process(data: object, *, where: str = "process.json") -> Process:
    """Validate a decoded runtime-spec `process` object (runc's exec --process) as parse_spec does a config."""
    return _validate(Process, data, where)


def parse_resources(data: object, *, where: str = "resources.json") -> Resources:
    """Validate a decoded runtime-spec `linux.resources` object (runc's update --resources) as parse_spec does a
    config."""
    return _validate(Resources, data, where)


def _validate(model: type[M], data: object, where: str) -> M:
    bad = lone_surrogate(data)
    if bad is not None:
        # Not the value: it may be a secret (an environment variable's).
        raise BundleError(f"invalid {where}: {bad}: not valid Unicode (a lone UTF-16 surrogate such as \\ud800)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # No detail with the raw error: pydantic would print the input, and env values can be secrets.
        raise BundleError(f"invalid {where}: {format_errors(exc)}") from None
