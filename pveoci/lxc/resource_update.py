"""runc's `update`: a LinuxResources document (the runtime-spec's `linux.resources`, as `runc update --resources`
reads it) as the PVE options that change a container's limits where it runs.

The limits become options by create's own conversions (pveoci.lxc.fields_resources), so a limit changed later is
the option a create would have made of it. runc 1.1's rules: a value of 0 (or none) leaves that limit as it is, a
quota of -1 lifts the CPU limit. What runc's update changes and Proxmox VE has no option for is refused, naming
the field and its flag; what no runc update changes (devices, hugepage limits, ...) stays as it is, with a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pveoci import errors
from pveoci.lxc.draft import Finding, Options, Status
from pveoci.lxc.fields_resources import MIB, check_bytes, set_cores, set_cpulimit, set_cpuunits, set_memory, set_swap
from pveoci.oci.runtime_spec import Resources

PREFIX = "linux.resources"
#: The period PVE writes with every cpulimit (cpu.max): the one a quota given alone is a share of.
PVE_PERIOD = 100000

#: The container's PVE config, read only when a field needs it (a swap given without its memory limit).
CurrentConfig = Callable[[], Mapping[str, Any]]


@dataclass
class ResourceUpdate:
    """What an update asks of Proxmox: the options it sets, those it removes (back to PVE's default: no limit),
    and how each field fared (`Finding`s, as a create's plan has them)."""

    options: Options = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def note(self, path: str, status: Status, detail: str) -> None:
        self.findings.append(Finding(path, status, detail))

    @property
    def changes(self) -> bool:
        return bool(self.options or self.delete)

    def request(self) -> dict[str, Any]:
        """The options as the container's config takes them (PVE's `delete` lists those removed)."""
        return {**self.options, **({"delete": ",".join(self.delete)} if self.delete else {})}

    def to_json(self) -> dict[str, Any]:
        return {"options": dict(self.options), "delete": list(self.delete),
                "findings": [f.to_json() for f in self.findings]}


# What runc's update changes and Proxmox VE has no option for: (field, runc's flag, its value when set). A value
# of 0, "" or an empty list is "unset" to runc, as none is.
_REFUSED: tuple[tuple[str, str, Callable[[Resources], object]], ...] = (
    ("memory.reservation", "--memory-reservation", lambda r: r.memory and r.memory.reservation),
    ("memory.checkBeforeUpdate", "", lambda r: r.memory and r.memory.check_before_update),
    ("cpu.mems", "--cpuset-mems", lambda r: r.cpu and r.cpu.mems),
    ("cpu.realtimeRuntime", "--cpu-rt-runtime", lambda r: r.cpu and r.cpu.realtime_runtime),
    ("cpu.realtimePeriod", "--cpu-rt-period", lambda r: r.cpu and r.cpu.realtime_period),
    ("cpu.idle", "", lambda r: r.cpu and r.cpu.idle),
    ("cpu.burst", "", lambda r: r.cpu and r.cpu.burst),
    ("pids.limit", "--pids-limit", lambda r: r.pids and r.pids.limit),
    ("blockIO.weight", "--blkio-weight", lambda r: r.block_io and r.block_io.weight),
    ("blockIO.leafWeight", "", lambda r: r.block_io and r.block_io.leaf_weight),
    ("blockIO.weightDevice", "", lambda r: r.block_io and r.block_io.weight_device),
    ("blockIO.throttleReadBpsDevice", "", lambda r: r.block_io and r.block_io.throttle_read_bps_device),
    ("blockIO.throttleWriteBpsDevice", "", lambda r: r.block_io and r.block_io.throttle_write_bps_device),
    ("blockIO.throttleReadIOPSDevice", "", lambda r: r.block_io and r.block_io.throttle_read_iops_device),
    ("blockIO.throttleWriteIOPSDevice", "", lambda r: r.block_io and r.block_io.throttle_write_iops_device),
    ("unified", "", lambda r: r.unified),
)

# What no runc update changes (runc 1.1 leaves them, or warns that it ignores them): left as they are.
_LEFT: tuple[tuple[str, str, Callable[[Resources], object]], ...] = (
    ("memory.kernel", "ignored, as runc ignores kernel memory settings", lambda r: r.memory and r.memory.kernel),
    ("memory.kernelTCP", "ignored, as runc ignores kernel memory settings",
     lambda r: r.memory and r.memory.kernel_tcp),
    ("memory.swappiness", "not changed by an update (nor by runc's)",
     lambda r: r.memory and r.memory.swappiness is not None),
    ("memory.disableOOMKiller", "not changed by an update (nor by runc's)",
     lambda r: r.memory and r.memory.disable_oom_killer is not None),
    ("memory.useHierarchy", "not changed by an update (nor by runc's)",
     lambda r: r.memory and r.memory.use_hierarchy is not None),
    ("devices", "not changed by an update (nor by runc's)", lambda r: r.devices),
    ("hugepageLimits", "not changed by an update (nor by runc's)", lambda r: r.hugepage_limits),
    ("network", "not changed by an update (nor by runc's)", lambda r: r.network),
    ("rdma", "not changed by an update (nor by runc's)", lambda r: r.rdma),
)


def _named(path: str, flag: str) -> str:
    return f"{PREFIX}.{path}" + (f" ({flag})" if flag else "")


def refuse_unsupported(r: Resources) -> None:
    """Unsupported (naming every such field) when the update sets what Proxmox VE cannot change."""
    refused = [_named(path, flag) for path, flag, value in _REFUSED if value(r)]
    if refused:
        raise errors.Unsupported(f"{', '.join(refused)}: Proxmox VE has no container option for "
                                 f"{'it' if len(refused) == 1 else 'them'}; nothing was changed")


def memory(r: Resources, change: ResourceUpdate, current: CurrentConfig) -> None:
    """memory.limit and memory.swap (memory plus swap): PVE's memory and swap. A swap without a limit counts
    from the container's memory as it is."""
    mem = r.memory
    if mem is None:
        return
    check_bytes("limit", mem.limit)
    check_bytes("swap", mem.swap)
    for name, flag, what in (("limit", "--memory", "a memory limit"), ("swap", "--memory-swap", "a swap size")):
        if getattr(mem, name) == -1:
            raise errors.MappingError(f"{_named('memory.' + name, flag)}: -1 (unlimited) is not possible: "
                                      f"Proxmox VE needs {what}")
    if mem.limit:
        set_memory(change, mem.limit)
    if mem.swap:
        set_swap(change, mem.limit or int(current().get("memory") or 512) * MIB, mem.swap)


def cpu_quota(r: Resources, change: ResourceUpdate, current: CurrentConfig) -> None:
    """cpu.quota per cpu.period: PVE's cpulimit; a quota below 0 lifts it (PVE's default: no limit). PVE's period
    is fixed, so a period alone, which would change the limit without its quota, is refused."""
    quota, period = (r.cpu.quota or 0, r.cpu.period or 0) if r.cpu else (0, 0)
    if quota == 0:
        if period:
            raise errors.MappingError(f"{_named('cpu.period', '--cpu-period')}: Proxmox VE's cpulimit is quota/period "
                                      "at a fixed period: give the quota with it")
        return
    if quota < 0:
        change.delete.append("cpulimit")
        change.note(f"{PREFIX}.cpu.quota", "applied", "no cpulimit (unlimited)")
        return
    set_cpulimit(change, quota, period or PVE_PERIOD)


def cpu_shares(r: Resources, change: ResourceUpdate, current: CurrentConfig) -> None:
    if r.cpu is not None and r.cpu.shares:
        set_cpuunits(change, r.cpu.shares)


def cpu_cpus(r: Resources, change: ResourceUpdate, current: CurrentConfig) -> None:
    if r.cpu is not None and r.cpu.cpus:
        set_cores(change, r.cpu.cpus)


def left_alone(r: Resources, change: ResourceUpdate, current: CurrentConfig) -> None:
    for path, why, value in _LEFT:
        if value(r):
            change.note(f"{PREFIX}.{path}", "unsupported", why)


FieldUpdate = Callable[[Resources, ResourceUpdate, CurrentConfig], None]

# The fields an update changes, in the order of their findings (the refused ones are refused before any of them).
FIELDS: tuple[tuple[str, FieldUpdate], ...] = (
    ("memory.limit, swap", memory),
    ("cpu.quota, period", cpu_quota),
    ("cpu.shares", cpu_shares),
    ("cpu.cpus", cpu_cpus),
    ("devices, hugepageLimits, network, rdma, memory.kernel, ...", left_alone),
)


def map_update(resources: Resources, current: CurrentConfig) -> ResourceUpdate:
    """The options that make the container's limits what `resources` asks. Unsupported for a field Proxmox VE
    cannot change, MappingError for a value it cannot take (as a create's), before anything changes."""
    refuse_unsupported(resources)
    change = ResourceUpdate()
    for _fields, mapper in FIELDS:
        mapper(resources, change, current)
    return change
