"""The ownership marker on the bed: written through the real API, read back by another workstation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.testbed.bundle import with_annotations

pytestmark = pytest.mark.bed

NASTY = {"note": "} -->", "html": "<!-- <b>x</b> -->", "text": "é中😀\nline two"}


def ok(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out


def test_a_container_whose_annotation_closes_a_comment_is_seen_and_deleted_by_another_workstation(
        pveoci, busybox_bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with_annotations(busybox_bundle, **NASTY)
    ok(pveoci("create", "-b", str(busybox_bundle), "--node", "pve1", "marked"))
    other = {"XDG_STATE_HOME": str(tmp_path / "other-workstation")}
    listed = json.loads(ok(pveoci("list", "-o", "json", env=other)))
    assert [(s["id"], s["annotations"]) for s in listed] == [("marked", NASTY)]
    assert json.loads(ok(pveoci("state", "marked", env=other)))["annotations"] == NASTY
    ok(pveoci("delete", "-f", "marked", env=other))
    gone = pveoci("state", "marked")  # the first workstation: its cache knew it, the cluster no longer has it
    assert (gone.code, gone.err) == (8, "pveoci: error: container does not exist\n")
