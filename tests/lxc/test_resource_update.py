"""runc's update mapped onto PVE options: create's conversions, runc 1.1's "0 leaves it as it is", the CPU limit
lifted by a quota of -1, and every field Proxmox has no option for refused by name before anything changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pveoci import errors
from pveoci.lxc.resource_update import ResourceUpdate, map_update
from pveoci.oci.runtime_spec import parse_resources
from tests.lxc.test_mapping import MIB, plan

Doc = dict[str, Any]


def nothing_read() -> Mapping[str, Any]:
    raise AssertionError("the container's config was read, though no field needed it")


def update(doc: Doc, current: Doc | None = None) -> ResourceUpdate:
    return map_update(parse_resources(doc), (lambda: current) if current is not None else nothing_read)


def refused(doc: Doc) -> str:
    with pytest.raises(errors.Unsupported) as caught:
        update(doc)
    return caught.value.message


# --- the same options as a create ---


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_a_memory_limit_becomes_the_option_a_create_makes_of_it(limit: int) -> None:
    made = plan({"linux.resources.memory": {"limit": limit}})
    change = update({"memory": {"limit": limit}})
    assert change.options == {"memory": made.options["memory"]}
    assert change.findings[0] == next(f for f in made.findings if f.field == "linux.resources.memory.limit")


@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=0, max_value=2**40),
       st.integers(min_value=1, max_value=10**6))
def test_cpu_limits_become_the_options_a_create_makes_of_them(quota: int, shares: int, period: int) -> None:
    cpu = {"quota": quota, "period": period, "shares": shares or 1, "cpus": f"0-{quota % 64}"}
    made = plan({"linux.resources.cpu": cpu}).options
    assert update({"cpu": cpu}).options == {key: made[key] for key in ("cpulimit", "cpuunits", "cores")}


def test_memory_and_swap() -> None:
    change = update({"memory": {"limit": 256 * MIB, "swap": 768 * MIB}})
    assert change.options == {"memory": 256, "swap": 512}
    assert change.request() == {"memory": 256, "swap": 512}


def test_a_swap_without_a_limit_counts_from_the_containers_memory() -> None:
    assert update({"memory": {"swap": 768 * MIB}}, current={"memory": 512}).options == {"swap": 256}


def test_a_swap_below_the_containers_memory_is_refused_as_a_creates() -> None:
    with pytest.raises(errors.MappingError, match=r"^linux\.resources\.memory\.swap: must be at least memory\.limit"):
        update({"memory": {"swap": 128 * MIB}}, current={"memory": 512})


def test_a_limit_alone_leaves_swap_as_it_is() -> None:
    # A create gives swap as much as memory; an update, as runc's on cgroup v2, does not touch it.
    assert update({"memory": {"limit": 64 * MIB}}).options == {"memory": 64}


def test_a_quota_alone_is_a_share_of_pves_period() -> None:
    assert update({"cpu": {"quota": 150000}}).options == {"cpulimit": 1.5}


@pytest.mark.parametrize("quota", [-1, -5])
def test_a_negative_quota_lifts_the_cpu_limit(quota: int) -> None:
    change = update({"cpu": {"quota": quota, "period": 100000}})
    assert (change.options, change.delete) == ({}, ["cpulimit"])
    assert change.request() == {"delete": "cpulimit"}


def test_a_period_alone_is_refused() -> None:
    with pytest.raises(errors.MappingError) as caught:
        update({"cpu": {"period": 50000}})
    assert caught.value.message == ("linux.resources.cpu.period (--cpu-period): Proxmox VE's cpulimit is "
                                    "quota/period at a fixed period: give the quota with it")


# --- runc 1.1: 0 leaves a limit as it is ---


@pytest.mark.parametrize("doc", [
    {}, {"memory": {"limit": 0, "swap": 0, "reservation": 0, "kernel": 0, "kernelTCP": 0}},
    {"cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "", "mems": ""}},
    {"blockIO": {"weight": 0}, "pids": {"limit": 0}},
])
def test_zeros_change_nothing(doc: Doc) -> None:
    change = update(doc)
    assert not change.changes
    assert change.request() == {}


# --- refused, or left as runc leaves it ---


@pytest.mark.parametrize(("doc", "named"), [
    ({"memory": {"reservation": MIB}}, "linux.resources.memory.reservation (--memory-reservation)"),
    ({"memory": {"checkBeforeUpdate": True}}, "linux.resources.memory.checkBeforeUpdate"),
    ({"cpu": {"mems": "0"}}, "linux.resources.cpu.mems (--cpuset-mems)"),
    ({"cpu": {"realtimeRuntime": 950000}}, "linux.resources.cpu.realtimeRuntime (--cpu-rt-runtime)"),
    ({"cpu": {"realtimePeriod": 1000000}}, "linux.resources.cpu.realtimePeriod (--cpu-rt-period)"),
    ({"cpu": {"idle": 1}}, "linux.resources.cpu.idle"),
    ({"cpu": {"burst": 1000}}, "linux.resources.cpu.burst"),
    ({"pids": {"limit": 100}}, "linux.resources.pids.limit (--pids-limit)"),
    ({"pids": {"limit": -1}}, "linux.resources.pids.limit (--pids-limit)"),
    ({"blockIO": {"weight": 500}}, "linux.resources.blockIO.weight (--blkio-weight)"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}},
     "linux.resources.blockIO.throttleReadBpsDevice"),
    ({"unified": {"memory.high": "1G"}}, "linux.resources.unified"),
])
def test_what_proxmox_has_no_option_for_is_refused_by_name(doc: Doc, named: str) -> None:
    assert refused(doc) == f"{named}: Proxmox VE has no container option for it; nothing was changed"


def test_every_refused_field_is_named_at_once() -> None:
    message = refused({"memory": {"limit": 256 * MIB, "reservation": MIB}, "pids": {"limit": 9}})
    assert message == ("linux.resources.memory.reservation (--memory-reservation), linux.resources.pids.limit "
                       "(--pids-limit): Proxmox VE has no container option for them; nothing was changed")


@pytest.mark.parametrize(("name", "flag", "what"), [("limit", "--memory", "a memory limit"),
                                                    ("swap", "--memory-swap", "a swap size")])
def test_unlimited_memory_or_swap_is_refused(name: str, flag: str, what: str) -> None:
    with pytest.raises(errors.MappingError) as caught:
        update({"memory": {name: -1}})
    assert caught.value.message == (f"linux.resources.memory.{name} ({flag}): -1 (unlimited) is not possible: "
                                    f"Proxmox VE needs {what}")


@pytest.mark.parametrize("doc", [{"memory": {"limit": -2}}, {"memory": {"swap": -(2**63)}}])
def test_a_negative_size_other_than_minus_1_is_refused_as_a_creates(doc: Doc) -> None:
    with pytest.raises(errors.MappingError, match=r"^linux\.resources\.memory\.(limit|swap): -\d+ is not a number"):
        update(doc)


@pytest.mark.parametrize("cpus", ["0-8192", "x", "3-1"])
def test_a_cpu_list_a_create_refuses_is_refused(cpus: str) -> None:
    with pytest.raises(errors.MappingError, match=r"^linux\.resources\.cpu\.cpus: "):
        update({"cpu": {"cpus": cpus}})


def test_what_no_runc_update_changes_is_left_with_a_finding() -> None:
    # What containerd's CRI and podman send with every update: the whole linux.resources, devices included.
    change = update({"devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 64 * MIB, "kernel": MIB,
                                                                               "swappiness": 0}})
    assert change.options == {"memory": 64}
    left = {f.field: (f.status, f.detail) for f in change.findings if f.status != "applied"}
    assert left == {"linux.resources.devices": ("unsupported", "not changed by an update (nor by runc's)"),
                    "linux.resources.memory.kernel": ("unsupported", "ignored, as runc ignores kernel memory settings"),
                    "linux.resources.memory.swappiness": ("unsupported", "not changed by an update (nor by runc's)")}


def test_the_json_says_what_was_asked_and_how_each_field_fared() -> None:
    assert update({"cpu": {"quota": -1, "cpus": "0-1"}}).to_json() == {
        "options": {"cores": 2}, "delete": ["cpulimit"],
        "findings": [{"field": "linux.resources.cpu.quota", "status": "applied", "detail": "no cpulimit (unlimited)"},
                     {"field": "linux.resources.cpu.cpus", "status": "approximated",
                      "detail": "cores=2: as many CPUs, but PVE chooses which"}]}
