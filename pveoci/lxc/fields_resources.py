"""`linux.resources`: memory and swap, CPU limits, and the cgroup controls PVE has no option for."""

from __future__ import annotations

import math

from pveoci import errors
from pveoci.lxc.plan import Draft
from pveoci.oci.spec import Cpu, Memory, Resources

MIB = 1024 * 1024


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares as the cgroup v2 cpu.weight PVE's cpuunits sets (runc's conversion)."""
    if shares == 0:
        return 100
    return max(1, min(10000, 1 + ((shares - 2) * 9999) // 262142))


def count_cpus(cpus: str) -> int:
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


def _resources(d: Draft) -> Resources | None:
    return d.spec.linux.resources if d.spec.linux else None


def _memory(d: Draft) -> Memory | None:
    resources = _resources(d)
    return resources.memory if resources else None


def _cpu(d: Draft) -> Cpu | None:
    resources = _resources(d)
    return resources.cpu if resources else None


def memory(d: Draft) -> None:
    """PVE needs a memory limit: without one in the spec, the target's default."""
    mem = _memory(d)
    if mem is None or mem.limit is None or mem.limit <= 0:
        d.options["memory"], d.options["swap"] = d.target.memory_mib, d.target.swap_mib
        d.note("linux.resources.memory.limit", "approximated", f"no memory limit in the spec; PVE needs one: "
               f"{d.target.memory_mib} MiB (+{d.target.swap_mib} MiB swap)")
        return
    mib = max(16, math.ceil(mem.limit / MIB))
    d.options["memory"] = mib
    d.note("linux.resources.memory.limit", "applied" if mib * MIB == mem.limit else "approximated",
           f"memory={mib} MiB")
    _swap(d, mem.limit, mem.swap, mib)


def _swap(d: Draft, limit: int, swap: int | None, mib: int) -> None:
    """The spec's swap counts memory plus swap; PVE's is swap alone."""
    if not swap:  # 0, like an absent swap, is "unset" to runc
        d.options["swap"] = mib
        d.note("linux.resources.memory.swap", "approximated", f"no swap limit in the spec (unlimited to runc); "
               f"PVE needs one: swap={mib} MiB, as much as memory (docker's default)")
    elif swap == -1:
        d.options["swap"] = d.target.swap_mib
        d.note("linux.resources.memory.swap", "approximated", f"unlimited swap is not possible: "
               f"{d.target.swap_mib} MiB")
    elif swap < limit:
        raise errors.MappingError("linux.resources.memory.swap: must be at least memory.limit "
                                  "(it counts memory plus swap)")
    else:
        d.options["swap"] = math.ceil((swap - limit) / MIB)
        d.note("linux.resources.memory.swap", "applied", f"swap={d.options['swap']} MiB (swap minus limit)")


def memory_other(d: Draft) -> None:
    mem = _memory(d)
    if mem is not None:
        d.unsupported_if_set("linux.resources.memory", {
            "reservation": mem.reservation, "kernel": mem.kernel, "kernelTCP": mem.kernel_tcp,
            "swappiness": mem.swappiness, "disableOOMKiller": mem.disable_oom_killer})


def cpu_quota(d: Draft) -> None:
    """A quota of -1 (unlimited) sets no limit."""
    cpu = _cpu(d)
    if cpu is not None and cpu.quota is not None and cpu.quota > 0:
        limit = round(cpu.quota / (cpu.period or 100000), 2)
        d.options["cpulimit"] = min(max(limit, 0.01), 8192)
        d.note("linux.resources.cpu.quota", "applied", f"cpulimit={d.options['cpulimit']} (quota/period)")


def cpu_shares(d: Draft) -> None:
    cpu = _cpu(d)
    if cpu is not None and cpu.shares is not None:
        d.options["cpuunits"] = cpu_weight(cpu.shares)
        d.note("linux.resources.cpu.shares", "applied", f"cpuunits={d.options['cpuunits']} (as cgroup v2 weight)")


def cpu_cpus(d: Draft) -> None:
    cpu = _cpu(d)
    if cpu is not None and cpu.cpus:
        d.options["cores"] = max(1, count_cpus(cpu.cpus))
        d.note("linux.resources.cpu.cpus", "approximated", f"cores={d.options['cores']}: as many CPUs, "
               "but PVE chooses which")


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
        d.unsupported_if_set("linux.resources", {
            "blockIO": resources.block_io, "hugepageLimits": resources.hugepage_limits, "network": resources.network,
            "rdma": resources.rdma, "unified": resources.unified}, even_empty=False)
