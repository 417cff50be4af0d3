"""The OCI-to-LXC mapping, field by field: the PVE option each field becomes and the finding it reports."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pveoci import errors
from pveoci.lxc.mapping import Finding, Plan, Target, cpu_weight, map_spec
from pveoci.oci.defaults import default_spec
from pveoci.oci.runtime_spec import Spec, json_path
from pveoci.process import (
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_STRICTATIME,
    CapSets,
    DeviceNode,
    InitMount,
    Rlimit,
)
from tests.oci import RUNTIME_TOOLS_CONFIG

Doc = dict[str, Any]
MIB = 1024 * 1024
DROP = object()  # a change that removes the key
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOKEN = Target()                                 # an API token: no host paths, no devices
ROOT_PAM = Target(root_pam=True)
PRIVILEGED = Target(unprivileged=False)
# PVE's dns-name format for the hostname option, as a label rule.
PVE_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
HEX_ID = "3f9c0b6d1e2a4f5b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b"


def on_path(name: str, path: str | None, cwd: str) -> str | None:
    """Every program exists: a bare name is found in /bin."""
    return name if "/" in name else "/bin/" + name


def nowhere(name: str, path: str | None, cwd: str) -> str | None:
    return None


def runtime_tools() -> Doc:
    data: Doc = json.loads(RUNTIME_TOOLS_CONFIG.read_text(encoding="utf-8"))
    return data


def make(changes: dict[str, object] | None = None, *, base: Doc | None = None) -> Spec:
    """A Spec from `runc spec`'s document (or `base`) with changes at dotted JSON paths ("process.user.uid",
    "linux.namespaces.0"; one past a list's end appends); DROP removes the key or item."""
    doc = copy.deepcopy(base) if base is not None else default_spec()
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list) and value is DROP:
            del node[int(last)]
        elif isinstance(node, list) and int(last) == len(node):
            node.append(value)
        elif isinstance(node, list):
            node[int(last)] = value
        elif value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return Spec.model_validate(doc)


def plan(changes: dict[str, object] | None = None, target: Target = TOKEN, *, base: Doc | None = None,
         container_id: str = "web-1") -> Plan:
    return map_spec(make(changes, base=base), target, container_id=container_id, find_program=on_path)


def found(result: Plan, field: str) -> list[Finding]:
    return [f for f in result.findings if f.field == field]


def assert_finding(result: Plan, field: str, status: str, phrase: str) -> None:
    """Some finding for `field` has this status and says `phrase`."""
    matching = [f for f in found(result, field) if f.status == status and phrase in f.detail]
    assert matching, f"no {status} finding for {field} saying {phrase!r}: {found(result, field)}"


def is_pve_dns_name(host: str) -> bool:
    return len(host) <= 253 and all(PVE_LABEL.match(label) for label in host.split("."))


# --- process ---


def test_args_are_run_by_the_init_as_pid_1_with_the_program_found_on_path() -> None:
    result = plan({"process.args": ["nginx", "-g", "daemon off;"]})
    assert result.process.path == "/bin/nginx"
    assert result.process.args == ("nginx", "-g", "daemon off;")
    assert_finding(result, "process.args", "applied", "pveoci's init as PID 1: /bin/nginx")


def test_program_is_looked_up_with_the_spec_path_and_cwd() -> None:
    calls: list[tuple[str, str | None, str]] = []

    def record(name: str, path: str | None, cwd: str) -> str | None:
        calls.append((name, path, cwd))
        return "/opt/bin/app"

    spec = make({"process.args": ["app"], "process.env": ["PATH=/opt/bin:/bin"], "process.cwd": "/srv"})
    result = map_spec(spec, TOKEN, container_id="c", find_program=record)
    assert calls == [("app", "/opt/bin:/bin", "/srv")]
    assert result.process.path == "/opt/bin/app"


def test_program_not_found_is_a_mapping_error_naming_args_0_and_the_path() -> None:
    spec = make({"process.args": ["nginx"]})
    with pytest.raises(errors.MappingError) as caught:
        map_spec(spec, TOKEN, container_id="c", find_program=nowhere)
    assert caught.value.message == (f"process.args[0]: 'nginx' is not an executable file in the rootfs "
                                    f"(PATH {DEFAULT_PATH})")
    assert caught.value.exit_code == 19


def test_program_not_found_without_path_names_the_default_path() -> None:
    spec = make({"process.args": ["nginx"], "process.env": ["TERM=xterm"]})
    with pytest.raises(errors.MappingError, match=r"process\.args\[0\]: 'nginx' .*\(the default PATH\)"):
        map_spec(spec, TOKEN, container_id="c", find_program=nowhere)


def test_no_process_is_a_mapping_error() -> None:
    with pytest.raises(errors.MappingError, match=r"^process: required"):
        plan({"process": DROP})


def test_env_is_exactly_the_spec_env_in_order() -> None:
    env = ["Z=last", "PATH=/bin", "A=first", "GREETING=a=b", "EMPTY="]
    result = plan({"process.env": env})
    assert result.process.env == tuple(env)
    assert_finding(result, "process.env", "applied", "exactly these variables")


def test_no_env_in_the_spec_gives_an_empty_environment() -> None:
    assert plan({"process.env": DROP}).process.env == ()


def test_cwd_is_set_by_the_init() -> None:
    result = plan({"process.cwd": "/srv/app"})
    assert result.process.cwd == "/srv/app"
    assert_finding(result, "process.cwd", "applied", "pveoci's init")


def test_user_ids_groups_and_umask_are_set_by_the_init() -> None:
    result = plan({"process.user": {"uid": 1000, "gid": 1001, "additionalGids": [5, 100], "umask": 18}})
    process = result.process
    assert (process.uid, process.gid, process.additional_gids, process.umask) == (1000, 1001, (5, 100), 0o22)
    assert_finding(result, "process.user", "applied", "uid 1000, gid 1001, groups 5,100, umask 0022")


def test_no_user_runs_as_root_with_the_umask_left_alone() -> None:
    result = plan({"process.user": DROP})
    process = result.process
    assert (process.uid, process.gid, process.additional_gids, process.umask) == (0, 0, (), None)
    assert not found(result, "process.user")


def test_username_is_unsupported() -> None:
    assert_finding(plan({"process.user.username": "app"}), "process.user.username", "unsupported", "Windows")


def test_rlimits_are_set_by_the_init() -> None:
    result = plan({"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                                       {"type": "RLIMIT_NPROC", "soft": 512, "hard": 512}]})
    assert result.process.rlimits == (Rlimit(7, 1024, 4096), Rlimit(6, 512, 512))
    assert_finding(result, "process.rlimits", "applied", "set by pveoci's init")


def test_an_rlimit_the_kernel_has_not_is_an_error() -> None:
    """runtime-spec (config.md, rlimits): "The runtime MUST generate an error for any values which cannot be mapped
    to a relevant kernel interface" (runtime-tools' process_rlimits_fail gives RLIMIT_TEST). Lenient or strict: a
    limit the process counts on is never dropped with a warning."""
    with pytest.raises(errors.MappingError) as caught:
        plan({"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2},
                                  {"type": "RLIMIT_TEST", "soft": 1, "hard": 2}]})
    assert caught.value.message == "process.rlimits[1].type: 'RLIMIT_TEST' is not a Linux resource limit"


@pytest.mark.parametrize("value", [True, False])
def test_no_new_privileges_is_set_by_the_init(value: bool) -> None:
    result = plan({"process.noNewPrivileges": value})
    assert result.process.no_new_privileges is value
    assert_finding(result, "process.noNewPrivileges", "applied", "pveoci's init")


def test_no_new_privileges_absent_is_off_and_quiet() -> None:
    result = plan({"process.noNewPrivileges": DROP})
    assert result.process.no_new_privileges is False
    assert not found(result, "process.noNewPrivileges")


def test_oom_score_adj_is_set_by_the_init() -> None:
    result = plan({"process.oomScoreAdj": -500})
    assert result.process.oom_score_adj == -500
    assert_finding(result, "process.oomScoreAdj", "applied", "pveoci's init")
    assert plan({}).process.oom_score_adj is None


def test_terminal_is_the_console_and_approximated() -> None:
    result = plan({"process.terminal": True})
    assert result.options["cmode"] == "console"
    assert result.process.terminal is True
    assert_finding(result, "process.terminal", "approximated", "container console")


def test_no_terminal_still_uses_the_console_quietly() -> None:
    result = plan({"process.terminal": False})
    assert result.options["cmode"] == "console"
    assert result.process.terminal is False
    assert not found(result, "process.terminal")


def test_console_size_is_approximated() -> None:
    result = plan({"process.consoleSize": {"height": 24, "width": 80}})
    assert_finding(result, "process.consoleSize", "approximated", "whoever attaches")


def test_capabilities_become_the_inits_five_sets() -> None:
    """runc's starter spec: three capabilities in the bounding, effective and permitted sets, none inheritable or
    ambient (0.2: unsupported, the process kept all of LXC's set)."""
    three = (1 << 5) | (1 << 10) | (1 << 29)  # CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE
    result = plan({})
    assert result.process.capabilities == CapSets(bounding=three, effective=three, permitted=three)
    assert [f.status for f in found(result, "process.capabilities")] == ["applied"]
    assert plan({"process.capabilities": DROP}).process.capabilities is None  # none given: LXC's set, unchanged
    every = {kind: ["CAP_CHOWN", "CAP_SYS_ADMIN"] for kind in ("bounding", "ambient")}
    assert plan({"process.capabilities": every}).process.capabilities == CapSets(
        bounding=(1 << 0) | (1 << 21), ambient=(1 << 0) | (1 << 21))


def test_capabilities_lxc_withholds_are_named_as_unsupported() -> None:
    caps = {"bounding": ["CAP_KILL", "CAP_SYS_TIME", "CAP_SYS_MODULE"], "effective": ["CAP_SYS_TIME"]}
    result = plan({"process.capabilities": caps})
    assert_finding(result, "process.capabilities", "unsupported", "CAP_SYS_MODULE, CAP_SYS_TIME: LXC withholds them")
    assert_finding(result, "process.capabilities", "applied", "set by pveoci's init")


def test_a_name_that_is_no_capability_is_refused_naming_it() -> None:
    with pytest.raises(errors.MappingError, match=r"process.capabilities.bounding\[3\]: 'CAP_TEST' is not a Linux "
                                                  "capability"):
        plan({"process.capabilities.bounding.3": "CAP_TEST"})


@pytest.mark.parametrize(("key", "value"), [("apparmorProfile", "unconfined"), ("selinuxLabel", "system_u:r:t:s0")])
def test_lsm_labels_are_unsupported(key: str, value: str) -> None:
    assert_finding(plan({f"process.{key}": value}), f"process.{key}", "unsupported", "its own AppArmor profile")


@pytest.mark.parametrize(("key", "value"), [
    ("scheduler", {"policy": "SCHED_BATCH"}),
    ("ioPriority", {"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
    ("execCPUAffinity", {"initial": "0"}),
    ("commandLine", "app.exe"),
])
def test_scheduling_and_other_process_fields_are_unsupported(key: str, value: object) -> None:
    assert_finding(plan({f"process.{key}": value}), f"process.{key}", "unsupported", "no PVE container option")


# --- how pveoci's init is started: entrypoint or /sbin/init ---


@pytest.mark.parametrize("version", [(9, 1), (9, 4), (10, 0)])
def test_pve_with_entrypoint_leaves_the_entrypoint_to_the_caller(version: tuple[int, int]) -> None:
    result = plan({}, Target(pve_version=version))
    assert "entrypoint" not in result.options  # it carries the encoded process spec: the caller sets it
    assert result.legacy_init is False
    assert not found(result, "process")


@pytest.mark.parametrize("version", [(9, 0), (8, 4)])
def test_older_pve_starts_the_init_from_sbin_init(version: tuple[int, int]) -> None:
    result = plan({}, Target(pve_version=version))
    assert "entrypoint" not in result.options
    assert result.legacy_init is True
    assert_finding(result, "process", "approximated", f"PVE {version[0]}.{version[1]} has no entrypoint option "
                   "(9.1+): the template's /sbin/init is pveoci's init")


# --- hostname and the fixed options ---


def test_valid_hostname_is_kept() -> None:
    result = plan({"hostname": "web-1.example"})
    assert result.options["hostname"] == "web-1.example"
    assert_finding(result, "hostname", "applied", "hostname=web-1.example")


def test_invalid_hostname_is_made_dns_safe() -> None:
    result = plan({"hostname": "My_Host"})
    assert result.options["hostname"] == "my-host"
    assert_finding(result, "hostname", "approximated", "DNS names only: 'my-host'")


@pytest.mark.parametrize("hostname", [DROP, ""])
def test_no_hostname_comes_from_the_container_id(hostname: object) -> None:
    result = plan({"hostname": hostname}, container_id="Web_1+blue")
    assert result.options["hostname"] == "web-1-blue"
    assert_finding(result, "hostname", "applied", "from the container id")


def test_containerd_id_gives_a_valid_hostname() -> None:
    host = str(plan({"hostname": DROP}, container_id=HEX_ID).options["hostname"])
    assert host == HEX_ID[:63]
    assert is_pve_dns_name(host)


def test_domainname_is_unsupported() -> None:
    assert_finding(plan({"domainname": "example"}), "domainname", "unsupported", "NIS domain name")


@given(st.from_regex(r"[A-Za-z0-9_+.-]{1,100}", fullmatch=True))
def test_any_runc_container_id_gives_a_pve_dns_name(container_id: str) -> None:
    spec = make({"hostname": DROP})
    host = map_spec(spec, TOKEN, container_id=container_id, find_program=on_path).options["hostname"]
    assert isinstance(host, str)
    assert is_pve_dns_name(host), host


@given(st.text(max_size=300))
def test_any_spec_hostname_gives_a_pve_dns_name(hostname: str) -> None:
    host = plan({"hostname": hostname}).options["hostname"]
    assert isinstance(host, str)
    assert is_pve_dns_name(host), host


@given(st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3))
def test_a_valid_dns_name_is_kept_as_it_is(labels: list[str]) -> None:
    hostname = ".".join(labels)
    result = plan({"hostname": hostname})
    assert result.options["hostname"] == hostname
    assert found(result, "hostname")[0].status == "applied"


def test_fixed_options() -> None:
    options = plan({}, Target(bridge="vmbr1")).options
    assert options["ostype"] == "unmanaged"
    assert options["arch"] == "amd64"
    assert options["cmode"] == "console"
    assert options["onboot"] == 0
    assert options["net0"] == "name=eth0,bridge=vmbr1,ip=dhcp,ip6=auto"


def test_without_a_network_namespace_the_container_still_gets_its_own_nic() -> None:
    result = plan({"linux.namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]})
    assert result.options["net0"] == "name=eth0,bridge=vmbr0,ip=dhcp,ip6=auto"
    assert_finding(result, "linux.namespaces", "approximated",
                   "no network namespace in the spec: the container gets its own anyway, with eth0 on vmbr0")


def test_without_a_namespace_list_the_container_gets_a_nic() -> None:
    assert "net0" in plan({"linux.namespaces": DROP}).options


# --- root ---


def test_readonly_root_is_a_read_only_root_disk() -> None:
    result = plan({"root.readonly": True})
    assert result.options["rootfs"] == "local-lvm:4,ro=1"
    assert_finding(result, "root.readonly", "applied", "read-only")


def test_root_disk_uses_the_profile_storage_and_size() -> None:
    result = plan({"root.readonly": False}, Target(rootfs_storage="fast-zfs", disk_gib=7))
    assert result.options["rootfs"] == "fast-zfs:7"
    assert not found(result, "root.readonly")


# --- memory ---


def test_memory_limit_in_mib() -> None:
    result = plan({"linux.resources.memory": {"limit": 256 * MIB}})
    assert result.options["memory"] == 256
    assert result.options["swap"] == 256
    assert_finding(result, "linux.resources.memory.limit", "applied", "memory=256 MiB")
    assert_finding(result, "linux.resources.memory.swap", "approximated", "as much as memory")


@pytest.mark.parametrize(("limit", "mib", "status"), [
    (256 * MIB + 1, 257, "approximated"),   # rounded up
    (1 * MIB, 16, "approximated"),          # PVE's minimum
    (1000, 16, "approximated"),
    (16 * MIB, 16, "applied"),
])
def test_memory_limit_is_rounded_up_to_whole_mib_of_at_least_16(limit: int, mib: int, status: str) -> None:
    result = plan({"linux.resources.memory": {"limit": limit}})
    assert result.options["memory"] == mib
    assert_finding(result, "linux.resources.memory.limit", status, f"memory={mib} MiB")


def test_oci_swap_counts_memory_plus_swap() -> None:
    result = plan({"linux.resources.memory": {"limit": 256 * MIB, "swap": 768 * MIB}})
    assert (result.options["memory"], result.options["swap"]) == (256, 512)
    assert_finding(result, "linux.resources.memory.swap", "applied", "swap=512 MiB (swap minus limit)")


def test_swap_equal_to_the_limit_is_no_swap() -> None:
    result = plan({"linux.resources.memory": {"limit": 256 * MIB, "swap": 256 * MIB}})
    assert result.options["swap"] == 0


def test_swap_0_is_unset_as_in_runc() -> None:
    result = plan({"linux.resources.memory": {"limit": 256 * MIB, "swap": 0}})
    assert result.options["swap"] == 256
    assert_finding(result, "linux.resources.memory.swap", "approximated", "no swap limit in the spec")


def test_unlimited_swap_is_approximated_by_the_profile_swap() -> None:
    result = plan({"linux.resources.memory": {"limit": 256 * MIB, "swap": -1}}, Target(swap_mib=128))
    assert result.options["swap"] == 128
    assert_finding(result, "linux.resources.memory.swap", "approximated", "unlimited swap is not possible: 128 MiB")


def test_swap_below_the_limit_is_a_mapping_error() -> None:
    with pytest.raises(errors.MappingError, match=r"^linux\.resources\.memory\.swap: must be at least memory\.limit"):
        plan({"linux.resources.memory": {"limit": 256 * MIB, "swap": 128 * MIB}})


@pytest.mark.parametrize("memory", [DROP, {"limit": -1}, {"swap": 512 * MIB}])
def test_no_memory_limit_takes_the_target_defaults(memory: object) -> None:
    result = plan({"linux.resources.memory": memory}, Target(memory_mib=1024, swap_mib=256))
    assert (result.options["memory"], result.options["swap"]) == (1024, 256)
    assert_finding(result, "linux.resources.memory.limit", "approximated",
                   "no memory limit in the spec; PVE needs one: 1024 MiB (+256 MiB swap)")


@pytest.mark.parametrize(("key", "value"), [("reservation", 64 * MIB), ("kernel", MIB), ("kernelTCP", MIB),
                                            ("swappiness", 10), ("disableOOMKiller", True)])
def test_other_memory_fields_are_unsupported(key: str, value: object) -> None:
    result = plan({f"linux.resources.memory.{key}": value})
    assert_finding(result, f"linux.resources.memory.{key}", "unsupported", "no PVE container option")


# --- cpu, pids, device cgroup ---


@pytest.mark.parametrize(("cpu", "cpulimit"), [
    ({"quota": 50000, "period": 100000}, 0.5),
    ({"quota": 150000}, 1.5),                  # runc's default period: 100 ms
    ({"quota": 20000, "period": 10000}, 2.0),
    ({"quota": 100, "period": 100000}, 0.01),  # PVE's smallest step
])
def test_cpu_quota_over_period_is_cpulimit(cpu: Doc, cpulimit: float) -> None:
    result = plan({"linux.resources.cpu": cpu})
    assert result.options["cpulimit"] == cpulimit
    assert_finding(result, "linux.resources.cpu.quota", "applied", f"cpulimit={cpulimit} (quota/period)")


def test_unlimited_cpu_quota_sets_no_cpulimit() -> None:
    result = plan({"linux.resources.cpu": {"quota": -1, "period": 100000}})
    assert "cpulimit" not in result.options
    assert not found(result, "linux.resources.cpu.quota")


@pytest.mark.parametrize(("shares", "units"), [(1024, 39), (2, 1), (262144, 10000), (1, 1), (10**6, 10000)])
def test_cpu_shares_are_cpuunits_as_cgroup_v2_weight(shares: int, units: int) -> None:
    assert cpu_weight(shares) == units
    result = plan({"linux.resources.cpu": {"shares": shares}})
    assert result.options["cpuunits"] == units
    assert_finding(result, "linux.resources.cpu.shares", "applied", f"cpuunits={units} (as cgroup v2 weight)")


@pytest.mark.parametrize(("cpus", "cores"), [("0-3,6", 5), ("2", 1), ("0-1", 2), ("0, 2-3", 3)])
def test_cpuset_is_approximated_by_as_many_cores(cpus: str, cores: int) -> None:
    result = plan({"linux.resources.cpu": {"cpus": cpus}})
    assert result.options["cores"] == cores
    assert_finding(result, "linux.resources.cpu.cpus", "approximated", f"cores={cores}: as many CPUs, but PVE chooses")


@pytest.mark.parametrize("cpus", ["0-x", "a", "3-1"])
def test_bad_cpuset_is_a_mapping_error(cpus: str) -> None:
    with pytest.raises(errors.MappingError, match=r"^linux\.resources\.cpu\.cpus: .* is not a CPU list"):
        plan({"linux.resources.cpu": {"cpus": cpus}})


@pytest.mark.parametrize(("key", "value"), [("mems", "0"), ("realtimeRuntime", 1000), ("realtimePeriod", 1000),
                                            ("idle", 1), ("burst", 1000)])
def test_other_cpu_fields_are_unsupported(key: str, value: object) -> None:
    result = plan({f"linux.resources.cpu.{key}": value})
    assert_finding(result, f"linux.resources.cpu.{key}", "unsupported", "no PVE container option")


def test_pids_limit_is_unsupported() -> None:
    assert_finding(plan({"linux.resources.pids": {"limit": 100}}), "linux.resources.pids.limit", "unsupported",
                   "no option for pids.max")


def test_deny_all_device_cgroup_is_provided() -> None:
    assert_finding(plan({}), "linux.resources.devices", "provided", "LXC's own device allow-list")


def test_allowing_standard_devices_is_provided() -> None:
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
             {"allow": True, "type": "c", "major": 136, "access": "rwm"},
             {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]
    assert_finding(plan({"linux.resources.devices": rules}), "linux.resources.devices", "provided", "LXC's own")


@pytest.mark.parametrize("rule", [{"allow": True, "type": "c", "major": 189, "access": "rwm"},
                                  {"allow": True, "access": "rwm"}])
def test_allowing_other_devices_is_approximated(rule: Doc) -> None:
    result = plan({"linux.resources.devices": [{"allow": False, "access": "rwm"}, rule]})
    assert_finding(result, "linux.resources.devices", "approximated", "the spec's other allow rules do not apply")


@pytest.mark.parametrize(("key", "value"), [
    ("blockIO", {"weight": 100}), ("hugepageLimits", [{"pageSize": "2MB", "limit": 0}]),
    ("network", {"classID": 1}), ("rdma", {"mlx5_1": {"hcaHandles": 3}}), ("unified", {"io.weight": "10"}),
])
def test_other_resources_are_unsupported(key: str, value: object) -> None:
    assert_finding(plan({f"linux.resources.{key}": value}), f"linux.resources.{key}", "unsupported",
                   "no PVE container option")


# --- mounts ---


def bind(source: str, destination: str, *options: str, kind: str | None = "bind") -> Doc:
    mount: Doc = {"destination": destination, "source": source, "options": ["bind", *options]}
    if kind is not None:
        mount["type"] = kind
    return mount


def mounted(result: Plan) -> tuple[InitMount, ...]:
    """The init's mounts of the spec's `mounts` (not its masked and read-only paths)."""
    return tuple(m for m in result.process.mounts if m.kind in ("new", "lxc"))


def test_standard_mounts_are_lxcs_or_the_inits_in_the_specs_order() -> None:
    """runc's starter spec: LXC's /proc, /sys and /sys/fs/cgroup (taken again in order); the init mounts /dev (a new
    one), /dev/pts, /dev/shm and /dev/mqueue with the spec's options (LXC mounts no /dev/shm or /dev/mqueue)."""
    result = plan({})
    flags = MS_NOSUID | MS_NOEXEC | MS_NODEV
    assert mounted(result) == (
        InitMount("/proc", kind="lxc"),
        InitMount("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"),
        InitMount("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        InitMount("/dev/shm", "tmpfs", "shm", flags, "mode=1777,size=65536k"),
        InitMount("/dev/mqueue", "mqueue", "mqueue", flags, ""),
        InitMount("/sys", kind="lxc"),
        InitMount("/sys/fs/cgroup", kind="lxc"))
    statuses = [f.status for i in range(7) for f in found(result, f"mounts[{i}]")]
    assert statuses == ["provided", "applied", "applied", "applied", "applied", "provided", "provided"]
    assert not [k for k in result.options if k.startswith("mp")]


def test_an_engines_bind_at_dev_shm_becomes_a_tmpfs_of_the_containers_own() -> None:
    result = plan({"mounts.7": bind("/var/lib/containers/abc/userdata/shm", "/dev/shm", "nosuid")}, ROOT_PAM)
    assert mounted(result)[-1] == InitMount("/dev/shm", "tmpfs", "shm", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                                  "mode=1777,size=65536k")
    assert_finding(result, "mounts[7]", "approximated", "a tmpfs of the container's own at /dev/shm")
    assert "mp0" not in result.options


@pytest.mark.parametrize("destination", ["/", "/a/../b", "/a\nb"])
def test_a_mount_the_init_makes_needs_a_plain_absolute_destination(destination: str) -> None:
    with pytest.raises(errors.MappingError, match=r"mounts\[7\].destination"):
        plan({"mounts.7": {"destination": destination, "type": "tmpfs", "source": "tmpfs"}})


def test_a_mount_option_with_a_control_character_is_refused_and_a_comma_is_the_filesystems() -> None:
    with pytest.raises(errors.MappingError, match=r"mounts\[7\]: an option or the source has a control character"):
        plan({"mounts.7": {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1\n"]}})
    label = 'context="system_u:object_r:container_file_t:s0:c1,c2"'   # an SELinux label, quoted as mount(8) reads it
    result = plan({"mounts.7": {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": [label]}})
    assert mounted(result)[-1].data == label


def test_bind_mount_with_a_token_is_unsupported() -> None:
    result = plan({"mounts.7": bind("/srv/data", "/data")}, TOKEN)
    assert_finding(result, "mounts[7]", "unsupported", "bind mount of /srv/data needs mp[n] with a host path, "
                   "which only root@pam may set")
    assert "mp0" not in result.options


@pytest.mark.parametrize(("options", "value"), [((), "/srv/data,mp=/data"), (("ro",), "/srv/data,mp=/data,ro=1")])
def test_bind_mount_as_root_pam_is_a_mount_point(options: tuple[str, ...], value: str) -> None:
    result = plan({"mounts.7": bind("/srv/data", "/data", *options)}, ROOT_PAM)
    assert result.options["mp0"] == value
    assert_finding(result, "mounts[7]", "applied", "mp0: /srv/data on the node, at /data")


@pytest.mark.parametrize(("options", "said"), [(("rbind",), "not applied: 'rbind' (PVE binds the source alone"),
                                               (("bind", "nosuid", "rprivate"), "not applied: 'nosuid', 'rprivate'")])
def test_bind_mount_options_pve_does_not_apply_make_it_approximated(options: tuple[str, ...], said: str) -> None:
    mount = {"destination": "/data", "type": "bind", "source": "/srv/data", "options": list(options)}
    result = plan({"mounts.7": mount}, ROOT_PAM)
    assert result.options["mp0"] == "/srv/data,mp=/data"
    assert [f.status for f in found(result, "mounts[7]")] == ["approximated"]
    assert_finding(result, "mounts[7]", "approximated", f"mp0: /srv/data on the node, at /data; {said}")


def test_an_id_mapped_bind_mount_is_made_without_its_mapping() -> None:
    idmap = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    mount = {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["bind"],
             "uidMappings": idmap, "gidMappings": idmap}
    assert_finding(plan({"mounts.7": mount}, ROOT_PAM), "mounts[7]", "approximated", "without its id mapping")


def test_bind_mounts_are_numbered_in_order() -> None:
    mounts = [bind("/srv/a", "/a"), {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"},
              bind("/srv/b", "/b", kind="none")]
    result = plan({"mounts": mounts}, ROOT_PAM)
    assert (result.options["mp0"], result.options["mp1"]) == ("/srv/a,mp=/a", "/srv/b,mp=/b")


def test_typeless_bind_mount_is_a_bind_mount() -> None:
    result = plan({"mounts.7": bind("/srv/data", "/data", kind=None)}, ROOT_PAM)
    assert result.options["mp0"] == "/srv/data,mp=/data"


def test_bind_mount_of_a_relative_source_is_unsupported() -> None:
    result = plan({"mounts.7": bind("data", "/data")}, ROOT_PAM)
    assert_finding(result, "mounts[7]", "unsupported", "absolute source path")
    assert "mp0" not in result.options


def test_a_tmpfs_anywhere_is_mounted_by_the_init_with_its_options() -> None:
    mount = {"destination": "/data", "type": "tmpfs", "source": "tmpfs",
             "options": ["ro", "noexec", "exec", "rprivate", "tmpcopyup", "size=1m", "mode=700"]}
    result = plan({"mounts.7": mount})
    assert mounted(result)[-1] == InitMount("/data", "tmpfs", "tmpfs", MS_RDONLY, "size=1m,mode=700")
    assert_finding(result, "mounts[7]", "applied", "a tmpfs at /data, mounted by pveoci's init at the start")


def test_an_nfs_mount_is_unsupported() -> None:
    result = plan({"mounts.7": {"destination": "/data", "type": "nfs", "source": "srv:/x"}}, ROOT_PAM)
    assert_finding(result, "mounts[7]", "unsupported", "a nfs mount at /data: PVE mounts only volumes and host paths")


def test_rootless_sys_bind_is_provided_not_the_nodes_sys() -> None:
    result = plan({}, ROOT_PAM, base=default_spec(rootless=True))
    sys_index = next(i for i, m in enumerate(default_spec(rootless=True)["mounts"]) if m["destination"] == "/sys")
    assert_finding(result, f"mounts[{sys_index}]", "provided", "LXC mounts /sys itself")
    assert "mp0" not in result.options


# --- namespaces and ids ---


def test_standard_namespaces_are_provided() -> None:
    result = plan({})
    for i, kind in enumerate(("pid", "network", "ipc", "uts", "mount", "cgroup")):
        assert_finding(result, f"linux.namespaces[{i}]", "provided", f"its own {kind} namespace")


def test_five_namespaces_without_cgroup_are_approximated() -> None:
    result = plan({"linux.namespaces.5": DROP})
    assert_finding(result, "linux.namespaces", "approximated", "no cgroup namespace in the spec")


def test_joining_a_namespace_is_unsupported_but_an_engines_network_becomes_the_profiles() -> None:
    result = plan({"linux.namespaces.2": {"type": "ipc", "path": "/proc/7/ns/ipc"}})
    assert_finding(result, "linux.namespaces[2]", "unsupported", "joining an existing ipc namespace (/proc/7/ns/ipc)")
    engines = plan({"linux.namespaces.1": {"type": "network", "path": "/run/netns/netns-1"}})  # podman's netavark
    assert_finding(engines, "linux.namespaces[1]", "approximated", "the network namespace /run/netns/netns-1 is of "
                   "this machine; the container gets its own on the node instead, with eth0 on vmbr0")
    assert engines.options["net0"] == plan({}).options["net0"]


def test_time_namespace_is_unsupported() -> None:
    assert_finding(plan({"linux.namespaces.6": {"type": "time"}}), "linux.namespaces[6]", "unsupported",
                   "time namespaces")


@pytest.mark.parametrize("target", [TOKEN, PRIVILEGED])
def test_user_namespace_makes_an_unprivileged_container(target: Target) -> None:
    result = plan({"linux.namespaces.6": {"type": "user"}}, target)
    assert result.options["unprivileged"] == 1
    assert_finding(result, "linux.namespaces[6]", "applied", "an unprivileged container")


def test_no_user_namespace_with_a_privileged_profile_is_privileged() -> None:
    result = plan({}, PRIVILEGED)
    assert result.options["unprivileged"] == 0
    assert_finding(result, "linux.namespaces", "applied", "a privileged container")


def test_no_user_namespace_with_an_unprivileged_profile_is_approximated() -> None:
    result = plan({})
    assert result.options["unprivileged"] == 1
    assert_finding(result, "linux.namespaces", "approximated", "the profile makes unprivileged containers")


PVE_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def test_pve_standard_id_mapping_is_applied() -> None:
    result = plan({"linux.namespaces.6": {"type": "user"}, "linux.uidMappings": PVE_MAP, "linux.gidMappings": PVE_MAP})
    assert_finding(result, "linux.uidMappings", "applied", "PVE's standard mapping")
    assert_finding(result, "linux.gidMappings", "applied", "PVE's standard mapping")


@pytest.mark.parametrize("mapping", [[{"containerID": 0, "hostID": 1000, "size": 1}],
                                     [{"containerID": 0, "hostID": 200000, "size": 65536}],
                                     [*PVE_MAP, {"containerID": 65536, "hostID": 300000, "size": 1}]])
def test_other_id_mappings_are_unsupported(mapping: list[Doc]) -> None:
    result = plan({"linux.namespaces.6": {"type": "user"}, "linux.uidMappings": mapping, "linux.gidMappings": mapping})
    assert_finding(result, "linux.uidMappings", "unsupported", "raw lxc.idmap keys (root@pam only)")
    assert_finding(result, "linux.gidMappings", "unsupported", "raw lxc.idmap keys")


def test_standard_mapping_in_a_privileged_container_is_unsupported() -> None:
    result = plan({"linux.uidMappings": PVE_MAP, "linux.gidMappings": PVE_MAP}, PRIVILEGED)
    assert_finding(result, "linux.uidMappings", "unsupported", "PVE maps 0-65535 to 100000-165535")


# --- devices ---


NULL = {"path": "/dev/null", "type": "c", "major": 1, "minor": 3}
FUSE = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}


def test_standard_device_is_provided() -> None:
    result = plan({"linux.devices": [NULL]}, ROOT_PAM)
    assert_finding(result, "linux.devices[0]", "provided", "LXC creates /dev/null")
    assert "dev0" not in result.options


def test_other_device_with_a_token_is_a_node_the_init_makes() -> None:
    """A token cannot pass the node's device through (dev[n]): the init makes the node (0.2: unsupported)."""
    result = plan({"linux.devices": [FUSE, {"path": "/dev/q", "type": "p", "fileMode": 0o640, "uid": 5}]}, TOKEN)
    assert_finding(result, "linux.devices[0]", "approximated", "the node /dev/fuse (c 10:229) made by pveoci's init")
    assert_finding(result, "linux.devices[1]", "applied", "a FIFO at /dev/q")
    assert result.process.devices == (DeviceNode("/dev/fuse", "c", 10, 229, 0o666),
                                      DeviceNode("/dev/q", "p", 0, 0, 0o640, 5, 0))
    assert "dev0" not in result.options
    with pytest.raises(errors.MappingError, match=r"linux.devices\[0\].path"):
        plan({"linux.devices": [{**FUSE, "path": "/dev/../etc/x"}]}, TOKEN)


def test_other_devices_as_root_pam_are_passed_through() -> None:
    tun = {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200}
    result = plan({"linux.devices": [FUSE, NULL, tun]}, ROOT_PAM)
    assert result.options["dev0"] == "/dev/fuse,mode=0666,uid=0,gid=0"
    assert result.options["dev1"] == "/dev/net/tun"
    assert_finding(result, "linux.devices[0]", "applied", "dev0")
    assert_finding(result, "linux.devices[2]", "applied", "dev1")


# --- security and other linux fields ---


@pytest.mark.parametrize(("field", "change", "status", "phrase"), [
    ("linux.sysctl", {"linux.sysctl": {"net.core.somaxconn": "1024"}}, "unsupported", "raw lxc.sysctl keys"),
    ("linux.seccomp", {"linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}, "unsupported",
     "PVE's own seccomp profile"),
    ("linux.maskedPaths", {}, "applied", "hidden by pveoci's init at the start"),
    ("linux.readonlyPaths", {}, "applied", "made read-only by pveoci's init at the start"),
    ("linux.rootfsPropagation", {"linux.rootfsPropagation": "private"}, "unsupported", "no PVE container option"),
    ("linux.mountLabel", {"linux.mountLabel": "system_u:object_r:t:s0"}, "unsupported", "no PVE container option"),
    ("linux.personality", {"linux.personality": {"domain": "LINUX32"}}, "unsupported", "no PVE container option"),
    ("linux.netDevices", {"linux.netDevices": {"eth1": {}}}, "unsupported", "no PVE container option"),
    ("linux.cgroupsPath", {"linux.cgroupsPath": "/pveoci/web"}, "approximated", "places the container's cgroup"),
])
def test_linux_fields(field: str, change: dict[str, object], status: str, phrase: str) -> None:
    assert_finding(plan(change), field, status, phrase)


def test_readonly_paths_alone_are_reported_as_readonly_paths() -> None:
    result = plan({"linux.maskedPaths": DROP})
    assert not found(result, "linux.maskedPaths")
    assert_finding(result, "linux.readonlyPaths", "applied", "made read-only")
    assert {m.kind for m in result.process.mounts} == {"new", "lxc", "rdonly"}


def test_masked_and_read_only_paths_come_after_the_mounts_in_their_order() -> None:
    result = plan({"linux.maskedPaths": ["/proc/kcore", "/sys/firmware"], "linux.readonlyPaths": ["/proc/bus"]})
    hidden = (InitMount("/proc/kcore", kind="mask"), InitMount("/sys/firmware", kind="mask"))
    assert result.process.mounts[-3:] == (*hidden, InitMount("/proc/bus", kind="rdonly"))
    for hostile in ("/a/../b", "/a\nb"):
        with pytest.raises(errors.MappingError, match=r"linux.maskedPaths\[0\]: .* is not an absolute path"):
            plan({"linux.maskedPaths": [hostile]})


# --- hooks ---


HOOK = [{"path": "/usr/bin/true"}]


@pytest.mark.parametrize("name", ["prestart", "createRuntime", "poststart", "poststop"])
def test_runtime_namespace_hooks_run_on_the_workstation(name: str) -> None:
    assert_finding(plan({f"hooks.{name}": HOOK}), f"hooks.{name}", "applied", "run by pveoci on this machine")


@pytest.mark.parametrize("name", ["createContainer", "startContainer"])
def test_container_namespace_hooks_are_unsupported(name: str) -> None:
    assert_finding(plan({f"hooks.{name}": HOOK}), f"hooks.{name}", "unsupported",
                   "cannot run inside the container's namespaces")


# --- annotations ---


def test_annotations_are_kept() -> None:
    result = plan({"annotations": {"com.example.owner": "team-a"}})
    assert result.annotations == {"com.example.owner": "team-a"}
    assert result.stop_signal == "SIGTERM"
    assert found(result, "annotations") == [Finding("annotations", "applied", "kept in the container's ownership "
                                                    "marker")]


def test_no_annotations_stop_with_sigterm_quietly() -> None:
    result = plan({})
    assert (result.annotations, result.stop_signal, found(result, "annotations")) == ({}, "SIGTERM", [])
    assert result.process.stop_signal == 15


@pytest.mark.parametrize("value", ["SIGQUIT", "QUIT", "3", "sigquit", " quit "])
def test_stop_signal_annotation(value: str) -> None:
    result = plan({"annotations": {"org.opencontainers.image.stopSignal": value}})
    assert (result.stop_signal, result.process.stop_signal) == ("SIGQUIT", 3)
    assert_finding(result, "annotations", "applied", "stop signal SIGQUIT")


@pytest.mark.parametrize("value", ["NOPE", "0", "99", ""])
def test_unknown_stop_signal_is_a_mapping_error(value: str) -> None:
    with pytest.raises(errors.MappingError,
                       match=r'^annotations\["org\.opencontainers\.image\.stopSignal"\]: unknown signal'):
        plan({"annotations": {"org.opencontainers.image.stopSignal": value}})


# --- realistic bundles: strict refuses, lenient warns ---


def resolves(doc: Doc, path: str) -> bool:
    """The JSON path (a.b[2].c) names a value in the document."""
    node: Any = doc
    for name, index in re.findall(r"([A-Za-z]+)|\[(\d+)\]", path):
        try:
            node = node[name] if name else node[int(index)]
        except (KeyError, IndexError, TypeError):
            return False
    return True


RUNTIME_TOOLS_UNSUPPORTED = ["process.apparmorProfile", "mounts[7]",
                             "linux.resources.pids.limit", "linux.sysctl", "linux.seccomp", "linux.rootfsPropagation"]


def test_strict_refuses_naming_every_unsupported_field() -> None:
    unsupported = RUNTIME_TOOLS_UNSUPPORTED
    result = plan(base=runtime_tools())
    assert sorted(f.field for f in result.unsupported) == sorted(unsupported)
    with pytest.raises(errors.MappingError) as caught:
        result.check(strict=True)
    message = caught.value.message
    assert message.startswith("--strict: this bundle asks for what Proxmox cannot do: ")
    for name in unsupported:
        assert name in message
    assert caught.value.exit_code == 19


@pytest.mark.parametrize(("base", "statuses"), [(default_spec(), {"approximated"}),
                                                (runtime_tools(), {"unsupported", "approximated"})],
                         ids=["runc-spec", "runtime-tools"])
def test_lenient_maps_realistic_bundles_with_warnings(base: Doc, statuses: set[str]) -> None:
    result = plan(base=base)
    result.check(strict=False)
    assert {f.status for f in result.warnings()} == statuses


def test_runcs_starter_spec_passes_strict() -> None:
    """Its capabilities and mounts are applied (0.2: --strict refused it for process.capabilities)."""
    plan(base=default_spec()).check(strict=True)


def test_strict_passes_a_bundle_with_nothing_unsupported() -> None:
    plan({"process.capabilities": DROP}).check(strict=True)


def test_runtime_tools_config_maps_field_by_field() -> None:
    result = plan(base=runtime_tools(), target=ROOT_PAM)
    options = result.options
    assert options["hostname"] == "runtime-tools"
    assert (options["memory"], options["swap"], options["cpulimit"], options["cpuunits"], options["cores"]) == (
        512, 512, 0.5, 39, 2)
    assert options["rootfs"] == "local-lvm:4"
    assert options["mp0"] == "/srv/data,mp=/data"
    assert options["dev0"] == "/dev/fuse,mode=0666,uid=0,gid=0"
    assert result.stop_signal == "SIGQUIT"
    assert result.process.path == "/bin/sh"
    assert result.process.env[-1] == "GREETING=a=b"
    process = result.process
    assert (process.uid, process.gid, process.additional_gids, process.umask) == (1000, 1000, (5, 100), 0o22)
    assert result.process.rlimits == (Rlimit(7, 1024, 4096), Rlimit(6, 512, 512))
    assert sorted(f.field for f in result.unsupported) == sorted(
        ["process.apparmorProfile", "linux.resources.pids.limit", "linux.sysctl",
         "linux.seccomp", "linux.rootfsPropagation"])


@pytest.mark.parametrize("target", [TOKEN, ROOT_PAM, Target(pve_version=(9, 0))])
def test_every_finding_names_a_field_of_the_spec(target: Target) -> None:
    doc = runtime_tools()
    result = plan(base=doc, target=target)
    assert result.findings
    for finding in result.findings:
        assert resolves(doc, finding.field), finding
        assert finding.detail


def test_values_the_init_cannot_carry_are_refused_at_plan_time() -> None:
    with pytest.raises(errors.MappingError, match=r"^process: oomScoreAdj out of range: 5000$"):
        plan({"process.oomScoreAdj": 5000})



def test_a_soft_limit_above_the_hard_limit_is_refused_at_plan_time() -> None:
    with pytest.raises(errors.MappingError) as caught:
        plan({"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]})
    assert caught.value.message == "process: rlimit RLIMIT_NOFILE: soft limit 10 is above the hard limit 5"


def test_each_problem_of_the_process_is_named_on_one_line() -> None:
    with pytest.raises(errors.MappingError) as caught:
        plan({"process.oomScoreAdj": -1001, "process.user": {"uid": 2**32 - 1, "gid": 0}})
    assert caught.value.message == ("process: user or group id out of range: 4294967295; "
                                    "process: oomScoreAdj out of range: -1001")


# --- the mapping as a whole: no value of a full config goes unreported, none is reported twice ---

# Values read without a finding of their own: the spec's version, where the rootfs is (it becomes the
# template), settings that ask for nothing (terminal and readonly false), and the quota's period (in
# the quota's finding).
UNREPORTED = {"ociVersion", "root.path", "root.readonly", "process.terminal", "linux.resources.cpu.period"}


def leaves(node: object, loc: tuple[int | str, ...] = ()) -> list[str]:
    """The JSON path of every scalar in the document."""
    if isinstance(node, dict):
        return [path for key, value in node.items() for path in leaves(value, (*loc, key))]
    if isinstance(node, list):
        return [path for i, value in enumerate(node) for path in leaves(value, (*loc, i))]
    return [json_path(loc)]


def covers(field: str, path: str) -> bool:
    return path == field or path.startswith((f"{field}.", f"{field}["))


@pytest.mark.parametrize("target", [TOKEN, ROOT_PAM, Target(pve_version=(9, 0))], ids=["token", "root-pam", "pve-9.0"])
def test_every_value_of_the_runtime_tools_config_is_reported(target: Target) -> None:
    doc = runtime_tools()
    fields = [f.field for f in plan(base=doc, target=target).findings]
    unreported = [path for path in leaves(doc) if not any(covers(field, path) for field in fields)]
    assert set(unreported) <= UNREPORTED, unreported


@pytest.mark.parametrize("target", [TOKEN, ROOT_PAM, Target(pve_version=(9, 0))], ids=["token", "root-pam", "pve-9.0"])
def test_each_field_of_the_runtime_tools_config_gets_exactly_one_finding(target: Target) -> None:
    result = plan(base=runtime_tools(), target=target)
    twice = {f.field for f in result.findings if len(found(result, f.field)) > 1}
    # Except the namespaces as a whole: one finding for each namespace the spec leaves out, one for the user one.
    assert twice == {"linux.namespaces"}
    assert [f.detail[:6] for f in found(result, "linux.namespaces")] == ["no cgr", "no use"]
