"""Resources out of any range Proxmox (or the kernel) takes: refused as runc would fail on them, or brought into
PVE's range with a finding; and mapping errors that stay one line whatever value they name."""

from __future__ import annotations

import pytest

from pveoci import errors
from pveoci.lxc.mapping import map_spec
from tests.lxc.test_mapping import MIB, TOKEN, assert_finding, make, nowhere, plan


@pytest.mark.parametrize("limit", [-5, -2, -(2**63)])
def test_a_negative_memory_limit_other_than_minus_1_is_refused(limit: int) -> None:
    # 0.2 took it for "unlimited": runc writes it to memory.max, which refuses it.
    with pytest.raises(errors.MappingError) as caught:
        plan({"linux.resources.memory": {"limit": limit}})
    assert caught.value.message == (f"linux.resources.memory.limit: {limit} is not a number of bytes "
                                    "(-1 is unlimited, 0 unset)")


@pytest.mark.parametrize("memory", [{"limit": 256 * MIB, "swap": -2}, {"swap": -7}])
def test_a_negative_swap_other_than_minus_1_is_refused(memory: dict[str, int]) -> None:
    with pytest.raises(errors.MappingError, match=r"^linux\.resources\.memory\.swap: -\d+ is not a number of bytes"):
        plan({"linux.resources.memory": memory})


def test_a_large_memory_limit_is_rounded_up_exactly() -> None:
    # Whole MiB by integer arithmetic: 0.2 divided floats, and 2**62 + 1 bytes became 2**42 MiB, a byte short.
    result = plan({"linux.resources.memory": {"limit": 2**62 + 1, "swap": 2**62 + 1 + 2**20 + 1}})
    assert result.options["memory"] == 2**42 + 1
    assert result.options["swap"] == 2


@pytest.mark.parametrize("cpus", ["0-99999999999", "0-" + "9" * 5000, "8192", "0,8192-8193"])
def test_a_cpu_list_naming_cpus_no_linux_numbers_is_refused(cpus: str) -> None:
    # 0.2 asked for 10**11 cores (or raised ValueError for 5000 digits: exit 70).
    with pytest.raises(errors.MappingError) as caught:
        plan({"linux.resources.cpu": {"cpus": cpus}})
    message = caught.value.message
    assert message.startswith("linux.resources.cpu.cpus: '")
    assert message.endswith("names a CPU above 8191: Linux numbers at most 8192 CPUs (and PVE's cores at most 8192)")
    assert len(message) < 250


@pytest.mark.parametrize(("cpus", "cores"), [("0-8191", 8192), ("0-3,0-3", 4), ("2,2,2", 1), ("0-1, 1-2", 3)])
def test_cores_count_each_cpu_of_the_list_once(cpus: str, cores: int) -> None:
    assert plan({"linux.resources.cpu": {"cpus": cpus}}).options["cores"] == cores


@pytest.mark.parametrize("cpus", ["٣", "0-٣", "1-2-3", "0x3", "+1"])
def test_only_ascii_digits_make_a_cpu_list(cpus: str) -> None:
    with pytest.raises(errors.MappingError, match=r"is not a CPU list such as 0-3,6$"):
        plan({"linux.resources.cpu": {"cpus": cpus}})


def test_a_quota_above_pves_cpulimit_is_pves_most_with_a_finding() -> None:
    result = plan({"linux.resources.cpu": {"quota": 2**63 - 1, "period": 1}})
    assert result.options["cpulimit"] == 8192
    assert_finding(result, "linux.resources.cpu.quota", "approximated", "cpulimit=8192: quota/period is")


# --- messages stay one line, whatever value they name ---


def test_a_program_name_with_a_newline_is_named_on_one_line() -> None:
    spec = make({"process.args": ["sh\nrm -rf /"]})
    with pytest.raises(errors.MappingError) as caught:
        map_spec(spec, TOKEN, container_id="c", find_program=nowhere)
    assert caught.value.message.startswith("process.args[0]: 'sh\\nrm -rf /' is not an executable file")


def test_a_long_path_is_cut_short_in_the_message() -> None:
    spec = make({"process.args": ["app"], "process.env": ["PATH=" + "/x" * 10_000]})
    with pytest.raises(errors.MappingError) as caught:
        map_spec(spec, TOKEN, container_id="c", find_program=nowhere)
    assert len(caught.value.message) < 250
    assert "(PATH '/x/x/x" in caught.value.message


def test_an_unknown_stop_signal_with_a_newline_is_named_on_one_line() -> None:
    with pytest.raises(errors.MappingError) as caught:
        plan({"annotations": {"org.opencontainers.image.stopSignal": "TERM\nKILL"}})
    assert caught.value.message == 'annotations["org.opencontainers.image.stopSignal"]: unknown signal \'TERM\\nKILL\''

