"""`pveoci plan`: the options and findings for a bundle; --strict refuses before anything changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import MemoryCli, invoke
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


@pytest.fixture
def odd_bundle(busybox_bundle: Path) -> Path:
    """The busybox bundle asking for what Proxmox cannot do: an AppArmor profile of its own."""
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["process"]["apparmorProfile"] = "strict"
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    return busybox_bundle


def test_plan_lists_options_and_warnings(cli, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("plan", "-b", str(busybox_bundle))
    assert result.code == 0, result.err
    assert "  cmode=console\n" in result.out
    assert "  ostype=unmanaged\n" in result.out
    assert "approximated  linux.resources.memory.limit" in result.out
    assert "process.capabilities" not in result.out   # applied: the init gives the process these (0.2: unsupported)


def test_plan_json(cli, odd_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(cli("plan", "-b", str(odd_bundle), "-o", "json").out)
    assert data["pve_version"] == "9.1"
    assert data["assumed"] is False
    assert data["options"]["hostname"] == "busybox"
    assert data["process"]["path"] == "/bin/sh"
    assert {"field": "process.apparmorProfile", "status": "unsupported"} in [
        {"field": f["field"], "status": f["status"]} for f in data["findings"]]


def test_strict_refuses_naming_each_unsupported_field(cli, odd_bundle: Path,  # type: ignore[no-untyped-def]
                                                      cluster: Testbed) -> None:
    result = cli("plan", "-b", str(odd_bundle), "--strict")
    assert result.code == 19
    assert result.err == ("pveoci: error: --strict: this bundle asks for what Proxmox cannot do: "
                          "process.apparmorProfile (pveoci plan shows why)\n")
    assert not [r for r in cluster.pve.requests if r[0] != "GET"]


def test_plan_without_a_cluster_assumes_pve_9_1(busybox_bundle: Path, tmp_path: Path) -> None:
    env = {"PVEOCI_CONFIG": str(tmp_path / "none.toml"), "PATH": "/usr/bin:/bin"}
    proc = invoke(["plan", "-b", str(busybox_bundle)], env=env)
    assert proc.code == 0, proc.err
    assert proc.out.startswith("(cluster not asked: no API host for profile 'default'")


def test_missing_program_is_a_mapping_error(cli, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["process"]["args"] = ["nginx", "-g", "daemon off;"]
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    result = cli("plan", "-b", str(busybox_bundle))
    assert result.code == 19
    assert "process.args[0]: 'nginx' is not an executable file in the rootfs" in result.err


NUL_CASES = [("env", ["PATH=/bin", "A=x\0y"], "process.env[1]"), ("args", ["sh", "-c", "a\0b"], "process.args[2]"),
             ("cwd", "/srv\0", "process.cwd")]


def with_process(bundle: Path, key: str, value: object) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config["process"][key] = value
    (bundle / "config.json").write_text(json.dumps(config))  # a NUL is written as \u0000, as runc would read it


@pytest.mark.parametrize(("key", "value", "where"), NUL_CASES, ids=[case[0] for case in NUL_CASES])
def test_a_nul_byte_in_the_process_is_an_invalid_bundle(memory_cli: MemoryCli, busybox_bundle: Path,
                                                        key: str, value: object, where: str) -> None:
    # The bundle is refused as it is read, before the cluster is asked anything: the in-memory one does.
    with_process(busybox_bundle, key, value)
    result = memory_cli("plan", "-b", str(busybox_bundle))
    assert (result.code, result.err) == (
        18, f"pveoci: error: invalid config.json in {busybox_bundle}: {where}: must not contain a NUL byte\n")


def test_create_refuses_a_nul_byte_in_the_env_before_any_change(cli, busybox_bundle: Path,  # type: ignore[no-untyped-def]
                                                                cluster: Testbed, tmp_path: Path) -> None:
    with_process(busybox_bundle, "env", ["A=x\0y"])
    result = cli("--root", str(tmp_path / "cache"), "create", "-b", str(busybox_bundle), "nul")
    assert (result.code, result.err) == (
        18, f"pveoci: error: invalid config.json in {busybox_bundle}: process.env[0]: must not contain a NUL byte\n")
    assert not [r for r in cluster.pve.requests if r[0] != "GET"]
