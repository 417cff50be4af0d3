"""Bind mounts as engines write them (issue 19, item 3): this machine's files copied into the container, its
directories refused naming the mount, a node's path (`node:`) or a new volume (`volume:`) as a mount point, and
the engine's own /dev/shm left to LXC. The look-up of sources is the real one (pveoci.planning.look_up) over files
made here."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pveoci import errors
from pveoci.lxc.draft import Plan, shown
from pveoci.lxc.fields_mounts import COPIES_MAX, COPY_MAX
from pveoci.lxc.mapping import map_spec
from pveoci.planning import look_up
from pveoci.runtime.create import encode_files
from tests.lxc.test_mapping import ROOT_PAM, TOKEN, assert_finding, bind, make, on_path


def plan(*mounts: dict[str, object], root_pam: bool = False) -> Plan:
    changes = {f"mounts.{7 + i}": m for i, m in enumerate(mounts)}
    return map_spec(make(changes), ROOT_PAM if root_pam else TOKEN, container_id="c", find_program=on_path,
                    look_up=look_up)


def test_a_file_of_this_machine_is_copied_with_its_mode_and_owner(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1 localhost\n10.0.0.5 db\n")
    hosts.chmod(0o640)
    os.chown(hosts, 0, 42)
    result = plan(bind(str(hosts), "/etc/hosts", "rprivate", "rbind"), bind(str(hosts), "/etc/hosts.copy", "ro"))
    assert [(f.path, f.data, f.mode, f.uid, f.gid) for f in result.files] == [
        ("/etc/hosts", hosts.read_bytes(), 0o640, 0, 42), ("/etc/hosts.copy", hosts.read_bytes(), 0o640, 0, 42)]
    assert_finding(result, "mounts[7]", "approximated", f"{hosts} copied to /etc/hosts at create (32 bytes)")
    assert_finding(result, "mounts[8]", "approximated", "writable there (a copy)")
    assert not any(k.startswith("mp") for k in result.options)   # no mount point, with a token as with root@pam
    assert encode_files(result.files[:1]) == b"/etc/hosts\x00640\x000\x0042\x0032\x00" + hosts.read_bytes()


def test_a_file_past_the_cap_and_files_past_the_total_are_refused_naming_the_mount(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (COPY_MAX + 1))
    with pytest.raises(errors.MappingError, match=rf"^mounts\[7\]: {re.escape(shown(str(big)))} is {COPY_MAX + 1} "
                                                  r"bytes, more than the 1024 KiB a file copied into a container may "
                                                  r"have: bind a node's file \(\"source\": \"node:PATH\"\) instead$"):
        plan(bind(str(big), "/big"))
    full = tmp_path / "full"
    full.write_bytes(b"y" * COPY_MAX)
    count = COPIES_MAX // COPY_MAX
    with pytest.raises(errors.MappingError, match=rf"^mounts\[{7 + count}\]: the files bind mounts copy into the "
                                                  r"container come to \d+ bytes, more than 8 MiB"):
        plan(*(bind(str(full), f"/f{i}") for i in range(count + 1)))


def test_a_directory_of_this_machine_is_refused_naming_the_mount_and_the_ways_that_work(tmp_path: Path) -> None:
    with pytest.raises(errors.MappingError) as refused:
        plan(bind(str(tmp_path), "/data"), root_pam=True)
    assert refused.value.message == (
        f"mounts[7]: {shown(str(tmp_path))} is a directory of this machine, which a container on a Proxmox node "
        "cannot see: "
        'bind a node\'s directory ("source": "node:/srv/data") or a new volume ("source": "volume:local-lvm:8"), '
        "see docs/mapping.md")


def test_a_nodes_path_and_a_new_volume_become_mount_points(tmp_path: Path) -> None:
    result = plan(bind(f"node:{tmp_path}", "/data", "ro"), bind("volume:local-lvm:8", "/var/lib/db"), root_pam=True)
    assert (result.options["mp0"], result.options["mp1"]) == (f"{tmp_path},mp=/data,ro=1",
                                                              "local-lvm:8,mp=/var/lib/db")
    assert_finding(result, "mounts[8]", "applied", "mp1: a new 8 GiB volume on local-lvm, at /var/lib/db")
    token = plan(bind("node:/srv/data", "/data"), bind("volume:local-lvm:8", "/db"))   # a volume needs no root@pam
    assert_finding(token, "mounts[7]", "unsupported", "only root@pam may set")
    assert (token.options["mp0"], "mp1" in token.options) == ("local-lvm:8,mp=/db", False)


@pytest.mark.parametrize(("source", "why"), [("volume:Local:8", "storage"), ("volume:local-lvm:0", "size"),
                                             ("volume:local-lvm:8,ro=0", "size"), ("volume:local", "size"),
                                             ("volume:a,b:8", "storage")])
def test_a_bad_volume_is_refused_in_one_line(source: str, why: str) -> None:
    with pytest.raises(errors.MappingError, match=rf"^mounts\[7\]: .*{why}"):
        plan(bind(source, "/data"))


def test_a_missing_source_is_the_nodes_path_as_before_and_the_engines_shm_a_tmpfs_of_its_own(tmp_path: Path) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    result = plan(bind("/srv/not-here", "/data"), bind(str(shm), "/dev/shm", "rprivate"), root_pam=True)
    assert result.options["mp0"] == "/srv/not-here,mp=/data"
    assert_finding(result, "mounts[8]", "approximated", "a tmpfs of the container's own at /dev/shm")
    assert "mp1" not in result.options


def test_a_device_or_socket_is_not_copied_but_taken_as_the_nodes(tmp_path: Path) -> None:
    assert_finding(plan(bind("/dev/null", "/dev/null2")), "mounts[7]", "unsupported",
                   "bind mount of /dev/null needs mp[n] with a host path, which only root@pam may set")
    result = plan(bind("/dev/null", "/dev/null2"), root_pam=True)
    assert (result.options["mp0"], result.files) == ("/dev/null,mp=/dev/null2", ())
