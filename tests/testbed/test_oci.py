"""The bed's nodes have Proxmox VE 9.1's OCI support (tests/testbed/oci.py): a pull from a registry into a node's
template storage, and a create from an OCI archive that runs the image's process with its config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pveoci import errors
from tests.conftest import need
from tests.image.registry import (
    GROUP,
    PASSWD,
    Registry,
    add_raw_layer,
    build_image,
    combine,
    missing_for_registry,
    oci_archive,
    push,
)
from tests.testbed import Testbed
from tests.testbed.lxc import LxcError
from tests.testbed.oci import ct_config, resolve_oci_user
from tests.testbed.test_lxc import eventually

pytestmark = pytest.mark.bed

# PID 1 of the image: says who and where it runs, then waits; SIGINT (the image's StopSignal) ends it cleanly, the
# SIGPWR LXC sends by default would not.
APP = b"""#!/bin/sh
echo "app $1: uid=$(id -u) gid=$(id -g) groups=$(id -G) cwd=$(pwd) greeting=$GREETING"
trap 'echo stopping on SIGINT; exit 0' INT
while :; do sleep 0.1; done
"""
APP_CONFIG = {
    "Entrypoint": ["/bin/app"],
    "Cmd": ["serve"],
    "Env": ["PATH=/bin:/usr/bin", "GREETING=hello from the image"],
    "WorkingDir": "/srv",
    "User": "app",  # 1000:1000 in the image's passwd, and a member of the group `extra` (2000)
    "StopSignal": "SIGINT",
    "Volumes": {"/data": {}},
}
# Over the busybox base: files, then a replaced file and two whiteouts (a file, a directory), then (raw) an opaque
# directory that hides what the lower layers had in it and keeps its own file.
APP_LAYERS: list[dict[str, bytes | None]] = [
    {"bin/app": APP, "etc/motd": b"first\n", "opt/app/old.txt": b"old\n", "opt/app/keep.txt": b"kept\n",
     "opt/gone/file": b"x\n", "var/cache/app/lower.txt": b"lower\n", "var/cache/app/sub/deep.txt": b"deep\n"},
    {"etc/motd": b"second\n", "opt/app/old.txt": None, "opt/gone": None},
]
OPAQUE_LAYER = {"var/cache/app/": b"", "var/cache/app/.wh..wh..opq": b"", "var/cache/app/upper.txt": b"upper\n"}
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Image:
    layout: Path     # the OCI layout it was built in (tagged "latest")
    reference: str   # HOST/app:1 on the public registry
    digest: str      # its manifest's


@pytest.fixture(scope="module")
def app(public_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The app image (see APP_CONFIG, APP_LAYERS, OPAQUE_LAYER) pushed as app:1 and app:2."""
    layout = build_image(tmp_path_factory.mktemp("app"), layers=APP_LAYERS, config=APP_CONFIG)
    add_raw_layer(layout, OPAQUE_LAYER)
    digest = push(public_registry, layout, "latest", "app:1")
    push(public_registry, layout, "latest", "app:2")
    return Image(layout, f"{public_registry.host}/app:1", digest)


@pytest.fixture(scope="module")
def arch_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One image per architecture (the host's busybox in both), each with /arch naming its own; the first is *not*
    the architecture of the machine the bed runs on, so that picking by architecture would be seen."""
    need(missing_for_registry())
    host = ARCHES.get(os.uname().machine, "amd64")
    order = [a for a in ("arm64", "amd64") if a != host] + [host]
    work = tmp_path_factory.mktemp("arches")
    return {arch: build_image(work / arch, layers=[{"arch": arch.encode()}], arch=arch,
                              config={"Cmd": ["cat", "/arch"]})
            for arch in order}


@pytest.fixture
def client(cluster: Testbed, connect: Any, public_registry: Registry) -> Iterator[Any]:
    """The bed's client, its token also allowed to reach the network from the nodes (Sys.AccessNetwork, which a
    pull needs besides Datastore.AllocateTemplate); the nodes trust the public registry's CA."""
    cluster.pve.grant(cluster.token_id.split("!")[0], "/nodes", "Sys.AccessNetwork")
    cluster.pve.oci_cert_dir = public_registry.certs_dir()
    yield connect()
    cluster.pve.oci_cert_dir = None


def pull(client: Any, reference: str, node: str = "pve1", storage: str = "local", **options: Any) -> list[str]:
    """Pull and wait; the task's log."""
    log: list[str] = []
    upid = client.post("nodes", node, "storage", storage, "oci-registry-pull", reference=reference, **options)
    assert upid.split(":")[5] == "ociregistrypull"
    client.wait(upid, on_log=log.append)
    return log


def create(client: Any, vmid: int, ostemplate: str, node: str = "pve1", **options: Any) -> list[str]:
    """Create and wait; the task's log."""
    log: list[str] = []
    client.wait(client.post("nodes", node, "lxc", vmid=vmid, ostemplate=ostemplate, rootfs="local-lvm:1", **options),
                on_log=log.append)
    return log


def templates(client: Any, node: str) -> dict[str, dict[str, Any]]:
    return {i["volid"]: i for i in client.get("nodes", node, "storage", "local", "content", content="vztmpl")}


def member(archive: Path, name: str) -> bytes:
    return subprocess.run(["tar", "-xOf", str(archive), name], capture_output=True, check=True).stdout


# ------------------------------------------------------------------------------ pull


def test_a_pull_stores_the_image_on_the_node_asked_and_nowhere_else(cluster: Testbed, client: Any,
                                                                    app: Image) -> None:
    log = pull(client, app.reference)
    archive = cluster.template_dir("pve1") / "app_1.tar"  # PVE's name: the reference's last part, normalised
    assert sorted(p.name for p in archive.parent.iterdir()) == ["app_1.tar"]  # the temporary file renamed
    assert not (cluster.template_dir("pve2") / "app_1.tar").exists()
    assert templates(client, "pve1")["local:vztmpl/app_1.tar"]["format"] == "tar"
    assert "local:vztmpl/app_1.tar" not in templates(client, "pve2")
    # skopeo's oci-archive of the registry's very image, and skopeo's own words in the task log.
    assert json.loads(member(archive, "index.json"))["manifests"][0]["digest"] == app.digest
    assert "Writing manifest to image destination" in log


def test_a_given_filename_is_normalised_as_pve_does(cluster: Testbed, client: Any, app: Image) -> None:
    pull(client, app.reference, filename="some dir/my app:v1")
    assert sorted(p.name for p in cluster.template_dir("pve1").iterdir()) == ["my_app_v1.tar"]


@pytest.mark.parametrize("tail", ["app@sha256:" + "0" * 64, "app:1@sha256:" + "0" * 64, "app", "App:1"])
def test_a_reference_that_is_not_a_tag_is_refused(cluster: Testbed, client: Any, app: Image, tail: str) -> None:
    host = app.reference.split("/")[0]
    with pytest.raises(errors.InvalidParameter) as refused:
        client.post("nodes", "pve1", "storage", "local", "oci-registry-pull", reference=f"{host}/{tail}")
    assert refused.value.errors == {"reference": "value does not match the regex pattern"}
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_an_existing_file_is_never_overwritten(cluster: Testbed, client: Any, app: Image) -> None:
    mine = cluster.template_dir("pve1") / "app_1.tar"
    mine.write_bytes(b"mine")
    with pytest.raises(errors.PveociError, match=r"refusing to override existing file 'app_1.tar'$"):
        client.post("nodes", "pve1", "storage", "local", "oci-registry-pull", reference=app.reference)
    assert mine.read_bytes() == b"mine"
    pull(client, app.reference, node="pve2")  # pve2 has no such file
    assert (cluster.template_dir("pve2") / "app_1.tar").is_file()


def test_a_storage_for_no_templates_or_no_files_is_refused(cluster: Testbed, client: Any, app: Image) -> None:
    not_files = r"can't upload to storage type 'lvmthin', not a file based storage!$"
    with pytest.raises(errors.PveociError, match=not_files):
        client.post("nodes", "pve1", "storage", "local-lvm", "oci-registry-pull", reference=app.reference)
    cluster.pve.storages["local"]["content"] = "iso,backup"
    with pytest.raises(errors.PveociError, match=r"storage 'local' is not configured for content-type 'vztmpl'$"):
        client.post("nodes", "pve1", "storage", "local", "oci-registry-pull", reference=app.reference)
    assert list(cluster.template_dir("pve1").iterdir()) == []


def test_a_pull_needs_sys_access_network_on_the_node(cluster: Testbed, connect: Any, app: Image) -> None:
    client = connect()  # the bed's token: pveoci's privileges, which do not include it
    with pytest.raises(errors.PermissionDenied) as denied:
        client.post("nodes", "pve1", "storage", "local", "oci-registry-pull", reference=app.reference)
    assert (denied.value.path, denied.value.privilege) == ("/nodes/pve1", "Sys.AccessNetwork")


def test_a_registry_that_asks_for_credentials_fails_the_task(cluster: Testbed, client: Any, app: Image,
                                                             tmp_path: Path) -> None:
    with Registry(tmp_path / "private", auth=True) as private:
        push(private, app.layout, "latest", "app:1")
        cluster.pve.oci_cert_dir = private.certs_dir()
        reference = f"{private.host}/app:1"
        with pytest.raises(errors.TaskFailed) as failed:
            pull(client, reference)
    folder = re.escape(f"{cluster.pve.storage_path}/template/cache")
    command = rf"skopeo copy docker://{re.escape(reference)} oci-archive:{folder}/app_1\.tar\.tmp\.\d+"
    assert re.fullmatch(rf"command '{command}' failed: exit code 1", failed.value.exitstatus)
    assert any("authentication required" in line for line in failed.value.log_tail)  # skopeo's words
    assert not (cluster.template_dir("pve1") / "app_1.tar").exists()


def test_the_tags_of_a_repository_are_listed(client: Any, app: Image) -> None:
    repository = app.reference.rsplit(":", 1)[0]
    assert sorted(client.get("nodes", "pve1", "query-oci-repo-tags", reference=repository)) == ["1", "2"]


# ---------------------------------------------------------------------------- create


def test_a_create_from_a_pulled_image_runs_its_process_as_its_config_says(lxc_bed: Testbed, client: Any,
                                                                         app: Image) -> None:
    pull(client, app.reference)
    log = create(client, 760, "local:vztmpl/app_1.tar", entrypoint="/bin/ignored", env="OLD=1",
                 net0="name=eth0,bridge=vmbr0,ip=dhcp")
    assert "Detected OCI archive" in log
    assert "creating base directory for volume at /data" in log
    assert "Auto-Enabling host-managed network for network device net0." in log
    config = client.get("nodes", "pve1", "lxc", 760, "config")
    # The image's entrypoint and env replace those of the create.
    assert config["entrypoint"] == "/bin/app serve"
    assert config["env"] == "PATH=/bin:/usr/bin\0GREETING=hello from the image"
    assert config["cmode"] == "console"
    assert "host-managed=1" in config["net0"].split(",")
    assert config["lxc"] == [["lxc.init.uid", "1000"], ["lxc.init.gid", "1000"], ["lxc.init.groups", "2000"],
                             ["lxc.init.cwd", "/srv"], ["lxc.signal.halt", "SIGINT"]]
    assert (lxc_bed.ct_dir("pve1", 760) / "rootfs" / "data").is_dir()

    client.wait(client.post("nodes", "pve1", "lxc", 760, "status", "start"))
    pid = client.get("nodes", "pve1", "lxc", 760, "status", "current")["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^Uid:\t1000\t", status, re.M)
    assert re.search(r"^Gid:\t1000\t", status, re.M)
    console = lxc_bed.console_log("pve1", 760)
    said = "app serve: uid=1000 gid=1000 groups=1000 2000 cwd=/srv greeting=hello from the image"
    assert eventually(lambda: said in console.read_text()), console.read_text()
    # A shutdown sends the image's StopSignal, which the process handles; LXC's default SIGPWR would time out.
    client.wait(client.post("nodes", "pve1", "lxc", 760, "status", "shutdown", timeout=10))
    assert "stopping on SIGINT" in console.read_text()


def test_the_layers_are_applied_in_order_with_their_whiteouts(lxc_bed: Testbed, client: Any, app: Image) -> None:
    pull(client, app.reference)
    create(client, 761, "local:vztmpl/app_1.tar")
    rootfs = lxc_bed.ct_dir("pve1", 761) / "rootfs"
    assert (rootfs / "etc" / "motd").read_text() == "second\n"
    assert sorted(p.name for p in (rootfs / "opt").iterdir()) == ["app"]  # opt/gone whited out
    assert sorted(p.name for p in (rootfs / "opt" / "app").iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in (rootfs / "var" / "cache" / "app").iterdir()) == ["upper.txt"]  # opaque
    assert [str(p) for p in rootfs.rglob(".wh.*")] == []


def test_an_archive_with_several_manifests_gives_the_first_whatever_the_node(lxc_bed: Testbed, client: Any,
                                                                             arch_layouts: dict[str, Path]) -> None:
    first = next(iter(arch_layouts))
    oci_archive(list(arch_layouts.values()), lxc_bed.template_dir("pve1") / "multi.tar")
    log = create(client, 762, "local:vztmpl/multi.tar")
    assert "Detected OCI archive" in log
    assert (lxc_bed.ct_dir("pve1", 762) / "rootfs" / "arch").read_text() == first
    assert client.get("nodes", "pve1", "lxc", 762, "config")["entrypoint"] == "cat /arch"


def test_an_archive_of_a_nested_image_index_is_refused(lxc_bed: Testbed, client: Any,
                                                       arch_layouts: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        combine(arch_layouts, Path(tmp))  # index.json -> an image index -> the manifests, as `skopeo copy --all`
        subprocess.run(["tar", "-cf", str(lxc_bed.template_dir("pve1") / "nested.tar"), "-C", tmp,
                        "oci-layout", "index.json", "blobs"], check=True)
    with pytest.raises(errors.TaskFailed) as failed:
        create(client, 763, "local:vztmpl/nested.tar")
    assert failed.value.exitstatus == ("unable to create CT 763 - Error while parsing OCI image: "
                                       "Unsupported CPU architecture")
    assert not lxc_bed.ct_dir("pve1", 763).exists()
    assert [ct.vmid for ct in lxc_bed.pve.cts] == []


def test_only_an_uncompressed_tar_with_an_oci_layout_is_taken_for_an_image(lxc_bed: Testbed, client: Any,
                                                                           app: Image) -> None:
    pull(client, app.reference)
    folder = lxc_bed.template_dir("pve1")
    # A plain template named .tar: unpacked as it is, the create's entrypoint kept.
    subprocess.run(["tar", "-cf", str(folder / "plain.tar"), "-C", str(app.layout.parent), "oci"], check=True)
    log = create(client, 764, "local:vztmpl/plain.tar", entrypoint="/bin/sh")
    assert "Detected OCI archive" not in log
    config = client.get("nodes", "pve1", "lxc", 764, "config")
    assert (config["entrypoint"], "lxc" in config, "cmode" in config) == ("/bin/sh", False, False)
    assert (lxc_bed.ct_dir("pve1", 764) / "rootfs" / "oci" / "index.json").is_file()
    # The pulled archive, compressed: no longer an OCI archive to PVE, only a tarball of a layout.
    (folder / "app_1.tar.zst").write_bytes(zstandard.ZstdCompressor().compress((folder / "app_1.tar").read_bytes()))
    log = create(client, 765, "local:vztmpl/app_1.tar.zst", entrypoint="/bin/sh")
    assert "Detected OCI archive" not in log
    assert sorted(p.name for p in (lxc_bed.ct_dir("pve1", 765) / "rootfs").iterdir()) == ["blobs", "index.json",
                                                                                          "oci-layout"]


# ------------------------------------------------------------- the mapping itself


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A rootfs with the images' users (app 1000:1000, in group extra 2000), its passwd an absolute symlink: read
    through a chroot, as PVE reads it, it is the rootfs's /srv/passwd, not the host's."""
    need([] if os.geteuid() == 0 else ["root (to chroot)"])
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "srv" / "passwd").write_text(PASSWD)
    (root / "etc" / "passwd").symlink_to("/srv/passwd")
    (root / "etc" / "group").write_text(GROUP)
    return root


def test_the_image_s_user_is_resolved_in_its_own_files_as_pve_does(rootfs: Path) -> None:
    assert resolve_oci_user("app", rootfs) == ("1000", "1000", "2000")
    assert resolve_oci_user("1000", rootfs) == ("1000", "1000", "2000")
    assert resolve_oci_user("app:extra", rootfs) == ("1000", "2000", None)  # a group given: no supplementary ones
    assert resolve_oci_user("app:5", rootfs) == ("1000", "5", None)
    assert resolve_oci_user("4242", rootfs) == ("4242", None, None)
    # A name the image lacks gives no uid at all: the process runs as root, as on PVE.
    assert resolve_oci_user("ghost", rootfs) == (None, None, "")
    with pytest.raises(LxcError, match=r"^OCI config value for 'User' has an invalid format$"):
        resolve_oci_user("a:b:c", rootfs)


def test_the_image_config_maps_onto_ct_options_as_pve_does(rootfs: Path) -> None:
    conf = {"entrypoint": "/bin/mine", "net0": "name=eth0,bridge=vmbr0,host-managed=0,type=veth"}
    # Perl's truth: User "0" is no user; /sbin/init keeps the CT a system container; no StopSignal is SIGTERM.
    mapped, log = ct_config(conf, {"Entrypoint": ["/sbin/init"], "User": "0", "WorkingDir": ""}, rootfs)
    assert mapped == {**conf, "lxc": [["lxc.signal.halt", "SIGTERM"]]}
    assert log == []
    # Words with a space or an `=` are quoted as String::ShellQuote quotes them; a NIC set not host-managed stays so.
    mapped, _ = ct_config(conf, {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi", "A=1"], "Env": []}, rootfs)
    assert (mapped["entrypoint"], mapped["cmode"], mapped["env"]) == ("/bin/sh -c 'echo hi' 'A=1'", "console", "")
    assert mapped["net0"] == conf["net0"]
    # PVE's control-character check lets TAB to SI (\x09-\x0f) through and refuses the rest.
    assert ct_config({}, {"Env": ["A=1\n2"]}, rootfs)[0]["env"] == "A=1\n2"
    with pytest.raises(LxcError, match=r"^OCI config array-value for 'Env' contains forbidden control characters!$"):
        ct_config({}, {"Env": ["A=\x01"]}, rootfs)
