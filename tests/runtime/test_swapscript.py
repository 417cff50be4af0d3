"""The node's half of an image update (pveoci.backends.swapscript), run as on a node: sh, tar, zstd, and a `pct`
that mounts the container where a real one would say. Killed after every move it makes, an update is undone
exactly (same inodes), or finished."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pveoci.backends.swapscript import SCRIPT
from tests.conftest import need

Tree = dict[str, tuple[Any, ...]]

PCT = """#!/bin/sh
case $1 in
mount) echo "mounted CT $2 in '$ROOTFS'" ;;
unmount) : ;;
esac
"""
# `mv` that lets N moves through, then kills the script that asked (as a killed update's node side would end).
MV = """#!/bin/sh
n=$(cat "$MOVES")
if [ "$n" -le 0 ]; then kill -KILL $PPID; exit 1; fi
echo $((n - 1)) > "$MOVES"
exec /bin/mv "$@"
"""


def snapshot(root: Path, *, inodes: bool = True) -> Tree:
    """Every entry under root: kind, mode, owner, content or target (and inode)."""
    tree: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = path.read_bytes()
            else:
                what = None
            tree[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                                 what, st.st_ino if inodes else 0)
    return tree


def make_old(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "old").write_bytes(b"old program")
    (root / "etc").mkdir()
    (root / "etc" / "config").write_text("old config")
    (root / "etc" / "a name\nwith a newline").write_text("odd")
    (root / ".hidden").write_text("hidden")
    (root / "..dots").write_text("dots")
    (root / "link").symlink_to("/bin/old")
    (root / "data").mkdir()                       # a mount point at the top
    (root / "data" / "keep.db").write_text("volume data")
    (root / "srv" / "data").mkdir(parents=True)   # a mount point under a directory of the image
    (root / "srv" / "data" / "kept").write_text("nested volume data")
    (root / "srv" / "old-site").write_text("old site")
    (root / "lost+found").mkdir()
    os.chown(root / "etc" / "config", 1000, 1000)


def make_template(path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, uid: int = 0,
                target: str = "") -> None:
            info = tarfile.TarInfo("./" + name)
            info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, uid, uid, target
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("bin", tarfile.DIRTYPE, mode=0o755)
        add("bin/new", data=b"new program", mode=0o755)
        add("srv", tarfile.DIRTYPE, mode=0o750)
        add("srv/new-site", data=b"new site", uid=33)
        add("srv/data", tarfile.DIRTYPE)
        add("srv/data/from-image", data=b"hidden by the volume")
        add("data", tarfile.DIRTYPE)
        add("etc", tarfile.DIRTYPE)
        add("etc/config", data=b"new config", uid=1000)
        add("sbin", tarfile.SYMTYPE, target="bin")
        add("dev", tarfile.DIRTYPE)
        add("dev/null-ish", data=b"never unpacked")
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Any]:
    need([] if os.geteuid() == 0 else ["root (the node's side runs as root: chown, owners kept by tar)"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("pct", PCT), ("mv", MV)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    rootfs = tmp_path / "rootfs"
    make_old(rootfs)
    make_template(tmp_path / "pveoci-new.tar.zst")
    moves = tmp_path / "moves"
    moves.write_text("1000000")
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "ROOTFS": str(rootfs), "MOVES": str(moves)}
    return {"rootfs": rootfs, "template": str(tmp_path / "pveoci-new.tar.zst"), "env": env, "moves": moves}


def run(node: dict[str, Any], action: str, *, moves: int = 1000000, need_bytes: int = 0, owner: str = "0:0",
        userns: str = "", keep: str = "data\nsrv/data") -> tuple[int, str]:
    node["moves"].write_text(str(moves))
    done = subprocess.run(["sh", "-c", SCRIPT, "sh", action, "100", "0", node["template"], owner, userns,
                           keep, str(need_bytes)], env=node["env"], capture_output=True, check=False)
    return done.returncode, done.stdout.decode().strip().splitlines()[-1] if done.stdout.strip() else ""


def test_a_swap_puts_the_image_in_and_keeps_the_volumes_and_back_restores_the_same_files(
        node: dict[str, Any]) -> None:
    root = node["rootfs"]
    before = snapshot(root)
    assert run(node, "swap") == (0, "ok swapped pveoci-new.tar.zst")
    after = snapshot(root, inodes=False)
    assert (root / "bin" / "new").read_bytes() == b"new program"
    assert not (root / "bin" / "old").exists()
    assert not (root / ".hidden").exists()
    assert (root / "etc" / "config").read_text() == "new config"
    assert (root / "etc" / "config").stat().st_uid == 1000
    assert os.readlink(root / "sbin") == "bin"
    assert (root / "srv" / "new-site").stat().st_uid == 33
    assert not (root / "srv" / "old-site").exists()
    # The volumes and what is in them stay; the image's files under a mount point do not reach it.
    assert (root / "data" / "keep.db").read_text() == "volume data"
    assert sorted(os.listdir(root / "srv" / "data")) == ["kept"]
    assert not (root / "dev" / "null-ish").exists()
    assert "lost+found" in after
    # The old tree waits whole for commit or back.
    assert (root / ".pveoci-update" / "prev" / "bin" / "old").read_bytes() == b"old program"
    assert run(node, "state") == (0, "ok swapped pveoci-new.tar.zst")
    assert run(node, "back") == (0, "ok none")
    assert snapshot(root) == before


def test_a_kept_directory_keeps_the_old_trees_content_or_takes_the_new_images(node: dict[str, Any]) -> None:
    """A volume the image declares (or --keep): the old tree's content stays when it has the path, the new image's
    directory comes in when it has not; undone, the old tree is as it was, inodes and all."""
    root = node["rootfs"]
    (root / "etc" / "app").mkdir()
    (root / "etc" / "app" / "state.db").write_text("written by the old process")
    before = snapshot(root)
    keep = "data\nsrv/data\netc/app\nsbin"
    assert run(node, "swap", keep=keep) == (0, "ok swapped pveoci-new.tar.zst")
    assert (root / "etc" / "app" / "state.db").read_text() == "written by the old process"
    assert (root / "etc" / "config").read_text() == "new config"     # the rest of /etc is the new image's
    assert (root / "bin" / "new").exists()
    assert os.readlink(root / "sbin") == "bin"     # not in the old tree: the new image's
    # Later steps keep what the swap kept, whatever they are told.
    assert run(node, "back", keep="") == (0, "ok none")
    assert snapshot(root) == before


def test_commit_leaves_nothing_of_the_update(node: dict[str, Any]) -> None:
    root = node["rootfs"]
    assert run(node, "swap")[0] == 0
    assert run(node, "commit") == (0, "ok none")
    assert not (root / ".pveoci-update").exists()
    assert sorted(os.listdir(root)) == ["bin", "data", "dev", "etc", "lost+found", "sbin", "srv"]


def test_killed_after_any_move_it_is_undone_exactly_or_finished(node: dict[str, Any]) -> None:
    root = node["rootfs"]
    before = snapshot(root)
    run(node, "swap")
    total = 1000000 - int(node["moves"].read_text())   # how many moves a whole swap makes
    run(node, "back")
    assert snapshot(root) == before
    assert total > 10
    for killed_after in range(total):
        code, _ = run(node, "swap", moves=killed_after)
        assert code != 0
        state = run(node, "state")[1].split()[1]
        assert state in ("extract", "out", "in"), (killed_after, state)
        if state == "extract":   # nothing moved yet: a new swap starts over
            assert run(node, "swap")[1] == "ok swapped pveoci-new.tar.zst"
            assert run(node, "back")[0] == 0
            assert snapshot(root) == before
            continue
        # Another swap is refused while one did not finish: it says where that one got.
        assert run(node, "swap")[0] == 4
        if killed_after % 2:
            assert run(node, "back") == (0, "ok none")
            assert snapshot(root) == before, killed_after
        else:   # finished by a new swap after the undo
            assert run(node, "back")[0] == 0
            assert run(node, "swap")[1] == "ok swapped pveoci-new.tar.zst"
            assert run(node, "back")[0] == 0
            assert snapshot(root) == before


def test_killed_while_unpacking_a_new_swap_starts_over(node: dict[str, Any]) -> None:
    root = node["rootfs"]
    before = snapshot(root)
    update = root / ".pveoci-update"
    update.mkdir()
    (update / "next").mkdir()
    (update / "next" / "half").write_text("half unpacked")
    (update / "state").write_text("extract\n")
    assert run(node, "state")[1].split()[1] == "extract"
    assert run(node, "swap")[1] == "ok swapped pveoci-new.tar.zst"
    assert not (root / "half").exists()
    assert run(node, "back")[0] == 0
    assert snapshot(root) == before


def test_a_template_too_big_for_the_disk_or_broken_changes_nothing(node: dict[str, Any], tmp_path: Path) -> None:
    root = node["rootfs"]
    before = snapshot(root)
    assert run(node, "check") == (0, "ok none")
    code, said = run(node, "check", need_bytes=1 << 60)
    assert code == 1
    assert said.startswith("error the root disk has ")
    assert snapshot(root) == before
    code, said = run(node, "swap", need_bytes=1 << 60)
    assert code == 1
    assert said.startswith("error the root disk has ")
    assert "MiB free; the new image needs" in said
    assert snapshot(root) == before
    Path(node["template"]).write_bytes(b"(not zstd)")
    code, said = run(node, "swap")
    assert code == 1
    assert said.startswith("error cannot unpack ")
    assert snapshot(root) == before
    os.unlink(node["template"])
    assert run(node, "swap") == (1, f"error no template {node['template']} on the node")
    assert snapshot(root) == before


def test_signals_do_not_stop_a_step_half_way(node: dict[str, Any]) -> None:
    """The workstation's SSH session closing sends HUP (or TERM to the group): the step runs to its end."""
    root = node["rootfs"]
    node["moves"].write_text("1000000")
    trap = "trap '' HUP INT TERM PIPE\n"
    assert trap in SCRIPT
    signalled = SCRIPT.replace(trap, trap + "kill -HUP $$; kill -TERM $$; kill -INT $$\n", 1)
    proc = subprocess.Popen(["sh", "-c", signalled, "sh", "swap", "100", "0",
                             node["template"], "0:0", "", "data\nsrv/data", "0"], env=node["env"],
                            stdout=subprocess.PIPE, start_new_session=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.decode().strip().endswith("ok swapped pveoci-new.tar.zst")
    assert (root / "bin" / "new").exists()


def test_an_unprivileged_containers_tree_is_unpacked_as_its_root(node: dict[str, Any]) -> None:
    """As Proxmox unpacks a template into an unprivileged container: by lxc-usernsexec with its id map, so every
    owner is shifted by 100000 (a PVE node's /etc/subuid gives root those ids; contrib/setup.sh adds them)."""
    probe = subprocess.run(["lxc-usernsexec", "-m", "u:0:100000:65536", "-m", "g:0:100000:65536", "--", "true"],
                           capture_output=True, check=False)
    need([] if probe.returncode == 0 else ["lxc-usernsexec mapping root to 100000 (root:100000:65536 in "
                                          "/etc/subuid and /etc/subgid: contrib/setup.sh)"])
    # The container's root where its root can reach it (as /var/lib/lxc/VMID/rootfs on a node; pytest's own
    # directories are root's alone).
    where = Path(tempfile.mkdtemp(prefix="pveoci-swap-"))
    try:
        where.chmod(0o755)
        root = where / "rootfs"
        make_old(root)
        node["env"]["ROOTFS"] = str(root)
        os.chown(root, 100000, 100000)
        unprivileged(node, root)
    finally:
        shutil.rmtree(where)


def unprivileged(node: dict[str, Any], root: Path) -> None:
    before = snapshot(root)
    said = run(node, "swap", owner="100000:100000", userns="u:0:100000:65536 g:0:100000:65536")
    assert said == (0, "ok swapped pveoci-new.tar.zst")
    assert (root / "bin" / "new").stat().st_uid == 100000
    assert (root / "etc" / "config").stat().st_uid == 101000
    assert (root / "srv" / "new-site").stat().st_gid == 100033
    assert run(node, "back")[0] == 0
    assert snapshot(root) == before
