"""The bed itself behaves like PVE where fakepve alone would not (see tests/testbed/pve.py)."""

from __future__ import annotations

import pytest

from pveoci import errors
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def volids(client, node: str) -> dict[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    items = client.get("nodes", node, "storage", "local", "content", content="vztmpl")
    return {i["volid"]: i for i in items}


def test_each_node_lists_only_its_own_templates(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    (cluster.template_dir("pve1") / "pveoci-abc.tar.zst").write_bytes(b"x" * 123)
    (cluster.template_dir("pve1") / ".pveoci-abc.tar.zst.part").write_bytes(b"partial")
    (cluster.template_dir("pve2") / "debian-12.tar.gz").write_bytes(b"y")
    client = connect()
    pve1 = volids(client, "pve1")
    assert list(pve1) == ["local:vztmpl/pveoci-abc.tar.zst"]
    assert pve1["local:vztmpl/pveoci-abc.tar.zst"]["format"] == "tzst"
    assert pve1["local:vztmpl/pveoci-abc.tar.zst"]["size"] == 123
    assert list(volids(client, "pve2")) == ["local:vztmpl/debian-12.tar.gz"]


def test_create_needs_the_template_on_that_node(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    (cluster.template_dir("pve1") / "t.tar.zst").write_bytes(b"x")
    client = connect()
    client.wait(client.post("nodes", "pve1", "lxc", vmid=960, ostemplate="local:vztmpl/t.tar.zst",
                            rootfs="local-lvm:1"))
    with pytest.raises(errors.TaskFailed, match=r"volume 'local:vztmpl/t.tar.zst' does not exist"):
        client.wait(client.post("nodes", "pve2", "lxc", vmid=961, ostemplate="local:vztmpl/t.tar.zst",
                                rootfs="local-lvm:1"))
    assert [ct.vmid for ct in cluster.pve.cts] == [960]


def test_upload_api_stores_on_the_node_asked(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    import io

    client = connect()
    data = io.BytesIO(b"template bytes")
    data.name = "up.tar.zst"
    client.wait(client.post("nodes", "pve2", "storage", "local", "upload", content="vztmpl", filename=data))
    assert (cluster.template_dir("pve2") / "up.tar.zst").read_bytes() == b"template bytes"
    assert not (cluster.template_dir("pve1") / "up.tar.zst").exists()
    assert "local:vztmpl/up.tar.zst" in volids(client, "pve2")


def test_delete_removes_the_node_file(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    (cluster.template_dir("pve1") / "gone.tar.zst").write_bytes(b"x")
    client = connect()
    client.wait(client.delete("nodes", "pve1", "storage", "local", "content", "local:vztmpl/gone.tar.zst"))
    assert not (cluster.template_dir("pve1") / "gone.tar.zst").exists()
    with pytest.raises(errors.TaskFailed, match="does not exist"):
        client.wait(client.delete("nodes", "pve1", "storage", "local", "content", "local:vztmpl/gone.tar.zst"))


def test_cluster_reports_node_addresses_and_the_real_fingerprint(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    ips = {i["name"]: i["ip"] for i in client.cluster_status() if i["type"] == "node"}
    assert ips == cluster.addresses
    assert {n["ssl_fingerprint"] for n in client.nodes()} == {cluster.fingerprint}


def test_storage_path_is_the_same_on_every_node(connect, cluster: Testbed) -> None:  # type: ignore[no-untyped-def]
    assert connect().get("storage", "local")["path"] == cluster.pve.storage_path
