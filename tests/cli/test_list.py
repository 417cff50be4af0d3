"""`pveoci list` on the three-node bed: filters by node, status and annotation, and the node in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import Result, invoke
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle, with_annotations

pytestmark = pytest.mark.bed


def pveoci(bed: Testbed, root: Path, *args: str) -> Result:
    return invoke(["--root", str(root), *args], env=bed.env())


def annotated(path: Path, **annotations: str) -> Path:
    return with_annotations(make_busybox_bundle(path), **annotations)


def test_list_filters_and_shows_the_node(cluster3: Testbed, tmp_path: Path) -> None:
    blue, red = annotated(tmp_path / "blue", team="blue"), annotated(tmp_path / "red", team="red")
    for cid, bundle, node in (("a", blue, "pve1"), ("b", blue, "pve2"), ("c", red, "pve2"), ("d", red, "pve3")):
        made = pveoci(cluster3, tmp_path, "create", "-b", str(bundle), "--node", node, cid)
        assert made.code == 0, made.err

    def listed(*args: str) -> list[str]:
        done = pveoci(cluster3, tmp_path, "list", "-q", *args)
        assert done.code == 0, done.err
        return done.out.split()

    assert listed("--filter", "node=pve2") == ["b", "c"]
    assert listed("--filter", "node=pve1", "--filter", "node=pve3") == ["a", "d"]
    assert listed("--filter", "annotation=team=blue") == ["a", "b"]
    assert listed("--filter", "node=pve2", "--filter", "annotation=team=red") == ["c"]
    assert listed("--filter", "status=created") == ["a", "b", "c", "d"]
    assert listed("--filter", "status=running") == []
    table = pveoci(cluster3, tmp_path, "list", "--filter", "node=pve3").out.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "NODE", "VMID"]
    assert table[1].split()[0] == "d"
    assert "pve3" in table[1].split()
    data = json.loads(pveoci(cluster3, tmp_path, "list", "-o", "json", "--filter", "annotation=team").out)
    assert {d["id"]: d["pveoci"]["node"] for d in data} == {"a": "pve1", "b": "pve2", "c": "pve2", "d": "pve3"}
    bad = pveoci(cluster3, tmp_path, "list", "--filter", "zone=x")
    assert bad.code == 2
    assert bad.err.startswith("pveoci: error: Invalid value for '--filter': bad filter 'zone=x'")
