"""`pveoci features`: the runtime-spec's Features structure, valid against its schema and true to the mapping.

Each list and switch is held to what the mapping makes of a bundle that asks for it: a hook, namespace, mount
option or capability is listed exactly when the mapping applies it, and a switch is on exactly when the spec's
field is applied (seccomp, AppArmor, SELinux, rdma, Intel RDT, net devices, id-mapped mounts)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest

import pveoci
from pveoci.implemented import features
from pveoci.lxc.mapping import Finding, Target, map_spec
from pveoci.oci.defaults import default_spec
from pveoci.oci.runtime_spec import Hooks, NamespaceType, Spec
from tests import harness
from tests.oci import schema

ROOT_PAM = Target(root_pam=True)   # the most the mapping may do: bind mounts are planned
#: Hooks, namespaces, mount options and capabilities a bundle may name (the runtime-spec's, runc's).
HOOKS = [field.alias or name for name, field in Hooks.model_fields.items()]
NAMESPACES = list(typing.get_args(NamespaceType))
MOUNT_OPTIONS = ["bind", "rbind", "ro", "rw", "rro", "rrw", "nosuid", "nodev", "noexec", "noatime", "relatime",
                 "strictatime", "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
                 "tmpcopyup", "remount", "sync", "dirsync", "mand", "idmap", "ridmap"]
CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_NET_RAW",
                "CAP_SYS_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE", "CAP_MKNOD", "CAP_BPF"]


def findings(changes: dict[str, Any], field: str) -> list[Finding]:
    """The mapping's findings for `field` of runc's starter spec with `changes` (top-level keys replaced, a
    process or linux key merged into its object), as root@pam."""
    doc = default_spec()
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            doc.setdefault(section, {})[name] = value
        else:
            doc[key] = value
    plan = map_spec(Spec.model_validate(doc), ROOT_PAM, container_id="probe",
                    find_program=lambda name, path, cwd: "/bin/" + name.rsplit("/", 1)[-1])
    return [f for f in plan.findings if f.field == field]


def applied(found: list[Finding]) -> bool:
    return bool(found) and all(f.status in ("applied", "provided") for f in found)


def test_the_structure_validates_against_the_runtime_spec_schema() -> None:
    data = features()
    schema("features-schema.json").validate(data)
    assert (data["ociVersionMin"], data["ociVersionMax"]) == ("1.0.0", "1.3.0")
    assert data["annotations"] == {"org.proxmox.pveoci.version": pveoci.__version__}
    assert json.loads(json.dumps(data)) == data


def test_the_hooks_listed_are_the_hooks_pveoci_runs() -> None:
    listed = features()["hooks"]
    for hook in HOOKS:
        found = findings({"hooks": {hook: [{"path": "/bin/true"}]}}, f"hooks.{hook}")
        assert (hook in listed) == applied(found), (hook, found)
    assert "createContainer" not in listed  # inside the container's namespaces before start: not on Proxmox


def test_the_namespaces_listed_are_those_a_container_gets() -> None:
    listed = features()["linux"]["namespaces"]
    for kind in NAMESPACES:
        found = findings({"linux.namespaces": [{"type": kind}]}, "linux.namespaces[0]")
        assert (kind in listed) == applied(found), (kind, found)
    assert "time" not in listed


def test_the_mount_options_listed_are_those_a_bind_mount_keeps() -> None:
    listed = features()["mountOptions"]
    for option in MOUNT_OPTIONS:
        mount = {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["bind", option]}
        found = findings({"mounts": [mount]}, "mounts[0]")
        assert (option in listed) == applied(found), (option, found)
    assert "rbind" not in listed  # PVE binds without the mounts under the source


def test_no_capability_is_listed_that_a_bundle_cannot_set() -> None:
    listed = features()["linux"]["capabilities"]
    for cap in CAPABILITIES:
        caps = {kind: [cap] for kind in ("bounding", "effective", "permitted")}
        found = findings({"process.capabilities": caps}, "process.capabilities")
        assert (cap in listed) == (not any(f.status == "unsupported" for f in found)), (cap, found)
    assert "CAP_SYS_MODULE" not in listed  # LXC withholds it
    assert "CAP_SYS_ADMIN" in listed


@pytest.mark.parametrize(("path", "changes", "field"), [
    (("seccomp", "enabled"), {"linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}, "linux.seccomp"),
    (("apparmor", "enabled"), {"process.apparmorProfile": "strict"}, "process.apparmorProfile"),
    (("selinux", "enabled"), {"process.selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0"},
     "process.selinuxLabel"),
    (("cgroup", "rdma"), {"linux.resources": {"rdma": {"mlx5_1": {"hcaHandles": 3}}}}, "linux.resources.rdma"),
    (("intelRdt", "enabled"), {"linux.intelRdt": {"closID": "guaranteed"}}, "linux.intelRdt"),
    (("netDevices", "enabled"), {"linux.netDevices": {"eth1": {}}}, "linux.netDevices"),
])
def test_a_switch_is_on_exactly_when_the_spec_field_is_applied(path: tuple[str, str], changes: dict[str, Any],
                                                                field: str) -> None:
    section, switch = path
    assert features()["linux"][section][switch] == applied(findings(changes, field))


def test_id_mapped_mounts_are_said_to_be_off_as_the_mapping_makes_them() -> None:
    idmap = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    mount = {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["bind"],
             "uidMappings": idmap, "gidMappings": idmap}
    enabled = features()["linux"]["mountExtensions"]["idmap"]["enabled"]
    assert enabled == applied(findings({"mounts": [mount]}, "mounts[0]"))
    assert enabled is False


def test_the_library_function_is_the_front_doors() -> None:
    assert pveoci.features() == features()


def test_the_command_prints_it_with_no_settings_at_all(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    for args in (["features"], ["--config", str(tmp_path / "missing.toml"), "features"], ["-o", "table", "features"]):
        result = harness.invoke(args, env=env)
        assert (result.code, result.err) == (0, ""), args
        assert json.loads(result.out) == features()
    assert harness.invoke(["features", "extra"], env=env).code == 2
