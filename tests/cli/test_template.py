"""`pveoci template push|ls|rm|gc` against the bed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def push(cli, bundle: Path, *args: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    result = cli("template", "push", "-b", str(bundle), "-o", "json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_push_then_push_again_sends_nothing(cli, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    first = push(cli, busybox_bundle, "--node", "pve1")
    assert first["uploaded"] is True
    assert first["bytes_sent"] == first["size"] > 0
    assert first["volid"].startswith("local:vztmpl/pveoci-")
    assert (cluster.template_dir("pve1") / first["volid"].split("/")[1]).stat().st_size == first["size"]
    second = push(cli, busybox_bundle, "--node", "pve1")
    assert (second["uploaded"], second["bytes_sent"], second["volid"]) == (False, 0, first["volid"])


def test_push_to_pve2_over_the_api(cli, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    result = push(cli, busybox_bundle, "--node", "pve2", "--transport", "api")
    assert result["node"] == "pve2"
    assert result["uploaded"] is True
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_the_template_is_the_rootfs_alone(cli, busybox_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    first = push(cli, busybox_bundle, "--node", "pve1")
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["process"]["env"].append("NEW=1")
    config["process"]["args"] = ["sh", "-c", "echo another program"]
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    second = push(cli, busybox_bundle, "--node", "pve1")
    assert (second["volid"], second["uploaded"], second["bytes_sent"]) == (first["volid"], False, 0)
    (busybox_bundle / "rootfs" / "etc" / "motd").write_text("changed\n")
    third = push(cli, busybox_bundle, "--node", "pve1")
    assert third["volid"] != first["volid"]


def test_ls_rm_and_gc(cli, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    a = push(cli, busybox_bundle, "--node", "pve1")["volid"].split("/")[1]
    b = push(cli, busybox_bundle, "--node", "pve2")["volid"].split("/")[1]
    listing = json.loads(cli("template", "ls", "-o", "json").out)
    assert [(t["node"], t["name"], t["used_by"]) for t in listing] == [("pve1", a, []), ("pve2", b, [])]
    table = cli("template", "ls").out.splitlines()
    assert table[0].split() == ["TEMPLATE", "NODE", "STORAGE", "SIZE", "CREATED", "USED", "BY"]
    removed = cli("template", "rm", a, "--node", "pve1")
    assert removed.code == 0, removed.err
    assert removed.out == f"removed local:vztmpl/{a} from pve1\n"
    missing = cli("template", "rm", a, "--node", "pve1")
    assert missing.code == 8
    assert missing.err == f"pveoci: error: template {a} does not exist on local (pve1)\n"
    assert cli("template", "gc", "--dry-run").out == f"would remove local:vztmpl/{b} (pve2, " \
        f"{listing[1]['size'] / 1024 / 1024:.1f} MiB)\n"
    assert list(cluster.template_dir("pve2").iterdir())  # a dry run removes nothing
    assert cli("template", "gc").code == 0
    assert list(cluster.template_dir("pve2").iterdir()) == []


def test_rm_refuses_what_is_not_a_pveoci_template(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("template", "rm", "debian-12-standard.tar.zst", "--node", "pve1")
    assert result.code == 8
    assert "is not a pveoci template name" in result.err


def test_push_to_an_offline_node_is_refused(cli, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.set_node_offline("pve2")
    result = cli("template", "push", "-b", str(busybox_bundle), "--node", "pve2")
    assert result.code == 12
    assert result.err == "pveoci: error: node 'pve2' is offline\n"


def test_push_of_a_broken_bundle_changes_nothing(cli, tmp_path: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "config.json").write_text("{not json")
    result = cli("template", "push", "-b", str(tmp_path))
    assert result.code == 18
    assert result.err.startswith(f"pveoci: error: {tmp_path}/config.json: not valid JSON")
    assert not [r for r in cluster.pve.requests if r[0] != "GET"]


def test_shared_storage_gets_one_copy_for_all_nodes(cli, busybox_bundle: Path, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    first = push(cli, busybox_bundle, "--node", "pve1", "--storage", "shared")
    assert (first["uploaded"], first["shared"]) == (True, True)
    second = push(cli, busybox_bundle, "--node", "pve2", "--storage", "shared")
    assert (second["uploaded"], second["bytes_sent"]) == (False, 0)
    listing = json.loads(cli("template", "ls", "--storage", "shared", "-o", "json").out)
    assert len(listing) == 1
    assert listing[0]["shared"] is True
    assert "(shared)" in cli("template", "ls", "--storage", "shared").out
    assert list(cluster.template_dir("pve1").iterdir()) == []
