"""The config.json model: the schema's documents load and round-trip, and every invalid value is one exact line."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pveoci.errors import BundleError
from pveoci.oci import Spec
from pveoci.oci.defaults import default_spec
from pveoci.oci.runtime_spec import Process, parse_spec
from tests.oci import RUNTIME_TOOLS_CONFIG, config_schema

Doc = dict[str, Any]


def runtime_tools() -> Doc:
    data: Doc = json.loads(RUNTIME_TOOLS_CONFIG.read_text(encoding="utf-8"))
    return data


def message(doc: object) -> str:
    with pytest.raises(BundleError) as caught:
        parse_spec(doc)
    assert "\n" not in caught.value.message
    return caught.value.message


# --- the schema and the model agree on realistic documents ---


@pytest.mark.parametrize("rootless", [False, True], ids=["default", "rootless"])
def test_default_spec_is_valid_under_the_schema(rootless: bool) -> None:
    config_schema().validate(default_spec(rootless=rootless))


def test_schema_refs_are_resolved() -> None:
    doc = default_spec()
    doc["linux"]["namespaces"][0]["type"] = "bogus"  # only defs-linux.json knows the enum
    assert not config_schema().is_valid(doc)


def test_runtime_tools_config_is_valid_under_the_schema_and_loads() -> None:
    doc = runtime_tools()
    config_schema().validate(doc)
    spec = parse_spec(doc)
    assert spec.process is not None
    assert spec.linux is not None
    assert spec.linux.seccomp is not None
    assert spec.process.user is not None
    assert spec.process.user.additional_gids == [5, 100]
    assert spec.process.env is not None
    assert "GREETING=a=b" in spec.process.env
    assert [ns.type for ns in spec.linux.namespaces or []] == ["pid", "network", "ipc", "uts", "mount"]
    assert spec.linux.seccomp.default_action == "SCMP_ACT_ERRNO"
    assert spec.linux.seccomp.syscalls is not None
    assert len(spec.linux.seccomp.syscalls) == 4
    assert spec.linux.resources is not None
    assert spec.linux.resources.devices is not None
    assert spec.linux.resources.devices[0].allow is False
    assert spec.linux.sysctl == {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "1024"}
    assert spec.annotations is not None
    assert spec.annotations["org.opencontainers.image.stopSignal"] == "SIGQUIT"


@pytest.mark.parametrize("doc", [default_spec(), default_spec(["/hello"], rootless=True), runtime_tools()],
                         ids=["default", "rootless", "runtime-tools"])
def test_round_trip_keeps_every_field(doc: Doc) -> None:
    dumped = Spec.model_validate(doc).model_dump(by_alias=True, exclude_none=True)
    assert dumped == doc
    assert json.dumps(dumped) == json.dumps(doc)  # the order of the keys too


def test_fields_are_snake_case_and_also_accepted_by_name() -> None:
    process = Process.model_validate({"args": ["sh"], "cwd": "/", "no_new_privileges": True, "oomScoreAdj": -5})
    assert process.no_new_privileges is True
    assert process.oom_score_adj == -5
    assert process.model_dump(by_alias=True, exclude_none=True) == {
        "args": ["sh"], "cwd": "/", "noNewPrivileges": True, "oomScoreAdj": -5}


def test_unknown_properties_are_ignored() -> None:
    doc = default_spec()
    noisy = copy.deepcopy(doc)
    noisy["vendorExtension"] = {"anything": [1, 2]}
    noisy["windows"] = {"layerFolders": ["C:\\layers"]}
    noisy["process"]["futureKnob"] = True
    noisy["mounts"][0]["x-flag"] = "yes"
    noisy["linux"]["resources"]["devices"][0]["comment"] = "deny all"
    noisy["linux"]["namespaces"][0]["inheritFrom"] = 1
    assert parse_spec(noisy).model_dump(by_alias=True, exclude_none=True) == doc


def test_platform_sections_and_plain_fields_load() -> None:
    doc = default_spec()
    doc["linux"]["timeOffsets"] = {"boottime": {"secs": 10, "nanosecs": 5}}
    doc["linux"]["netDevices"] = {"eth1": {"name": "net1"}}
    doc["linux"]["resources"]["unified"] = {"memory.high": "max"}
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 4}
    doc["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    doc["process"]["execCPUAffinity"] = {"initial": "0-3,7", "final": "4"}
    config_schema().validate(doc)
    spec = parse_spec(doc)
    assert spec.process is not None
    assert spec.process.io_priority is not None
    assert spec.process.io_priority.class_ == "IOPRIO_CLASS_IDLE"
    assert spec.model_dump(by_alias=True, exclude_none=True) == doc


# --- each rule: one exact line naming the JSON path ---


def _walk(doc: Doc, path: str) -> tuple[Any, Any]:
    """The container holding the last key of a dotted path (numbers index arrays), and that key."""
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    target: Any = doc
    for key in keys[:-1]:
        target = target[key]
    return target, keys[-1]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        target, key = _walk(doc, path)
        target[key] = value

    return edit


def _delete(path: str) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        target, key = _walk(doc, path)
        del target[key]

    return edit


def _append(path: str, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        target, key = _walk(doc, path)
        target[key].append(value)

    return edit


NAMESPACES = "'mount', 'pid', 'network', 'uts', 'ipc', 'user', 'cgroup' or 'time'"

RULES: list[tuple[str, Callable[[Doc], None], str]] = [
    ("ociVersion required", _delete("ociVersion"), "ociVersion: required"),
    ("ociVersion semver", _set("ociVersion", "v1"), "ociVersion: must be a SemVer 2.0.0 version such as 1.3.0, "
                                                     "not 'v1'"),
    ("args empty", _set("process.args", []), "process.args: must not be empty"),
    ("args missing", _delete("process.args"), "process.args: required"),
    ("cwd relative", _set("process.cwd", "home/app"), "process.cwd: must be an absolute path, not 'home/app'"),
    ("cwd missing", _delete("process.cwd"), "process.cwd: required"),
    ("env without =", _append("process.env", "DEBUG"), "process.env[2]: must be KEY=VALUE with a non-empty KEY"),
    ("env empty key", _append("process.env", "=1"), "process.env[2]: must be KEY=VALUE with a non-empty KEY"),
    ("env NUL", _append("process.env", "A=x\0y"), "process.env[2]: must not contain a NUL byte"),
    ("args NUL", _append("process.args", "a\0b"), "process.args[1]: must not contain a NUL byte"),
    ("cwd NUL", _set("process.cwd", "/srv\0"), "process.cwd: must not contain a NUL byte"),
    ("rlimit type", _set("process.rlimits.0.type", "NOFILE"),
     "process.rlimits[0].type: must be an RLIMIT_* name such as RLIMIT_NOFILE, not 'NOFILE'"),
    ("rlimit lower case", _set("process.rlimits.0.type", "RLIMIT_nofile"),
     "process.rlimits[0].type: must be an RLIMIT_* name such as RLIMIT_NOFILE, not 'RLIMIT_nofile'"),
    ("rlimit twice", _append("process.rlimits", {"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}),
     "process.rlimits: RLIMIT_NOFILE is listed more than once"),
    ("rlimit soft as string", _set("process.rlimits.0.soft", "1024"), "process.rlimits[0].soft: must be an integer"),
    ("namespace type", _set("linux.namespaces.1.type", "net"),
     f"linux.namespaces[1].type: must be {NAMESPACES}, not 'net'"),
    ("namespace twice", _append("linux.namespaces", {"type": "pid"}), "linux.namespaces: pid is listed more than once"),
    ("namespace path relative", _set("linux.namespaces.0.path", "proc/1/ns/pid"),
     "linux.namespaces[0].path: must be an absolute path, not 'proc/1/ns/pid'"),
    ("mount destination missing", _delete("mounts.0.destination"), "mounts[0].destination: required"),
    ("mount mappings in pairs", _set("mounts.0.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
     "mounts[0]: uidMappings and gidMappings must be given together"),
    ("terminal not bool", _set("process.terminal", "yes"), "process.terminal: must be true or false"),
    ("uid negative", _set("process.user.uid", -1), "process.user.uid: must be at least 0"),
    ("uid too big", _set("process.user.uid", 2**32), "process.user.uid: must be at most 4294967295"),
    ("uid missing", _delete("process.user.uid"), "process.user.uid: required"),
    ("memory limit float", _set("linux.resources.memory", {"limit": 1.0}),
     "linux.resources.memory.limit: must be an integer"),
    ("hook path relative", _set("hooks", {"prestart": [{"path": "hook.sh"}]}),
     "hooks.prestart[0].path: must be an absolute path, not 'hook.sh'"),
    ("hook timeout", _set("hooks", {"poststop": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststop[0].timeout: must be at least 1"),
    ("hook env", _set("hooks", {"poststart": [{"path": "/bin/true", "env": ["A=1", "B"]}]}),
     "hooks.poststart[0].env[1]: must be KEY=VALUE with a non-empty KEY"),
    ("hook args NUL", _set("hooks", {"poststart": [{"path": "/bin/true", "args": ["true", "\0"]}]}),
     "hooks.poststart[0].args[1]: must not contain a NUL byte"),
    ("seccomp action", _set("linux.seccomp", {"defaultAction": "SCMP_ACT_DENY"}),
     "linux.seccomp.defaultAction: must be 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', "
     "'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG' or 'SCMP_ACT_NOTIFY', "
     "not 'SCMP_ACT_DENY'"),
    ("seccomp names empty", _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ERRNO",
                                                   "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}),
     "linux.seccomp.syscalls[0].names: must not be empty"),
    ("device numbers", _set("linux.devices", [{"path": "/dev/fuse", "type": "c"}]),
     "linux.devices[0]: major and minor are required unless type is p"),
    ("device file mode", _set("linux.devices", [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                                                 "fileMode": 0o1777}]),
     "linux.devices[0].fileMode: must be at most 511"),
    ("masked path relative", _set("linux.maskedPaths.0", "proc/acpi"),
     "linux.maskedPaths[0]: must be an absolute path, not 'proc/acpi'"),
    ("device cgroup allow missing", _delete("linux.resources.devices.0.allow"),
     "linux.resources.devices[0].allow: required"),
    ("hugepage size", _set("linux.resources.hugepageLimits", [{"pageSize": "2M", "limit": 0}]),
     "linux.resources.hugepageLimits[0].pageSize: must match ^[1-9][0-9]*[KMG]B$, not '2M'"),
    ("annotation empty key", _set("annotations", {"": "x"}), "annotations: keys must not be empty"),
    ("annotation value", _set("annotations", {"org.opencontainers.image.stopSignal": 15}),
     'annotations["org.opencontainers.image.stopSignal"]: must be a string'),
    ("sysctl value", _set("linux.sysctl", {"net.ipv4.ip_forward": 1}),
     'linux.sysctl["net.ipv4.ip_forward"]: must be a string'),
    ("root path empty", _set("root.path", ""), "root.path: must not be empty"),
    ("process not object", _set("process", "sh"), "process: must be an object"),
    ("mounts not array", _set("mounts", {}), "mounts: must be an array"),
]


@pytest.mark.parametrize(("edit", "expected"), [(edit, expected) for _, edit, expected in RULES],
                         ids=[name for name, _, _ in RULES])
def test_rule(edit: Callable[[Doc], None], expected: str) -> None:
    doc = default_spec()
    edit(doc)
    assert message(doc) == f"invalid config.json: {expected}"


def test_top_level_must_be_an_object() -> None:
    assert message(["ociVersion"]) == "invalid config.json: top level: must be an object"


def test_the_origin_is_named() -> None:
    with pytest.raises(BundleError) as caught:
        parse_spec({}, where="config.json in /b")
    assert caught.value.message == "invalid config.json in /b: ociVersion: required"
    assert caught.value.exit_code == 18


def test_several_errors_are_joined() -> None:
    doc = default_spec()
    doc["process"]["args"] = []
    doc["process"]["cwd"] = "."
    assert message(doc) == ("invalid config.json: process.args: must not be empty; "
                            "process.cwd: must be an absolute path, not '.'")


def test_at_most_five_errors_are_listed() -> None:
    doc = default_spec()
    doc["process"]["env"] = [f"BROKEN{i}" for i in range(7)]
    expected = "; ".join(f"process.env[{i}]: must be KEY=VALUE with a non-empty KEY" for i in range(5))
    assert message(doc) == f"invalid config.json: {expected} (and 2 more)"


def test_env_values_are_not_echoed() -> None:
    doc = default_spec()
    doc["process"]["env"] = ["API_TOKEN:s3cr3t-value"]
    assert "s3cr3t" not in message(doc)


# --- env entries, for any key and value ---

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]*", fullmatch=True)
# A NUL cannot be passed to a program; a lone surrogate is no text (and no UTF-8) at all.
VALUES = st.text(st.characters(codec="utf-8", exclude_characters="\0"))
ENTRIES = st.builds(lambda key, value: f"{key}={value}", KEYS, VALUES)


@given(st.lists(ENTRIES, max_size=20))
def test_any_key_value_env_loads(env: list[str]) -> None:
    doc = default_spec()
    doc["process"]["env"] = env
    spec = parse_spec(doc)
    assert spec.process is not None
    assert spec.process.env == env


@given(st.lists(ENTRIES, max_size=20), st.text().filter(lambda s: "=" not in s), st.data())
def test_an_entry_without_equals_is_named(env: list[str], bad: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(env)))
    doc = default_spec()
    doc["process"]["env"] = [*env[:index], bad, *env[index:]]
    assert message(doc) == f"invalid config.json: process.env[{index}]: must be KEY=VALUE with a non-empty KEY"


def test_relative_mount_destination_is_taken_relative_to_root() -> None:
    data = default_spec()
    data["mounts"].append({"destination": "data", "source": "/srv", "options": ["bind"]})
    assert Spec.model_validate(data).mounts[-1].destination == "/data"  # type: ignore[index]
