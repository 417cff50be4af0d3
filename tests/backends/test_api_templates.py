"""Getting templates onto the bed's nodes: over SFTP and through the API, never twice, never half."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pveoci import errors, settings
from pveoci.pve.client import PveClient
from pveoci.ssh import SshConnector
from pveoci.template.api_upload import ApiUploader
from pveoci.template.pack import Packed, pack
from pveoci.template.sftp import SftpUploader
from pveoci.template.store import TemplateStore, Uploader
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


@pytest.fixture
def client(connect) -> PveClient:  # type: ignore[no-untyped-def]
    return connect()  # type: ignore[no-any-return]


@pytest.fixture
def packed(tmp_path: Path) -> Packed:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "data").write_bytes(os.urandom(1 << 20))
    return pack(rootfs, tmp_path / "out")


def uploader(kind: str, cluster: Testbed, client: PveClient) -> Uploader:
    if kind == "api":
        return ApiUploader(client)
    profile = settings.load(config_path=cluster.config_path, env={}).profile
    return SftpUploader(SshConnector(profile.ssh, cluster.addresses))


@pytest.fixture(params=["sftp", "api"])
def transport(request: pytest.FixtureRequest, cluster: Testbed, client: PveClient) -> Uploader:
    return uploader(request.param, cluster, client)


def listed(client: PveClient, node: str) -> list[str]:
    return [i["volid"] for i in client.get("nodes", node, "storage", "local", "content", content="vztmpl")]


def test_push_lands_on_the_node_and_is_listed_by_the_api(client: PveClient, cluster: Testbed, packed: Packed,
                                                         transport: Uploader) -> None:
    store = TemplateStore(client)
    dest = store.destination("pve1", "local")
    seen: list[int] = []
    result = store.ensure(packed, dest, transport, seen.append)
    assert result.uploaded
    assert result.volid == f"local:vztmpl/{packed.name}"
    assert result.bytes_sent == packed.size == sum(seen)
    assert listed(client, "pve1") == [result.volid]
    assert (cluster.template_dir("pve1") / packed.name).read_bytes() == packed.path.read_bytes()
    assert listed(client, "pve2") == []
    again = store.ensure(packed, dest, transport)
    assert not again.uploaded
    assert again.bytes_sent == 0


def test_push_to_pve2_lands_on_pve2_only(client: PveClient, cluster: Testbed, packed: Packed,
                                         transport: Uploader) -> None:
    store = TemplateStore(client)
    store.ensure(packed, store.destination("pve2", "local"), transport)
    assert listed(client, "pve2") == [f"local:vztmpl/{packed.name}"]
    assert listed(client, "pve1") == []
    assert not (cluster.template_dir("pve1") / packed.name).exists()


def test_sftp_upload_uses_a_hidden_name_then_renames(client: PveClient, cluster: Testbed, packed: Packed) -> None:
    store = TemplateStore(client)
    store.ensure(packed, store.destination("pve1", "local"), uploader("sftp", cluster, client))
    commands = cluster.sshd("pve1").commands()
    assert any(c.startswith("sha256sum -- ") and c.endswith(".partial") for c in commands)
    assert any(c.startswith("mv -f -- ") and c.endswith(f"/{packed.name}") for c in commands)
    assert [p.name for p in cluster.template_dir("pve1").iterdir()] == [packed.name]


def test_damaged_upload_is_refused_and_removed(client: PveClient, cluster: Testbed, packed: Packed) -> None:
    store = TemplateStore(client)
    lying = Packed(path=packed.path, digest=packed.digest, file_sha256="0" * 64, size=packed.size,
                   tar_size=packed.tar_size, entries=packed.entries)
    with pytest.raises(errors.SshError, match="arrived damaged"):
        store.ensure(lying, store.destination("pve1", "local"), uploader("sftp", cluster, client))
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_unknown_storage_is_named(client: PveClient) -> None:
    with pytest.raises(errors.NotFound, match="storage 'nfs' is not available on node 'pve1'"):
        TemplateStore(client).destination("pve1", "nfs")


def test_storage_without_templates_is_refused(client: PveClient) -> None:
    with pytest.raises(errors.ConfigError, match="does not hold container templates"):
        TemplateStore(client).destination("pve1", "local-lvm")


def test_remove(client: PveClient, cluster: Testbed, packed: Packed) -> None:
    store = TemplateStore(client)
    dest = store.destination("pve1", "local")
    store.ensure(packed, dest, uploader("api", cluster, client))
    store.remove(dest, packed.name)
    assert listed(client, "pve1") == []
    with pytest.raises(errors.NotFound, match="does not exist"):
        store.remove(dest, packed.name)


KILLED_UPLOAD = """
import sys
from pathlib import Path
from pveoci import settings
from pveoci.pve.client import PveClient
from pveoci.ssh import SshConnector
from pveoci.template.pack import pack
from pveoci.template.sftp import SftpUploader
from pveoci.template.store import TemplateStore
s = settings.load(config_path=Path(sys.argv[1]))
client = PveClient.from_settings(s)
packed = pack(Path(sys.argv[2]), Path(sys.argv[3]))
addresses = {{n: a for n, a in {addresses!r}.items()}}
store = TemplateStore(client)
up = SftpUploader(SshConnector(s.profile.ssh, addresses))
print("packed", packed.name, flush=True)
store.ensure(packed, store.destination("pve1", "local"), up, lambda n: None)
print("done", flush=True)
"""


def test_killed_upload_leaves_nothing_visible_and_the_next_push_succeeds(
        client: PveClient, cluster: Testbed, tmp_path: Path) -> None:
    rootfs = tmp_path / "big"
    rootfs.mkdir()
    for i in range(6):
        (rootfs / f"blob{i}").write_bytes(os.urandom(64 << 20))
    script = KILLED_UPLOAD.format(addresses=cluster.addresses)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(cluster.config_path), str(rootfs),
                             str(tmp_path / "out")], env=cluster.env(), stdout=subprocess.PIPE, text=True)
    folder = cluster.template_dir("pve1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partials = [p for p in folder.iterdir() if p.name.endswith(".partial")]
        if partials and partials[0].stat().st_size > (16 << 20):
            break
        time.sleep(0.01)
    else:
        proc.kill()
        pytest.fail("the upload never started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert listed(client, "pve1") == []
    packed = pack(rootfs, tmp_path / "out")
    store = TemplateStore(client)
    result = store.ensure(packed, store.destination("pve1", "local"), uploader("sftp", cluster, client))
    assert result.uploaded
    assert listed(client, "pve1") == [f"local:vztmpl/{packed.name}"]


def test_killed_api_upload_leaves_nothing_visible(client: PveClient, cluster: Testbed, tmp_path: Path) -> None:
    rootfs = tmp_path / "big"
    rootfs.mkdir()
    for i in range(4):
        (rootfs / f"blob{i}").write_bytes(os.urandom(48 << 20))
    script = KILLED_UPLOAD.replace("SftpUploader(SshConnector(s.profile.ssh, addresses))", "ApiUploader(client)")
    script = script.replace("from pveoci.template.sftp import SftpUploader",
                            "from pveoci.template.api_upload import ApiUploader")
    script = script.replace("up, lambda n: None)", "up, lambda n: print('sent', n, flush=True))")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script.format(addresses=cluster.addresses)),
                             str(cluster.config_path), str(rootfs), str(tmp_path / "out")], env=cluster.env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    sent = 0
    for line in proc.stdout:
        if line.startswith("sent"):
            sent += int(line.split()[1])
            if sent > (32 << 20):
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    time.sleep(0.5)
    assert listed(client, "pve1") == []
    assert list(cluster.template_dir("pve1").iterdir()) == []
    packed = pack(rootfs, tmp_path / "out")
    store = TemplateStore(client)
    assert store.ensure(packed, store.destination("pve1", "local"), uploader("api", cluster, client)).uploaded
    assert listed(client, "pve1") == [f"local:vztmpl/{packed.name}"]
