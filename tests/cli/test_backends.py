"""Choosing the backend: `--backend`/`backend = api | pct | auto`, auto's fallback to pct over SSH when the API is
down (and only then), and `doctor` for the pct path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import Result
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

FELL_BACK = "pveoci: warning: the Proxmox API cannot be reached ("


def checks(out: str) -> dict[str, tuple[str, str]]:
    return {line[6:18].strip(): (line[:5].strip(), line[19:]) for line in out.splitlines()}


def test_auto_with_the_api_port_closed_runs_over_ssh_and_says_so_once(cli, lxc_bed: Testbed,  # type: ignore[no-untyped-def]
                                                                      busybox_bundle: Path, tmp_path: Path) -> None:
    down = {"PVEOCI_PORT": "1", "PVEOCI_BACKEND": "auto", "PVEOCI_RETRIES": "0"}
    made: Result = cli("--root", str(tmp_path), "run", "-d", "-b", str(busybox_bundle), "fallback", env=down)
    assert made.code == 0, made.err
    warned = [line for line in made.err.splitlines() if line.startswith(FELL_BACK)]
    assert len(warned) == 1
    assert warned[0].endswith(":1: connection refused); using pct over SSH instead")
    assert any(c["argv"][:1] == ["create"] for node in ("pve1", "pve2") for c in lxc_bed.tool_calls(node))
    state = cli("--root", str(tmp_path), "state", "fallback", env=down)
    assert json.loads(state.out)["status"] == "running"
    assert state.err.count(FELL_BACK) == 1
    assert cli("--root", str(tmp_path), "delete", "-f", "fallback", env=down).code == 0


def test_auto_with_a_bad_token_does_not_fall_back(cli, cluster: Testbed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    refused = cli("--root", str(tmp_path), "--backend", "auto", "list",
                     env={"PVEOCI_TOKEN_SECRET": "not-the-secret"})
    assert refused.code == 6
    assert refused.err == ("pveoci: error: the Proxmox API refused the credentials of pveoci@pve!bed "
                           "(authentication failure)\n")
    assert cluster.tool_calls("pve1") == []  # no pct, no pvesh: an authorization error is not an outage


def test_auto_with_the_api_up_uses_the_api(cli, cluster: Testbed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listed = cli("--root", str(tmp_path), "--backend", "auto", "list", "-q")
    assert (listed.code, listed.err) == (0, "")
    assert cluster.tool_calls("pve1") == []


def test_doctor_checks_the_pct_path(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--backend", "pct", "doctor")
    assert result.code == 0, result.out + result.err
    found = checks(result.out)
    assert set(found) == {"pct", "pvesh", "quorum", "node pve1", "node pve2", "ssh pve1", "ssh pve2", "packer",
                          "pct pve1", "pct pve2"}
    assert all(mark == "ok" for mark, _ in found.values()), result.out
    assert found["pct pve2"][1] == "node pve2: pct and pvesh found, run as root"


def test_doctor_with_auto_and_the_api_down_warns_and_checks_the_pct_path(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--backend", "auto", "--port", "1", "doctor", env={"PVEOCI_RETRIES": "0"})
    assert result.code == 0, result.out
    found = checks(result.out)
    assert found["api"][0] == "warn"
    assert found["api"][1].endswith("connection refused: auto uses pct over SSH instead")
    assert found["pct pve1"][0] == "ok"


def test_doctor_names_a_node_without_pct(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    tool = cluster.sshd("pve2").bin_dir / "pct"  # type: ignore[operator]
    saved = tool.read_text()
    tool.unlink()
    try:
        result = cli("--backend", "pct", "doctor")
    finally:
        tool.write_text(saved)
        tool.chmod(0o755)
    assert result.code == 1
    mark, detail = checks(result.out)["pct pve2"]
    assert (mark, detail) == ("FAIL", "node pve2: pct: not found")


def test_the_pct_backend_with_ssh_down_fails_at_once_in_one_line(cli, busybox_bundle: Path,  # type: ignore[no-untyped-def]
                                                                 cluster: Testbed, tmp_path: Path) -> None:
    result = cli("--root", str(tmp_path), "--backend", "pct", "run", "-d", "-b", str(busybox_bundle), "x",
                    env={"PVEOCI_SSH_PORT": "1"})
    assert result.code == 16
    assert result.err.startswith(f"pveoci: error: cannot reach node '{cluster.api_address}' over SSH at root@")
    assert result.err.count("\n") == 1
    assert cluster.pve.cts == []
