"""Getting templates onto the bed's nodes as a user's creates do: once per node whatever the concurrency, as a
delta after a small change, refused up front when the storage is full, and leaving nothing but templates in
the node's template directory (no partial file, no claim) whether the push sent something, sent nothing,
failed or was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pveoci.template import sweep
from tests.testbed import Testbed
from tests.testbed.jump import forwarded_to

pytestmark = pytest.mark.bed

ROOT = Path(__file__).resolve().parents[2]


def leftovers(bed: Testbed, node: str = "pve1") -> list[str]:
    """What is in the node's template directory besides templates (hidden names: Proxmox never lists them)."""
    return sorted(p.name for p in bed.template_dir(node).iterdir() if p.name.startswith("."))


def sftp_sessions(bed: Testbed, node: str) -> int:
    return sum(c.endswith("sftp-server") for c in bed.sshd(node).commands())


def pveoci(bed: Testbed, *args: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), *args],
                          env=bed.env(**env), capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)


@pytest.fixture(params=["paramiko", "openssh-jump"])
def transport(request: pytest.FixtureRequest, cluster: Testbed) -> Iterator[dict[str, str]]:
    """Each test twice: over paramiko, and over OpenSSH through a ProxyJump bastion (the env of pveoci's processes;
    the bastion must have forwarded to pve1 by the test's end)."""
    if request.param == "paramiko":
        yield {}
        return
    bastion = request.getfixturevalue("jump_host")
    before = forwarded_to(bastion, cluster.addresses["pve1"])
    yield request.getfixturevalue("through_jump_host")
    assert forwarded_to(bastion, cluster.addresses["pve1"]) > before, "nothing went through the jump host"


def push_json(bed: Testbed, bundle: Path, root: Path, transport: dict[str, str]) -> dict:  # type: ignore[type-arg]
    result = pveoci(bed, "template", "push", "-o", "json", "-b", str(bundle), "--node", "pve1", root=root,
                    **transport)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def big_bundle(path: Path, busybox_bundle: Path, files: int = 200, size: int = 100_000) -> Path:
    data = busybox_bundle / "rootfs" / "data"
    data.mkdir()
    for i in range(files):
        (data / f"f{i:04d}").write_bytes(os.urandom(size))
    return busybox_bundle


CREATE = """
import sys, pveoci
from pathlib import Path
st = pveoci.connect(config=sys.argv[1], root=sys.argv[2]).create(sys.argv[3], Path(sys.argv[4]), node="pve1")
print(st.template)
"""


def test_eight_concurrent_creates_of_a_new_bundle_upload_it_once(cluster: Testbed,
                                                                 transport: dict[str, str], busybox_bundle: Path,
                                                                 tmp_path: Path) -> None:
    """As one user's commands run at once: those that come while the upload is under way wait in its claim on the
    node; one that comes once the claim is gone (all its waiters have read it) finds the pack in the cache."""
    bundle = big_bundle(tmp_path, busybox_bundle)
    before = sftp_sessions(cluster, "pve1")
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(CREATE), str(cluster.config_path),
                               str(tmp_path / "cache"), f"c{i}", str(bundle)], env=cluster.env(**transport),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for i in range(8)]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outcomes
    assert len({out.strip() for out, _ in outcomes}) == 1   # one template for all
    assert sftp_sessions(cluster, "pve1") - before == 1
    templates = [p.name for p in cluster.template_dir("pve1").iterdir() if p.name.endswith(".tar.zst")]
    assert len(templates) == 1
    assert leftovers(cluster) == []   # the claim went once every waiter had read its result


KILLED = """
import sys, pveoci
from pathlib import Path
pveoci.connect(config=sys.argv[1], root=sys.argv[2]).templates.push(Path(sys.argv[3]), node="pve1")
"""


def killed_mid_upload(bed: Testbed, bundle: Path, cache: Path, transport: dict[str, str]) -> None:
    """A push SIGKILLed while its upload is under way (what it leaves is asserted to be there)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED), str(bed.config_path), str(cache),
                             str(bundle)], env=bed.env(**transport), cwd=ROOT)
    folder = bed.template_dir("pve1")
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".partial") and p.stat().st_size > (8 << 20) for p in folder.iterdir()):
        assert time.monotonic() < deadline, "the upload never started"
        assert proc.poll() is None, "the push ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert any(p.name.startswith(".pveoci-claim-") for p in folder.iterdir())  # it did leave its claim
    assert any(p.name.endswith(".partial") for p in folder.iterdir())           # and its partial file


def test_a_killed_upload_leaves_nothing_after_gc_and_the_next_push_succeeds(
        cluster: Testbed, transport: dict[str, str], busybox_bundle: Path, tmp_path: Path) -> None:
    bundle = big_bundle(tmp_path, busybox_bundle, files=60, size=4 << 20)  # incompressible: a long upload
    killed_mid_upload(cluster, bundle, tmp_path / "cache", transport)
    gc = pveoci(cluster, "gc", "-o", "json", root=tmp_path / "cache", **transport)
    assert gc.returncode == 0, gc.stderr
    assert [p.name for p in cluster.template_dir("pve1").iterdir()] == []
    assert json.loads(gc.stdout)["swept"]
    assert push_json(cluster, bundle, tmp_path / "cache", transport)["uploaded"]
    assert leftovers(cluster) == []


def test_the_push_after_a_killed_one_sweeps_what_it_left_and_leaves_nothing_itself(
        cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    bundle = big_bundle(tmp_path, busybox_bundle, files=60, size=4 << 20)
    killed_mid_upload(cluster, bundle, tmp_path / "cache", {})
    started = time.monotonic()
    assert push_json(cluster, bundle, tmp_path / "cache", {})["uploaded"]
    # The killed holder was a process of this machine: its claim is taken over at once, not after QUIET.
    assert time.monotonic() - started < sweep.QUIET / 2
    assert leftovers(cluster) == []


FAILING = """
import sys, pveoci
from pathlib import Path
import pveoci.runtime.push as push
from pveoci import errors
def pack(*args, stream, **kwargs):   # a pack that fails once its upload is under way
    stream(b"x" * (1 << 20))
    raise errors.BundleError("rootfs changed while it was packed")
push.pack = pack
pveoci.connect(config=sys.argv[1], root=sys.argv[2]).templates.push(Path(sys.argv[3]), node="pve1")
"""


def test_a_failed_push_leaves_nothing(cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    before = sftp_sessions(cluster, "pve1")
    failed = subprocess.run([sys.executable, "-c", textwrap.dedent(FAILING), str(cluster.config_path),
                             str(tmp_path / "cache"), str(busybox_bundle)], env=cluster.env(),
                            capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)
    assert failed.returncode != 0
    assert "rootfs changed while it was packed" in failed.stderr
    assert sftp_sessions(cluster, "pve1") > before   # its upload had begun
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_a_full_storage_is_refused_before_any_byte_is_sent(cluster: Testbed, busybox_bundle: Path,
                                                           tmp_path: Path) -> None:
    cluster.pve.storages["local"]["avail"] = 64 * 1024
    before = sftp_sessions(cluster, "pve1")
    result = pveoci(cluster, "template", "push", "-b", str(busybox_bundle), "--node", "pve1", root=tmp_path / "c")
    assert result.returncode == 1
    assert result.stderr.startswith("pveoci: error: storage 'local' on pve1 has 65536 bytes free")
    assert result.stderr.count("\n") == 1
    assert sftp_sessions(cluster, "pve1") == before
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_a_template_directory_pveoci_cannot_write_to_fails_at_once_with_the_reason(
        cluster: Testbed, busybox_bundle: Path, tmp_path: Path) -> None:
    folder = cluster.template_dir("pve1")
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    folder.write_text("not a directory")   # what mkdir says is all the user needs
    try:
        result = pveoci(cluster, "template", "push", "-b", str(busybox_bundle), "--node", "pve1",
                        root=tmp_path / "c")
    finally:
        folder.unlink()
        aside.rename(folder)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("pveoci: error: cannot write to "), result.stderr
    assert "/template/cache on node 'pve1': mkdir: cannot create directory " in result.stderr
    assert result.stderr.rstrip().endswith("Not a directory")


def test_after_a_small_change_the_node_gets_a_delta_that_makes_the_same_bytes(cluster: Testbed,
                                                                              transport: dict[str, str],
                                                                              busybox_bundle: Path,
                                                                              tmp_path: Path) -> None:
    bundle = big_bundle(tmp_path, busybox_bundle, files=400, size=50_000)
    first = push_json(cluster, bundle, tmp_path / "cache", transport)
    assert first["uploaded"]
    assert not first["delta"]
    assert leftovers(cluster) == []
    (bundle / "rootfs" / "data" / "f0200").write_bytes(os.urandom(4096))
    second = push_json(cluster, bundle, tmp_path / "cache", transport)
    assert second["delta"]
    assert leftovers(cluster) == []
    assert second["volid"] != first["volid"]
    assert second["bytes_sent"] <= 0.15 * second["size"]  # a frame or two (bench: <= 1% of a 550 MiB tree)
    delta_made = (cluster.template_dir("pve1") / second["volid"].split("/")[1]).read_bytes()
    # The same rootfs pushed in full, from another workstation's empty cache, to the other node.
    full = pveoci(cluster, "template", "push", "-o", "json", "-b", str(bundle), "--node", "pve2",
                  root=tmp_path / "elsewhere", XDG_CACHE_HOME=str(tmp_path / "xdg-elsewhere"), **transport)
    assert full.returncode == 0, full.stderr
    assert not json.loads(full.stdout)["delta"]
    assert (cluster.template_dir("pve2") / second["volid"].split("/")[1]).read_bytes() == delta_made
    assert leftovers(cluster, "pve2") == []


def test_a_push_through_the_upload_api_lands_under_the_templates_name(cluster: Testbed, busybox_bundle: Path,
                                                                      tmp_path: Path) -> None:
    # Packed while it is spooled to a local file: the file part must carry the template's name, not the spool's.
    result = pveoci(cluster, "template", "push", "-o", "json", "-b", str(busybox_bundle), "--node", "pve1",
                    "--transport", "api", root=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    name = pushed["volid"].split("/", 1)[1]
    assert pushed["uploaded"]
    assert sorted(p.name for p in cluster.template_dir("pve1").iterdir() if not p.name.startswith(".")) == [name]
    assert (cluster.template_dir("pve1") / name).stat().st_size == pushed["size"]


UNPACKED = """
import sys, pveoci
from pathlib import Path
import pveoci.runtime.push as push
def refuse(*a, **k):
    raise SystemExit("packed again")
push.pack = refuse
print(pveoci.connect(config=sys.argv[1], root=sys.argv[2]).templates.push(Path(sys.argv[3]), node="pve1").volid)
"""


def push_unpacked(bed: Testbed, root: Path, bundle: Path,
                  transport: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`template push` in a process where packing fails the push (\"packed again\")."""
    return subprocess.run([sys.executable, "-c", UNPACKED, str(bed.config_path), str(root), str(bundle)],
                          env=bed.env(**transport), capture_output=True, text=True, check=False, cwd=ROOT)


def test_an_unchanged_rootfs_is_not_packed_again(cluster: Testbed, transport: dict[str, str], busybox_bundle: Path,
                                                 tmp_path: Path) -> None:
    first = push_json(cluster, busybox_bundle, tmp_path / "cache", transport)
    assert leftovers(cluster) == []
    again = push_unpacked(cluster, tmp_path / "cache", busybox_bundle, transport)
    assert (again.returncode, again.stdout.strip()) == (0, first["volid"]), again.stderr
    os.utime(busybox_bundle / "rootfs" / "etc" / "passwd")  # any change at all packs again
    changed = push_unpacked(cluster, tmp_path / "cache", busybox_bundle, transport)
    assert changed.returncode != 0
    assert "packed again" in changed.stderr


def test_an_alike_tree_elsewhere_or_on_another_workstation_costs_a_stat_walk(cluster: Testbed, busybox_bundle: Path,
                                                                             tmp_path: Path) -> None:
    first = push_json(cluster, busybox_bundle, tmp_path / "cache", {})
    copy = tmp_path / "copy"   # byte for byte, with its times: as an engine's overlay of the same image shows it
    subprocess.run(["cp", "-a", str(busybox_bundle), str(copy)], check=True)
    (copy / "rootfs" / "etc" / "mtab").symlink_to("/proc/mounts")   # what podman adds as it sets a container up
    (busybox_bundle / "rootfs" / "etc" / "mtab").symlink_to("/proc/mounts")
    sessions = sftp_sessions(cluster, "pve1")
    pushed = push_json(cluster, busybox_bundle, tmp_path / "cache", {})   # the original, with its own mtab
    assert pushed["uploaded"]
    assert pushed["volid"] != first["volid"]
    sent = sftp_sessions(cluster, "pve1")
    assert sent > sessions
    here = push_unpacked(cluster, tmp_path / "cache", copy, {})                   # this workstation, a new path
    there = push_unpacked(cluster, tmp_path / "another-workstation", copy, {})   # no pack of it known there
    assert [(d.returncode, d.stdout.strip()) for d in (here, there)] == [(0, pushed["volid"])] * 2, \
        (here.stderr, there.stderr)
    assert sftp_sessions(cluster, "pve1") == sent   # nothing sent
    # At a path packed (or recognised) before, only the exact walk counts: a file rewritten to the same size with
    # its times put back packs again, there as on the first path.
    passwd = copy / "rootfs" / "etc" / "passwd"
    times = passwd.stat()
    passwd.write_text(passwd.read_text().upper())
    os.utime(passwd, ns=(times.st_atime_ns, times.st_mtime_ns))
    changed = push_unpacked(cluster, tmp_path / "another-workstation", copy, {})
    assert (changed.returncode, "packed again") == (1, changed.stderr.strip().splitlines()[-1]), changed.stderr


def test_a_push_that_finds_its_template_there_sends_nothing_and_leaves_nothing(
        cluster: Testbed, transport: dict[str, str], busybox_bundle: Path, tmp_path: Path) -> None:
    first = push_json(cluster, busybox_bundle, tmp_path / "cache", transport)
    passwd = busybox_bundle / "rootfs" / "etc" / "passwd"
    os.chmod(passwd, passwd.stat().st_mode)   # a new ctime: walked as changed, packed the same
    again = push_json(cluster, busybox_bundle, tmp_path / "cache", transport)
    assert (again["volid"], again["uploaded"], again["bytes_sent"]) == (first["volid"], False, 0)
    assert leftovers(cluster) == []
