"""`pveoci nodes`: a table for people, JSON for scripts."""

from __future__ import annotations

import json

import pytest

from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def test_table_lists_every_node_with_its_storages(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nodes")
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["NODE", "STATUS", "CPU", "MEM", "FREE", "TEMPLATE", "STORAGES", "ROOTFS", "STORAGES"]
    assert [r.split()[0] for r in rows] == ["pve1", "pve2"]
    assert all("online" in r and "local (" in r and "local-lvm (" in r for r in rows)


def test_json_output(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nodes", "-o", "json")
    assert result.code == 0
    data = json.loads(result.out)
    assert [n["node"] for n in data] == ["pve1", "pve2"]
    first = data[0]
    assert first["status"] == "online"
    assert first["mem_free"] == first["maxmem"] - first["mem"]
    assert [s["storage"] for s in first["template_storages"]] == ["local", "shared"]
    assert [s["storage"] for s in first["rootfs_storages"]] == ["local-lvm"]


def test_global_output_option_works_too(cli) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(cli("-o", "json", "nodes").out)[0]["node"] == "pve1"


def test_offline_node_is_listed_as_offline(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.set_node_offline("pve2")
    result = cli("nodes", "-o", "json")
    assert result.code == 0
    pve2 = json.loads(result.out)[1]
    assert pve2["status"] == "offline"
    assert pve2["template_storages"] == []
    table = cli("nodes").out.splitlines()
    assert table[2].split()[:2] == ["pve2", "offline"]


def test_a_node_in_maintenance_says_so(cli, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    cluster.pve.maintenance = {"pve1"}
    table = cli("nodes").out.splitlines()
    assert [r.split()[:2] for r in table[1:]] == [["pve1", "maintenance"], ["pve2", "online"]]
    assert [n["maintenance"] for n in json.loads(cli("nodes", "-o", "json").out)] == [True, False]
