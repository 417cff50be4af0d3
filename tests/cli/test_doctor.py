"""`pveoci doctor` against the bed: every check passes, and each fault is named in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.testbed import PVEOCI_PRIVILEGES, Testbed

pytestmark = pytest.mark.bed


def lines(out: str) -> dict[str, tuple[str, str]]:
    """{check name: (mark, detail)} from doctor's table output."""
    parsed = {}
    for line in out.splitlines():
        mark, rest = line[:5].strip(), line[6:]
        name, detail = rest[:12].strip(), rest[13:]
        parsed[name] = (mark, detail)
    return parsed


def test_every_check_passes_on_the_bed(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("doctor")
    assert result.code == 0, result.err
    checks = lines(result.out)
    assert set(checks) == {"api", "auth", "privileges", "node pull", "quorum", "node pve1", "node pve2", "ssh pve1",
                           "ssh pve2", "packer"}
    # the bed's token has what pveoci needs, not the optional Sys.AccessNetwork: said, not failed
    assert checks.pop("node pull") == ("skip", "no Sys.AccessNetwork on /nodes: this machine pulls images (the "
                                       "nodes could pull public ones themselves with it: docs/permissions.md)")
    assert all(mark == "ok" for mark, _ in checks.values()), result.out
    assert "TLS verified with CA" in checks["api"][1]
    assert checks["packer"][1].startswith("templates packed by ")
    assert "/template/bin/packer-" in checks["packer"][1]
    assert "host key verified (ssh-ed25519 SHA256:" in checks["ssh pve1"][1]
    assert result.err == ""


def test_json_output_lists_the_checks(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("doctor", "-o", "json")
    assert result.code == 0
    data = json.loads(result.out)
    assert [c["status"] for c in data] == ["pass"] * 3 + ["skip"] + ["pass"] * 6
    assert {"check", "status", "detail"} == set(data[0])


def test_token_without_vm_allocate_is_named(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    privs = [p for p in PVEOCI_PRIVILEGES if p != "VM.Allocate"]
    secret = cluster.add_token("limited@pve!ci", privs)
    result = cli("--token-id", "limited@pve!ci", "doctor", env={"PVEOCI_TOKEN_SECRET": secret})
    assert result.code == 1
    mark, detail = lines(result.out)["privileges"]
    assert mark == "FAIL"
    assert detail == "limited@pve!ci lacks VM.Allocate on /vms (create and destroy containers)"
    assert result.err == "pveoci: error: 1 check(s) failed: privileges\n"
    assert secret not in result.out + result.err


def test_a_token_that_may_pull_on_the_nodes_is_said(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.grant(cluster.token_id.split("!")[0], "/nodes", "Sys.AccessNetwork")
    result = cli("doctor")
    assert result.code == 0, result.err
    assert lines(result.out)["node pull"] == ("ok", "the nodes pull public images themselves (Sys.AccessNetwork "
                                                    "on /nodes)")


def test_wrong_fingerprint_pin_refuses_tls(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--fingerprint", "00" * 32, "doctor")
    assert result.code == 1
    checks = lines(result.out)
    assert checks["api"][0] == "FAIL"
    assert "does not match the pinned fingerprint" in checks["api"][1]
    assert "refusing to connect" in checks["api"][1]
    assert "auth" not in checks  # nothing was sent past a refused TLS handshake


def test_right_fingerprint_pin_passes(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    result = cli("--fingerprint", cluster.fingerprint, "doctor")
    assert result.code == 0, result.out
    assert "TLS pinned to fingerprint" in lines(result.out)["api"][1]


def test_unknown_ssh_host_key_refuses_ssh(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = cli("doctor", env={"PVEOCI_SSH_KNOWN_HOSTS": str(empty)})
    assert result.code == 1
    checks = lines(result.out)
    for node in ("pve1", "pve2"):
        mark, detail = checks[f"ssh {node}"]
        assert mark == "FAIL"
        assert f"host key of node '{node}'" in detail
        assert "is unknown" in detail
    assert empty.read_text() == ""


def test_lost_quorum_fails_the_quorum_check(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.lose_quorum()
    result = cli("doctor")
    assert result.code == 1
    assert lines(result.out)["quorum"] == ("FAIL", "cluster fakecluster has NO quorum: nothing can be changed")


def test_offline_node_fails_its_check_and_skips_its_ssh(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.set_node_offline("pve2")
    result = cli("doctor")
    assert result.code == 1
    checks = lines(result.out)
    assert checks["node pve2"] == ("FAIL", "offline")
    assert checks["ssh pve2"] == ("skip", "node is offline")
    assert checks["node pve1"][0] == "ok"
    assert "Traceback" not in result.err


def test_missing_template_storage_is_named(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("doctor", env={"PVEOCI_TEMPLATE_STORAGE": "nfs-templates"})
    assert result.code == 1
    mark, detail = lines(result.out)["node pve1"]
    assert mark == "FAIL"
    assert detail.startswith("template storage 'nfs-templates' is not usable here")


def test_bad_token_secret_fails_auth_but_api_is_reachable(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("doctor", env={"PVEOCI_TOKEN_SECRET": "wrong-secret"})
    assert result.code == 1
    checks = lines(result.out)
    assert checks["api"][0] == "ok"
    assert checks["auth"][0] == "FAIL"
    assert "refused the credentials of pveoci@pve!bed" in checks["auth"][1]
    assert "wrong-secret" not in result.out + result.err
