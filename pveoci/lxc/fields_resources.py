"""`linux.resources`: memory and swap, CPU limits, and the cgroup controls PVE has no option for.

The conversions (set_memory, set_swap, set_cpulimit, set_cpuunits, set_cores) are shared with runc's `update`
(pveoci.lxc.resource_update): a limit changed later becomes the option a create would have made of it.
"""

from __future__ import annotations

import re
from typing import Protocol

from pveoci import errors
from pveoci.lxc.draft import Draft, Options, Status, by_alias, shown
from pveoci.oci.runtime_spec import Cpu, Memory, Resources

MIB = 1024 * 1024
MEMORY_MIN = 16     # MiB: PVE's least
CPU_MAX = 8192      # PVE's most cores, and Linux's largest NR_CPUS: CPUs are numbered 0-8191 at most
CPULIMIT_MAX = 8192  # PVE's cpulimit: 0 (none) to 8192 CPUs' time
_CPU_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
#: The cgroup version the resources are written for: v2 (cpu.shares become cpu.weight), as PVE 8 and 9 run; PVE
#: writes them on the node. `pveoci features` says so.
CGROUP_VERSION = 2
#: The controls of `linux.resources` PVE has no option for (`pveoci features`: no rdma).
UNSUPPORTED = ("blockIO", "hugepageLimits", "network", "rdma", "unified")


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares as the cgroup v2 cpu.weight PVE's cpuunits sets (runc's conversion)."""
    if shares == 0:
        return 100
    return max(1, min(10000, 1 + ((shares - 2) * 9999) // 262142))


def count_cpus(cpus: str) -> int:
    """How many CPUs a cpuset list such as `0-3,6` names (each once); a MappingError for what is not one."""
    named: set[int] = set()
    for part in cpus.split(","):
        part = part.strip()
        if not part:
            continue
        match = _CPU_RANGE.fullmatch(part)
        if match is None:
            raise errors.MappingError(f"linux.resources.cpu.cpus: {shown(cpus)} is not a CPU list such as 0-3,6")
        # A number longer than a CPU's can be is not read in full: it is out of range either way.
        low, high = (int(n) if len(n) <= 6 else CPU_MAX for n in (match[1], match[2] or match[1]))
        if high < low:
            raise errors.MappingError(f"linux.resources.cpu.cpus: {shown(cpus)} is not a CPU list such as 0-3,6")
        if high >= CPU_MAX:
            raise errors.MappingError(f"linux.resources.cpu.cpus: {shown(cpus)} names a CPU above {CPU_MAX - 1}: "
                                      f"Linux numbers at most {CPU_MAX} CPUs (and PVE's cores at most {CPU_MAX})")
        named.update(range(low, high + 1))
    return len(named)


class Sink(Protocol):
    """What a conversion fills in: PVE options, and a finding per field (a create's Draft, an update's change)."""

    options: Options

    def note(self, path: str, status: Status, detail: str) -> None: ...


def check_bytes(name: str, value: int | None) -> None:
    """A memory value below -1 is refused: runc writes it to memory.max, which refuses it."""
    if value is not None and value < -1:
        raise errors.MappingError(f"linux.resources.memory.{name}: {value} is not a number of bytes "
                                  "(-1 is unlimited, 0 unset)")


def set_memory(d: Sink, limit: int) -> int:
    """A limit (bytes, above 0) as PVE's `memory`: whole MiB, rounded up, at least PVE's least; the MiB."""
    mib = max(MEMORY_MIN, -(-limit // MIB))
    d.options["memory"] = mib
    d.note("linux.resources.memory.limit", "applied" if mib * MIB == limit else "approximated", f"memory={mib} MiB")
    return mib


def set_swap(d: Sink, limit: int, swap: int) -> None:
    """The spec's swap (above 0) counts memory plus swap; PVE's is swap alone."""
    if swap < limit:
        raise errors.MappingError("linux.resources.memory.swap: must be at least memory.limit "
                                  "(it counts memory plus swap)")
    d.options["swap"] = -(-(swap - limit) // MIB)
    d.note("linux.resources.memory.swap", "applied", f"swap={d.options['swap']} MiB (swap minus limit)")


def set_cpulimit(d: Sink, quota: int, period: int | None) -> None:
    """A quota (above 0) per period as PVE's cpulimit, in steps of 0.01 CPUs up to 8192: a smaller one is its
    smallest step, a larger one is as many CPUs as PVE allows."""
    wanted = round(quota / (period or 100000), 2)
    d.options["cpulimit"] = min(max(wanted, 0.01), CPULIMIT_MAX)
    if wanted <= CPULIMIT_MAX:
        d.note("linux.resources.cpu.quota", "applied", f"cpulimit={d.options['cpulimit']} (quota/period)")
    else:
        d.note("linux.resources.cpu.quota", "approximated", f"cpulimit={CPULIMIT_MAX}: quota/period is "
               f"{wanted:g} CPUs, PVE's most is {CPULIMIT_MAX}")


def set_cpuunits(d: Sink, shares: int) -> None:
    d.options["cpuunits"] = cpu_weight(shares)
    d.note("linux.resources.cpu.shares", "applied", f"cpuunits={d.options['cpuunits']} (as cgroup v2 weight)")


def set_cores(d: Sink, cpus: str) -> None:
    d.options["cores"] = max(1, count_cpus(cpus))
    d.note("linux.resources.cpu.cpus", "approximated", f"cores={d.options['cores']}: as many CPUs, "
           "but PVE chooses which")


def _resources(d: Draft) -> Resources | None:
    return d.spec.linux.resources if d.spec.linux else None


def _memory(d: Draft) -> Memory | None:
    resources = _resources(d)
    return resources.memory if resources else None


def _cpu(d: Draft) -> Cpu | None:
    resources = _resources(d)
    return resources.cpu if resources else None


def memory(d: Draft) -> None:
    """PVE needs a memory limit: without one in the spec (or -1, unlimited), the target's default."""
    mem = _memory(d)
    check_bytes("limit", getattr(mem, "limit", None))
    check_bytes("swap", getattr(mem, "swap", None))
    if mem is None or not mem.limit or mem.limit == -1:
        d.options["memory"], d.options["swap"] = d.target.memory_mib, d.target.swap_mib
        d.note("linux.resources.memory.limit", "approximated", f"no memory limit in the spec; PVE needs one: "
               f"{d.target.memory_mib} MiB (+{d.target.swap_mib} MiB swap)")
        return
    mib = set_memory(d, mem.limit)
    _swap(d, mem.limit, mem.swap, mib)


def _swap(d: Draft, limit: int, swap: int | None, mib: int) -> None:
    if not swap:  # 0, like an absent swap, is "unset" to runc
        d.options["swap"] = mib
        d.note("linux.resources.memory.swap", "approximated", f"no swap limit in the spec (unlimited to runc); "
               f"PVE needs one: swap={mib} MiB, as much as memory (docker's default)")
    elif swap == -1:
        d.options["swap"] = d.target.swap_mib
        d.note("linux.resources.memory.swap", "approximated", f"unlimited swap is not possible: "
               f"{d.target.swap_mib} MiB")
    else:
        set_swap(d, limit, swap)


def memory_other(d: Draft) -> None:
    mem = _memory(d)
    if mem is not None:
        d.unsupported_if_set("linux.resources.memory", {
            "reservation": mem.reservation, "kernel": mem.kernel, "kernelTCP": mem.kernel_tcp,
            "swappiness": mem.swappiness, "disableOOMKiller": mem.disable_oom_killer})


def cpu_quota(d: Draft) -> None:
    """A quota of -1 (unlimited; to runc, any quota up to 0) sets no limit."""
    cpu = _cpu(d)
    if cpu is not None and cpu.quota is not None and cpu.quota > 0:
        set_cpulimit(d, cpu.quota, cpu.period)


def cpu_shares(d: Draft) -> None:
    cpu = _cpu(d)
    if cpu is not None and cpu.shares is not None:
        set_cpuunits(d, cpu.shares)


def cpu_cpus(d: Draft) -> None:
    cpu = _cpu(d)
    if cpu is not None and cpu.cpus:
        set_cores(d, cpu.cpus)


def cpu_other(d: Draft) -> None:
    cpu = _cpu(d)
    if cpu is not None:
        d.unsupported_if_set("linux.resources.cpu", {
            "mems": cpu.mems, "realtimeRuntime": cpu.realtime_runtime, "realtimePeriod": cpu.realtime_period,
            "idle": cpu.idle, "burst": cpu.burst})


def pids(d: Draft) -> None:
    resources = _resources(d)
    if resources is not None and resources.pids is not None:
        d.note("linux.resources.pids.limit", "unsupported", "PVE has no option for pids.max (a raw lxc key)")


def resources_other(d: Draft) -> None:
    resources = _resources(d)
    if resources is not None:
        d.unsupported_if_set("linux.resources", by_alias(resources, UNSUPPORTED), even_empty=False)
