"""The node's half of `--pull node` (pveoci.backends.imagescript), run as on a node: sh, find, tar, zstd, and a `pct`
that mounts the container where a real one would say; and what image/nodetree.py answers from its report."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from pveoci import errors
from pveoci.backends import imagescript
from pveoci.image.nodetree import NodeTree, load, save
from tests.conftest import need

PCT = """#!/bin/sh
case $1 in
mount) echo "mounted CT $2 in '$ROOTFS'" ;;
unmount) : ;;
esac
"""
CONFIG_DIGEST = "sha256:" + "c" * 64
OTHER_DIGEST = "sha256:" + "d" * 64


def image_tree(root: Path) -> None:
    """What Proxmox unpacked: merged /usr (bin -> usr/bin), an absolute link, a loop, a link out of the tree, a hard
    link, a setuid program, the two files a create reads."""
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr" / "bin" / "app").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr" / "bin" / "app", 0o4755)  # noqa: S103 - a setuid program, as images have
    os.link(root / "usr" / "bin" / "app", root / "usr" / "bin" / "app2")
    (root / "usr" / "bin" / "abs").symlink_to("/usr/bin/app")
    (root / "usr" / "bin" / "out").symlink_to("../../../../etc/shadow")   # ".." stops at the root
    (root / "loop").symlink_to("loop")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    (root / "etc" / "a name\nwith a newline").write_text("odd")
    (root / "dev").mkdir()
    (root / "dev" / "null-ish").write_text("not packed")
    (root / "srv").mkdir(mode=0o750)


def oci_archive(path: Path, config_digest: str) -> None:
    """A minimal OCI archive as skopeo writes one: index.json naming a manifest blob whose config is config_digest."""
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": 2}, "layers": []}).encode()
    import hashlib

    digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                           "digest": f"sha256:{digest}",
                                                           "size": len(manifest)}]}).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                           (f"blobs/sha256/{digest}", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    need([] if all(Path(f"/usr/bin/{tool}").exists() for tool in ("zstd", "find", "tar")) else ["zstd, find, tar"])
    bin_dir, root, store = tmp_path / "bin", tmp_path / "rootfs", tmp_path / "cache"
    bin_dir.mkdir()
    (bin_dir / "pct").write_text(PCT)
    (bin_dir / "pct").chmod(0o755)
    root.mkdir()
    store.mkdir()
    image_tree(root)
    return {"bin": bin_dir, "root": root, "store": store, "tmp": tmp_path}


def script(node: dict[str, Path], *, partial: str = "", archive: str = "", digest: str = "",
           init: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PATH": f"{node['bin']}:{os.environ['PATH']}", "ROOTFS": str(node["root"])}
    return subprocess.run(["sh", "-c", imagescript.SCRIPT, "sh", "120", "0:0", "", partial, "likeprefix12345",
                           "16", archive, digest], input=init, env=env, capture_output=True, check=False)


def test_the_report_answers_what_a_create_asks_as_the_layers_would(node: dict[str, Path]) -> None:
    done = script(node)
    found = imagescript.parse(done.returncode, done.stdout, done.stderr, "CT 120 on pve1")
    assert (found.template, found.size) == ("", 0)
    assert set(found.files) == {"etc/passwd", "etc/group"}
    tree = NodeTree(found.listing, found.files)
    assert tree.mode("/bin/app") == stat.S_IFREG | 0o4755           # through bin -> usr/bin, setuid kept
    assert tree.resolve("/bin/abs") == "usr/bin/app"
    assert tree.mode("/usr/bin/out") is None                         # ../../.. stops at the root: /etc/shadow
    assert tree.mode("/loop") is None                                # 40 hops, then absent
    assert (tree.kind("/srv"), tree.mode("/srv")) == ("dir", stat.S_IFDIR | 0o750)
    assert tree.kind("/etc/a name\nwith a newline") == "file"
    assert tree.read_file("/etc/passwd") == (node["root"] / "etc" / "passwd").read_bytes()
    assert tree.read_file("/nothing") is None
    regular = [p for p in node["root"].rglob("*") if p.is_file() and not p.is_symlink()]
    assert tree.size == sum(p.stat().st_size for p in regular) - len(b"#!/bin/sh\n")   # the hard link once
    kept = node["tmp"] / "kept.tree"
    save(kept, found.listing, found.files)
    again = load(kept)
    assert again is not None
    assert (again.size, again.read_file("/etc/group")) == (tree.size, b"root:x:0:\napp:x:1000:\n")


def test_a_file_behind_a_link_is_said_not_read_through_it(node: dict[str, Path]) -> None:
    (node["root"] / "etc" / "passwd").unlink()
    (node["root"] / "etc" / "passwd").symlink_to("/usr/lib/passwd")
    (node["root"] / "usr" / "lib").mkdir()
    (node["root"] / "usr" / "lib" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    done = script(node)
    found = imagescript.parse(done.returncode, done.stdout, done.stderr, "CT 120 on pve1")
    assert set(found.files) == {"etc/group"}                         # the link is not followed on the node
    with pytest.raises(errors.ImageError, match=r"passwd is /usr/lib/passwd \(a symbolic link\).*--pull workstation"):
        NodeTree(found.listing, found.files).read_file("/etc/passwd")


def test_the_pack_holds_the_tree_and_the_init_and_is_named_by_its_digest(node: dict[str, Path]) -> None:
    partial = str(node["store"] / ".pveoci-node.host-1-abcd.partial")
    archive = node["tmp"] / "pveoci-oci-x.tar"
    oci_archive(archive, CONFIG_DIGEST)
    done = script(node, partial=partial, archive=str(archive), digest=CONFIG_DIGEST, init=b"\x7fELF init")
    found = imagescript.parse(done.returncode, done.stdout, done.stderr, "CT 120 on pve1")
    made = node["store"] / found.template
    assert sorted(p.name for p in node["store"].iterdir()) == [found.template]   # the partial linked, then gone
    assert found.template.startswith("pveoci-")
    assert found.template.endswith("-likeprefix12345.tar.zst")
    import hashlib

    assert found.template.split("-")[1] == hashlib.sha256(made.read_bytes()).hexdigest()[:16]
    assert found.size == made.stat().st_size
    data = zstandard.ZstdDecompressor().stream_reader(made.open("rb")).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["./.pveoci/init"]).read() == b"\x7fELF init"  # type: ignore[union-attr]
    assert (members["./.pveoci/init"].mode, members["./.pveoci/run"].mode) == (0o755, 0o711)
    assert (members["./.pveoci/init"].uid, members["./.pveoci/init"].gid) == (0, 0)
    assert members["./usr/bin/app"].mode == 0o4755
    assert members["./bin"].issym()
    assert members["./usr/bin/app2"].islnk()
    assert "./dev" in members
    assert "./dev/null-ish" not in members    # as Proxmox unpacks a template: nothing in /dev


def test_an_archive_of_another_image_packs_nothing(node: dict[str, Path]) -> None:
    partial = str(node["store"] / ".pveoci-node.host-1-abcd.partial")
    archive = node["tmp"] / "pveoci-oci-x.tar"
    oci_archive(archive, OTHER_DIGEST)   # the tag moved between the workstation's question and the node's pull
    done = script(node, partial=partial, archive=str(archive), digest=CONFIG_DIGEST, init=b"init")
    with pytest.raises(errors.PveociError, match=f"the pulled archive holds the image {OTHER_DIGEST}, not "
                                                 f"{CONFIG_DIGEST}$"):
        imagescript.parse(done.returncode, done.stdout, done.stderr, "CT 120 on pve1")
    assert list(node["store"].iterdir()) == []
    assert not (node["root"] / ".pveoci").exists()


def test_a_pack_that_fails_leaves_nothing(node: dict[str, Path]) -> None:
    partial = str(node["store"] / ".pveoci-node.host-1-abcd.partial")
    (node["bin"] / "zstd").write_text("#!/bin/sh\ncat > /dev/null; exit 1\n")
    (node["bin"] / "zstd").chmod(0o755)
    done = script(node, partial=partial, init=b"init")
    with pytest.raises(errors.PveociError, match=r"cannot compress the template$"):
        imagescript.parse(done.returncode, done.stdout, done.stderr, "CT 120 on pve1")
    assert list(node["store"].iterdir()) == []


def test_a_broken_listing_is_refused_in_one_line() -> None:
    with pytest.raises(errors.ImageError, match="cut short"):
        NodeTree(b"f 644 1 2\0a", {})
    with pytest.raises(errors.ImageError, match="broken entry"):
        NodeTree(b"x 644 1 2\0a\0\0", {})
    with pytest.raises(errors.ImageError, match="before its directory"):
        NodeTree(b"f 644 1 2\0a/b\0\0", {})
