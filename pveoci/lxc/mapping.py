"""The OCI-to-LXC mapping: a runtime spec, plus the profile and what the cluster can do, as PVE create options.

A pure function: no network, and of the filesystem only the bundle's rootfs (to find the
program). Every field of the spec that matters gets a Finding: applied, approximated,
provided (LXC does it itself) or unsupported, naming the field and the reason. docs/mapping.md
is the same table for people; keep them in step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pveoci import errors, signals
from pveoci.oci.spec import Mount, Spec
from pveoci.template import initshim
from pveoci.template.pack import ExtraFile

Status = Literal["applied", "approximated", "provided", "unsupported"]
SHIM_PATH = "/.pveoci/init"
MIB = 1024 * 1024

# Mounts LXC sets up in every container: a spec asking for them gets them.
LXC_MOUNTS = {"/proc": "proc", "/sys": "sysfs", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",  # noqa: S108 - a mount point, not a temp file
              "/dev/mqueue": "mqueue", "/sys/fs/cgroup": "cgroup"}
LXC_NAMESPACES = {"pid", "network", "ipc", "uts", "mount", "cgroup"}
# Device nodes LXC creates in every container.
LXC_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/console",
               "/dev/ptmx"}
# The id mapping PVE gives an unprivileged container (see pve-container's LXC::parse_id_maps).
PVE_ID_MAP = (0, 100000, 65536)
STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"


@dataclass(frozen=True)
class Finding:
    field: str          # the spec's JSON path, e.g. "linux.resources.pids.limit"
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Target:
    """What the mapping needs to know about the profile and the cluster."""

    pve_version: tuple[int, int] = (9, 1)
    root_pam: bool = False           # only root@pam (a password login, not a token) may set some options
    unprivileged: bool = True        # the profile's choice when the spec has no user namespace
    rootfs_storage: str = "local-lvm"
    disk_gib: int = 4
    bridge: str = "vmbr0"
    memory_mib: int = 512            # PVE's default, for a spec without a memory limit
    swap_mib: int = 512

    @property
    def has_entrypoint(self) -> bool:
        return self.pve_version >= (9, 1)


@dataclass
class Plan:
    """What to ask Proxmox for, what the init shim does, and how each spec field fared."""

    options: dict[str, str | int | float]
    shim: initshim.ShimSpec
    findings: list[Finding]
    stop_signal: str
    annotations: dict[str, str] = field(default_factory=dict)
    legacy_init: bool = False        # PVE < 9.1: no entrypoint option, the template's /sbin/init starts the shim

    @property
    def unsupported(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "unsupported"]

    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status in ("unsupported", "approximated")]

    def check(self, strict: bool) -> None:
        """In strict mode, refuse a bundle with any unsupported field, naming each one."""
        if strict and self.unsupported:
            names = ", ".join(dict.fromkeys(f.field for f in self.unsupported))
            raise errors.MappingError(f"--strict: this bundle asks for what Proxmox cannot do: {names} "
                                      "(pveoci plan shows why)")

    def extras(self) -> list[ExtraFile]:
        """The files the template gets besides the rootfs: the init shim, and /sbin/init on older PVE."""
        files = [ExtraFile(SHIM_PATH.lstrip("/"), initshim.build(self.shim), 0o755)]
        if self.legacy_init:
            files.append(ExtraFile("sbin/init", link=SHIM_PATH))
        return files


def _pairs(*items: tuple[str, object]) -> tuple[tuple[str, object], ...]:
    return items


class _Collector:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def __call__(self, path: str, status: Status, detail: str) -> None:
        self.findings.append(Finding(path, status, detail))


def dns_hostname(name: str) -> str:
    """A DNS-safe hostname from an OCI id or a spec hostname: lower case, labels of [a-z0-9-]."""
    labels = []
    for label in name.lower().replace("_", "-").replace("+", "-").split("."):
        label = re.sub(r"[^a-z0-9-]", "-", label).strip("-")[:63].strip("-")
        if label:
            labels.append(label)
    host = ".".join(labels)[:253].strip(".-")
    return host or "pveoci"


def signal_name(value: str) -> str:
    """SIGTERM, TERM, term or 15 -> SIGTERM; a MappingError for anything else."""
    name = signals.parse(value)
    if name is None:
        raise errors.MappingError(f"annotations[\"{STOP_SIGNAL_ANNOTATION}\"]: unknown signal '{value}'")
    return name


# (type, major, minor) of the character devices LXC's default cgroup allows; None is a wildcard.
_LXC_ALLOWED = {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
                ("c", 5, 2), ("c", 136, None), ("c", 10, 229), ("c", 10, 200)}


def _standard_device(kind: str | None, major: int | None, minor: int | None) -> bool:
    return (kind, major, minor) in _LXC_ALLOWED or (kind, major, None) in _LXC_ALLOWED


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares as the cgroup v2 cpu.weight PVE's cpuunits sets (runc's conversion)."""
    if shares == 0:
        return 100
    return max(1, min(10000, 1 + ((shares - 2) * 9999) // 262142))


def _count_cpus(cpus: str) -> int:
    total = 0
    for part in cpus.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        if not low.isdecimal() or (high and not high.isdecimal()) or (high and int(high) < int(low)):
            raise errors.MappingError(f"linux.resources.cpu.cpus: '{cpus}' is not a CPU list such as 0-3,6")
        total += (int(high) - int(low) + 1) if high else 1
    return total


def map_spec(
    spec: Spec,
    target: Target,
    *,
    container_id: str,
    find_program: Callable[[str, str | None, str], str | None],
) -> Plan:
    """Map the spec onto PVE create options and an init shim. `find_program(name, PATH, cwd)` looks the
    program up in the rootfs. Raises MappingError only for a bundle that cannot run at all."""
    note = _Collector()
    options: dict[str, str | int | float] = {}
    process = spec.process
    if process is None:
        raise errors.MappingError("process: required by pveoci (a bundle must say what to run)")

    # ------------------------------------------------------------ process
    env = tuple(process.env or ())
    path_env = next((e.split("=", 1)[1] for e in env if e.startswith("PATH=")), None)
    program = find_program(process.args[0], path_env, process.cwd)
    if program is None:
        where = f"PATH {path_env}" if path_env is not None else "the default PATH"
        raise errors.MappingError(f"process.args[0]: '{process.args[0]}' is not an executable file in the rootfs "
                                  f"({where})")
    note("process.args", "applied", f"run by pveoci's init shim as PID 1: {program}")
    note("process.env", "applied", "exactly these variables, set by the init shim")
    note("process.cwd", "applied", "set by the init shim")
    user = process.user
    uid, gid = (user.uid, user.gid) if user else (0, 0)
    groups = tuple(user.additional_gids or ()) if user else ()
    umask = user.umask if user else None
    if user is not None:
        note("process.user", "applied", f"uid {uid}, gid {gid}"
             + (f", groups {','.join(map(str, groups))}" if groups else "")
             + (f", umask {umask:04o}" if umask is not None else "") + ", set by the init shim")
        if user.username:
            note("process.user.username", "unsupported", "a Windows field")
    rlimits = []
    for i, rl in enumerate(process.rlimits or ()):
        resource = initshim.RLIMITS.get(rl.type)
        if resource is None:
            note(f"process.rlimits[{i}]", "unsupported", f"{rl.type} is not a Linux resource limit")
            continue
        rlimits.append(initshim.Rlimit(resource, rl.soft, rl.hard))
    if rlimits:
        note("process.rlimits", "applied", "set by the init shim (a hard limit above the node's needs "
             "CAP_SYS_RESOURCE)")
    if process.no_new_privileges is not None:
        note("process.noNewPrivileges", "applied", "set by the init shim")
    if process.oom_score_adj is not None:
        note("process.oomScoreAdj", "applied", "set by the init shim")
    if process.terminal:
        note("process.terminal", "approximated", "the process's stdio is the container console "
             "(pct console); no console socket")
    options["cmode"] = "console"
    if process.console_size is not None:
        note("process.consoleSize", "approximated", "the console's size is set by whoever attaches to it")
    linux = spec.linux
    wanted = {ns.type: ns for ns in (linux.namespaces or [])} if linux else {}
    unprivileged = "user" in wanted or target.unprivileged
    if process.capabilities is not None:
        note("process.capabilities", "unsupported", "containers get LXC's capability set for "
             f"{'unprivileged' if unprivileged else 'privileged'} containers; PVE cannot set others")
    for name, value in _pairs(("apparmorProfile", process.apparmor_profile), ("selinuxLabel", process.selinux_label)):
        if value:
            note(f"process.{name}", "unsupported", "PVE applies its own AppArmor profile to containers")
    for name, obj in _pairs(("scheduler", process.scheduler), ("ioPriority", process.io_priority),
                      ("execCPUAffinity", process.exec_cpu_affinity), ("commandLine", process.command_line)):
        if obj is not None:
            note(f"process.{name}", "unsupported", "no PVE container option for it")
    shim = initshim.ShimSpec(path=program, argv=tuple(process.args), env=env, cwd=process.cwd, uid=uid, gid=gid,
                             additional_gids=groups, umask=umask, rlimits=tuple(rlimits),
                             no_new_privileges=bool(process.no_new_privileges),
                             oom_score_adj=process.oom_score_adj)
    try:
        initshim.validate(shim)
    except ValueError as exc:
        raise errors.MappingError(f"process: {exc}") from None
    if target.has_entrypoint:
        options["entrypoint"] = SHIM_PATH
    else:
        note("process", "approximated", f"PVE {target.pve_version[0]}.{target.pve_version[1]} has no entrypoint "
             "option (9.1+): the template's /sbin/init starts the init shim")

    # ---------------------------------------------------------- identity
    if spec.hostname:
        host = dns_hostname(spec.hostname)
        if host == spec.hostname:
            note("hostname", "applied", f"hostname={host}")
        else:
            note("hostname", "approximated", f"PVE takes DNS names only: '{host}'")
    else:
        host = dns_hostname(container_id)
        note("hostname", "applied", f"none in the spec: '{host}', from the container id")
    options["hostname"] = host
    if spec.domainname:
        note("domainname", "unsupported", "no PVE option for the NIS domain name")
    options["ostype"] = "unmanaged"  # PVE must not rewrite files in an application rootfs
    options["arch"] = "amd64"

    # -------------------------------------------------------------- root
    root_ro = bool(spec.root and spec.root.readonly)
    rootfs = f"{target.rootfs_storage}:{target.disk_gib}"
    if root_ro:
        rootfs += ",ro=1"
        note("root.readonly", "applied", "the root disk is mounted read-only")
    options["rootfs"] = rootfs

    # ------------------------------------------------------ namespaces
    for ns in wanted.values():
        path = f"linux.namespaces[{list(wanted).index(ns.type)}]"
        if ns.path:
            note(path, "unsupported", f"joining an existing {ns.type} namespace ({ns.path}) is not possible in PVE")
        elif ns.type in LXC_NAMESPACES:
            note(path, "provided", f"LXC gives every container its own {ns.type} namespace")
        elif ns.type == "time":
            note(path, "unsupported", "LXC in PVE does not create time namespaces")
    for missing in sorted(LXC_NAMESPACES - set(wanted)):
        if linux is not None and linux.namespaces is not None:
            extra = f", with eth0 on {target.bridge}" if missing == "network" else ""
            note("linux.namespaces", "approximated",
                 f"no {missing} namespace in the spec: the container gets its own anyway{extra}")
    if "user" in wanted:
        options["unprivileged"] = 1
        note(f"linux.namespaces[{list(wanted).index('user')}]", "applied",
             "an unprivileged container (ids mapped from 100000)")
    else:
        options["unprivileged"] = 1 if target.unprivileged else 0
        if target.unprivileged:
            note("linux.namespaces", "approximated", "no user namespace in the spec, but the profile makes "
                 "unprivileged containers (unprivileged = false for a privileged one)")
        else:
            note("linux.namespaces", "applied", "no user namespace: a privileged container (needs Sys.Modify on /)")
    for key in ("uid_mappings", "gid_mappings"):
        maps = getattr(linux, key, None) if linux else None
        if maps:
            json_key = "uidMappings" if key == "uid_mappings" else "gidMappings"
            standard = [(m.container_id, m.host_id, m.size) for m in maps] == [PVE_ID_MAP]
            if standard and options["unprivileged"]:
                note(f"linux.{json_key}", "applied", "PVE's standard mapping")
            else:
                note(f"linux.{json_key}", "unsupported", "PVE maps 0-65535 to 100000-165535; other mappings need "
                     "raw lxc.idmap keys (root@pam only)")

    # ------------------------------------------------------------ mounts
    mp = 0
    for i, mount in enumerate(spec.mounts or ()):
        mp = _map_mount(mount, i, mp, target, options, note)

    # ----------------------------------------------------------- devices
    dev_count = 0
    for i, dev in enumerate((linux.devices or []) if linux else []):
        path = f"linux.devices[{i}]"
        if dev.path in LXC_DEVICES:
            note(path, "provided", f"LXC creates {dev.path}")
        elif not target.root_pam:
            note(path, "unsupported", f"passing {dev.path} through needs dev[n], which only root@pam may set")
        else:
            n, dev_count = dev_count, dev_count + 1
            mode = f",mode={dev.file_mode:04o}" if dev.file_mode is not None else ""
            ids = (f",uid={dev.uid}" if dev.uid is not None else "") + (f",gid={dev.gid}" if dev.gid is not None
                                                                        else "")
            options[f"dev{n}"] = f"{dev.path}{mode}{ids}"
            note(path, "applied", f"dev{n}")

    # --------------------------------------------------------- resources
    resources = linux.resources if linux else None
    memory = resources.memory if resources else None
    if memory is not None and memory.limit is not None and memory.limit > 0:
        mib = max(16, math.ceil(memory.limit / MIB))
        options["memory"] = mib
        note("linux.resources.memory.limit", "applied" if mib * MIB == memory.limit else "approximated",
             f"memory={mib} MiB")
        if memory.swap:  # 0, like an absent swap, is "unset" to runc
            if memory.swap == -1:
                options["swap"] = target.swap_mib
                note("linux.resources.memory.swap", "approximated", f"unlimited swap is not possible: "
                     f"{target.swap_mib} MiB")
            elif memory.swap < memory.limit:
                raise errors.MappingError("linux.resources.memory.swap: must be at least memory.limit "
                                          "(it counts memory plus swap)")
            else:
                options["swap"] = math.ceil((memory.swap - memory.limit) / MIB)
                note("linux.resources.memory.swap", "applied", f"swap={options['swap']} MiB (swap minus limit)")
        else:
            options["swap"] = mib
            note("linux.resources.memory.swap", "approximated", f"no swap limit in the spec (unlimited to runc); "
                 f"PVE needs one: swap={mib} MiB, as much as memory (docker's default)")
    else:
        options["memory"], options["swap"] = target.memory_mib, target.swap_mib
        note("linux.resources.memory.limit", "approximated",
             f"no memory limit in the spec; PVE needs one: {target.memory_mib} MiB (+{target.swap_mib} MiB swap)")
    if memory is not None:
        for name, value in _pairs(("reservation", memory.reservation), ("kernel", memory.kernel),
                            ("kernelTCP", memory.kernel_tcp), ("swappiness", memory.swappiness),
                            ("disableOOMKiller", memory.disable_oom_killer)):
            if value is not None:
                note(f"linux.resources.memory.{name}", "unsupported", "no PVE container option for it")
    cpu = resources.cpu if resources else None
    if cpu is not None:
        if cpu.quota is not None and cpu.quota > 0:
            period = cpu.period or 100000
            limit = round(cpu.quota / period, 2)
            options["cpulimit"] = min(max(limit, 0.01), 8192)
            note("linux.resources.cpu.quota", "applied", f"cpulimit={options['cpulimit']} (quota/period)")
        if cpu.shares is not None:
            options["cpuunits"] = cpu_weight(cpu.shares)
            note("linux.resources.cpu.shares", "applied", f"cpuunits={options['cpuunits']} (as cgroup v2 weight)")
        if cpu.cpus:
            options["cores"] = max(1, _count_cpus(cpu.cpus))
            note("linux.resources.cpu.cpus", "approximated", f"cores={options['cores']}: as many CPUs, "
                 "but PVE chooses which")
        for name, value in _pairs(("mems", cpu.mems), ("realtimeRuntime", cpu.realtime_runtime),
                            ("realtimePeriod", cpu.realtime_period), ("idle", cpu.idle), ("burst", cpu.burst)):
            if value is not None:
                note(f"linux.resources.cpu.{name}", "unsupported", "no PVE container option for it")
    if resources is not None:
        if resources.pids is not None:
            note("linux.resources.pids.limit", "unsupported", "PVE has no option for pids.max (a raw lxc key)")
        if resources.devices:
            allowed = [d for d in resources.devices if d.allow and not _standard_device(d.type, d.major, d.minor)]
            note("linux.resources.devices", "approximated" if allowed else "provided",
                 "PVE sets the device cgroup: LXC's standard devices, plus dev[n]; the spec's other allow rules "
                 "do not apply" if allowed else "LXC's own device allow-list applies")
        for name, value in _pairs(("blockIO", resources.block_io), ("hugepageLimits", resources.hugepage_limits),
                            ("network", resources.network), ("rdma", resources.rdma), ("unified", resources.unified)):
            if value:
                note(f"linux.resources.{name}", "unsupported", "no PVE container option for it")

    # ----------------------------------------------------------- security
    if linux is not None:
        if linux.sysctl:
            note("linux.sysctl", "unsupported", "sysctls need raw lxc.sysctl keys (root@pam only)")
        if linux.seccomp is not None:
            note("linux.seccomp", "unsupported", "LXC applies PVE's own seccomp profile instead")
        if linux.masked_paths:
            note("linux.maskedPaths", "approximated", "LXC masks parts of /proc and /sys its own way")
        if linux.readonly_paths:
            note("linux.readonlyPaths", "approximated", "LXC write-protects parts of /proc and /sys its own way")
        for name, value in _pairs(("rootfsPropagation", linux.rootfs_propagation), ("mountLabel", linux.mount_label),
                            ("intelRdt", linux.intel_rdt), ("memoryPolicy", linux.memory_policy),
                            ("personality", linux.personality), ("timeOffsets", linux.time_offsets),
                            ("netDevices", linux.net_devices)):
            if value:
                note(f"linux.{name}", "unsupported", "no PVE container option for it")
        if linux.cgroups_path:
            note("linux.cgroupsPath", "approximated", "PVE places the container's cgroup itself")

    # ----------------------------------------------------------- network
    options["net0"] = f"name=eth0,bridge={target.bridge},ip=dhcp,ip6=auto"

    # ------------------------------------------------------------- hooks
    hooks = spec.hooks
    if hooks is not None:
        for name, items in _pairs(("prestart", hooks.prestart), ("createRuntime", hooks.create_runtime),
                            ("poststart", hooks.poststart), ("poststop", hooks.poststop)):
            if items:
                note(f"hooks.{name}", "applied", "run by pveoci on this machine (the runtime namespace)")
        for name, items in _pairs(("createContainer", hooks.create_container),
                                  ("startContainer", hooks.start_container)):
            if items:
                note(f"hooks.{name}", "unsupported", "cannot run inside the container's namespaces before start")

    # ------------------------------------------------------- annotations
    annotations = dict(spec.annotations or {})
    stop = signal_name(annotations[STOP_SIGNAL_ANNOTATION]) if STOP_SIGNAL_ANNOTATION in annotations else "SIGTERM"
    if annotations:
        note("annotations", "applied", "kept in the container's ownership marker"
             + (f"; stop signal {stop}" if STOP_SIGNAL_ANNOTATION in annotations else ""))
    options["onboot"] = 0
    return Plan(options=options, shim=shim, findings=note.findings, stop_signal=stop, annotations=annotations,
                legacy_init=not target.has_entrypoint)


def _map_mount(mount: Mount, i: int, mp: int, target: Target, options: dict[str, str | int | float],
               note: _Collector) -> int:
    path = f"mounts[{i}]"
    opts = mount.options or []
    is_bind = mount.type == "bind" or "bind" in opts or "rbind" in opts
    lxc_fs = LXC_MOUNTS.get(mount.destination)
    if lxc_fs is not None and (
            (not is_bind and mount.type in ("tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", None))
            # runc's rootless spec binds the host's /sys where it cannot mount sysfs: LXC mounts it anyway
            or (is_bind and mount.source == mount.destination and lxc_fs in ("proc", "sysfs", "cgroup"))):
        note(path, "provided", f"LXC mounts {mount.destination} itself")
        return mp
    if is_bind:
        if not target.root_pam:
            note(path, "unsupported", f"bind mount of {mount.source} needs mp[n] with a host path, which only "
                 "root@pam may set")
            return mp
        if not mount.source or not mount.source.startswith("/"):
            note(path, "unsupported", "a bind mount needs an absolute source path on the node")
            return mp
        ro = ",ro=1" if "ro" in opts else ""
        options[f"mp{mp}"] = f"{mount.source},mp={mount.destination}{ro}"
        note(path, "applied", f"mp{mp}: {mount.source} on the node, at {mount.destination}")
        return mp + 1
    note(path, "unsupported", f"a {mount.type or 'typeless'} mount at {mount.destination}: PVE mounts only "
         "volumes and host paths")
    return mp
