"""Templates onto the bed's nodes through the API backend: over SFTP and the upload API, never half."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pveoci
from pveoci import errors
from pveoci.backends.api import ApiBackend
from pveoci.models import Destination
from pveoci.pve.client import PveClient
from pveoci.template.pack import Packed, pack
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


@pytest.fixture
def backend(cluster: Testbed, tmp_path: Path) -> Iterator[ApiBackend]:
    rt = pveoci.connect(config=cluster.config_path, root=tmp_path / "cache")
    assert isinstance(rt.backend, ApiBackend)
    yield rt.backend
    rt.close()


@pytest.fixture
def client(backend: ApiBackend) -> PveClient:
    return backend.client


@pytest.fixture
def packed(tmp_path: Path) -> Packed:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "data").write_bytes(os.urandom(1 << 20))
    return pack(rootfs, tmp_path / "out")


@pytest.fixture(params=["sftp", "api"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def listed(client: PveClient, node: str) -> list[str]:
    return [i["volid"] for i in client.get("nodes", node, "storage", "local", "content", content="vztmpl")]


def upload(backend: ApiBackend, packed: Packed, dest: Destination, transport: str) -> int:
    return backend.upload(packed, dest, transport=transport, progress=lambda _n: None)


def test_upload_lands_on_the_node_and_is_listed_by_the_api(backend: ApiBackend, client: PveClient, cluster: Testbed,
                                                           packed: Packed, transport: str) -> None:
    dest = backend.template_destination("pve1", "local")
    seen: list[int] = []
    sent = backend.upload(packed, dest, transport=transport, progress=seen.append)
    assert sent == packed.size == sum(seen)
    assert listed(client, "pve1") == [dest.volid(packed.name)]
    assert [t.name for t in backend.templates(dest)] == [packed.name]
    assert backend.templates(dest)[0].size == packed.size
    assert (cluster.template_dir("pve1") / packed.name).read_bytes() == packed.path.read_bytes()
    assert listed(client, "pve2") == []


def test_upload_to_pve2_lands_on_pve2_only(backend: ApiBackend, client: PveClient, cluster: Testbed,
                                           packed: Packed, transport: str) -> None:
    upload(backend, packed, backend.template_destination("pve2", "local"), transport)
    assert listed(client, "pve2") == [f"local:vztmpl/{packed.name}"]
    assert listed(client, "pve1") == []
    assert not (cluster.template_dir("pve1") / packed.name).exists()


def test_sftp_upload_uses_a_hidden_name_then_links_it_into_place(backend: ApiBackend, cluster: Testbed,
                                                                   packed: Packed) -> None:
    upload(backend, packed, backend.template_destination("pve1", "local"), "sftp")
    commands = cluster.sshd("pve1").commands()
    hidden = next(c.split()[-1] for c in reversed(commands) if c.startswith("sha256sum -- "))
    assert hidden.split("/")[-1].startswith(".pveoci-upload.")
    assert hidden.endswith(".partial")
    final = f"{cluster.pve.storage_path}/template/cache/{packed.name}"
    placing = [c for c in commands if c.endswith(f" sh {hidden} {final} '' ''")]   # RemoteDir.place's one command
    assert len(placing) == 1
    assert placing[0].startswith("sh -c ")
    assert "ln -- \"$1\" \"$2\"" in placing[0]
    assert [p.name for p in cluster.template_dir("pve1").iterdir()] == [packed.name]


def test_damaged_upload_is_refused_and_removed(backend: ApiBackend, cluster: Testbed, packed: Packed) -> None:
    lying = Packed(path=packed.path, digest=packed.digest, file_sha256="0" * 64, size=packed.size,
                   tar_size=packed.tar_size, entries=packed.entries)
    with pytest.raises(errors.SshError, match="arrived damaged"):
        upload(backend, lying, backend.template_destination("pve1", "local"), "sftp")
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_unknown_storage_is_named(backend: ApiBackend) -> None:
    with pytest.raises(errors.NotFound, match="storage 'nfs' is not available on node 'pve1'"):
        backend.template_destination("pve1", "nfs")


def test_storage_without_templates_is_refused(backend: ApiBackend) -> None:
    with pytest.raises(errors.ConfigError, match="does not hold container templates"):
        backend.template_destination("pve1", "local-lvm")


def test_destination_reports_free_space(backend: ApiBackend, cluster: Testbed) -> None:
    dest = backend.template_destination("pve1", "local")
    assert dest.avail is not None
    assert dest.avail > 0
    assert dest.directory is not None
    assert dest.directory.endswith("/template/cache")


def test_remove(backend: ApiBackend, client: PveClient, packed: Packed) -> None:
    dest = backend.template_destination("pve1", "local")
    upload(backend, packed, dest, "api")
    backend.remove_template(dest, packed.name)
    assert listed(client, "pve1") == []
    with pytest.raises(errors.PveociError):
        backend.remove_template(dest, packed.name)


KILLED_UPLOAD = """
import sys
from pathlib import Path
import pveoci
from pveoci.template.pack import pack
rt = pveoci.connect(config=sys.argv[1], root=sys.argv[4])
packed = pack(Path(sys.argv[2]), Path(sys.argv[3]))
dest = rt.backend.template_destination("pve1", "local")
print("packed", packed.name, flush=True)
rt.backend.upload(packed, dest, transport=sys.argv[5], progress=lambda n: print("sent", n, flush=True))
print("done", flush=True)
"""


def killed_upload(cluster: Testbed, tmp_path: Path, transport: str, blobs: int, size: int) -> subprocess.Popen[str]:
    rootfs = tmp_path / "big"
    rootfs.mkdir()
    for i in range(blobs):
        (rootfs / f"blob{i}").write_bytes(os.urandom(size))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_UPLOAD), str(cluster.config_path),
                             str(rootfs), str(tmp_path / "out"), str(tmp_path / "cache2"), transport],
                            env=cluster.env(), stdout=subprocess.PIPE, text=True)


def test_killed_upload_leaves_nothing_visible_and_the_next_push_succeeds(
        backend: ApiBackend, client: PveClient, cluster: Testbed, tmp_path: Path) -> None:
    proc = killed_upload(cluster, tmp_path, "sftp", 6, 64 << 20)
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
    packed = pack(tmp_path / "big", tmp_path / "out")
    assert upload(backend, packed, backend.template_destination("pve1", "local"), "sftp")
    assert listed(client, "pve1") == [f"local:vztmpl/{packed.name}"]


def test_killed_api_upload_leaves_nothing_visible(backend: ApiBackend, client: PveClient, cluster: Testbed,
                                                  tmp_path: Path) -> None:
    proc = killed_upload(cluster, tmp_path, "api", 4, 48 << 20)
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
    packed = pack(tmp_path / "big", tmp_path / "out")
    assert upload(backend, packed, backend.template_destination("pve1", "local"), "api")
    assert listed(client, "pve1") == [f"local:vztmpl/{packed.name}"]
