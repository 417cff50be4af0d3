"""ssh.transport = openssh: OpenSSH's own client carries every command and upload, so what a user's ~/.ssh/config
says (a ProxyJump bastion here) holds, one master connection serves many commands, and host keys are still
checked strictly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testbed import Testbed
from tests.testbed.jump import forwarded_to
from tests.testbed.sshd import NodeSshd

pytestmark = pytest.mark.bed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(ssh_runtime_dir: Path):  # type: ignore[no-untyped-def]
    """The pveoci command line with ssh.transport = openssh."""

    def pveoci(bed: Testbed, *args: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
        env = {"PVEOCI_SSH_TRANSPORT": "openssh", "XDG_RUNTIME_DIR": str(ssh_runtime_dir), **env}
        return subprocess.run([sys.executable, "-m", "pveoci", "--root", str(root), *args], env=bed.env(**env),
                              capture_output=True, text=True, check=False, timeout=300, cwd=ROOT)

    return pveoci


def logins(bed: Testbed, node: str) -> int:
    return bed.sshd(node).log_file.read_text(errors="replace").count("Accepted publickey")


def test_a_template_goes_through_the_jump_host(cluster: Testbed, run, jump_host: NodeSshd,
                                               through_jump_host: dict[str, str], busybox_bundle: Path,
                                               tmp_path: Path) -> None:
    before = forwarded_to(jump_host, cluster.addresses["pve1"])
    result = run(cluster, "template", "push", "-o", "json", "-b", str(busybox_bundle), "--node", "pve1",
                 root=tmp_path / "cache", **through_jump_host)
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    assert pushed["uploaded"]
    assert (cluster.template_dir("pve1") / pushed["volid"].split("/", 1)[1]).is_file()
    assert forwarded_to(jump_host, cluster.addresses["pve1"]) > before
    assert any(c.endswith("sftp-server") for c in cluster.sshd("pve1").commands())


def test_commands_share_one_master_connection(lxc_bed: Testbed, run, jump_host: NodeSshd,
                                              through_jump_host: dict[str, str], busybox_bundle: Path,
                                              tmp_path: Path) -> None:
    env = through_jump_host
    root = tmp_path / "cache"
    before = logins(lxc_bed, "pve1")
    created = run(lxc_bed, "run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "j1", root=root, **env)
    assert created.returncode == 0, created.stderr
    try:
        for word in ("one", "two", "three"):
            done = run(lxc_bed, "exec", "j1", "echo", word, root=root, **env)
            assert (done.returncode, done.stdout) == (0, f"{word}\n"), done.stderr
        failed = run(lxc_bed, "exec", "j1", "sh", "-c", "exit 7", root=root, **env)
        assert failed.returncode == 7, failed.stderr
    finally:
        run(lxc_bed, "delete", "-f", "j1", root=root, **env)
    # Five processes, several commands and an upload each: the master connection (ControlPersist) logged in once.
    assert logins(lxc_bed, "pve1") - before == 1
    assert forwarded_to(jump_host, lxc_bed.addresses["pve1"]) >= 1


def test_an_unknown_host_key_is_refused(cluster: Testbed, run, busybox_bundle: Path, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text("")  # nothing of the user's own
    result = run(cluster, "template", "push", "-b", str(busybox_bundle), "--node", "pve2", root=tmp_path / "cache",
                 PVEOCI_SSH_KNOWN_HOSTS=str(empty), PVEOCI_SSH_CONFIG_FILE=str(config))
    assert result.returncode == 17, result.stderr
    assert "host key of node 'pve2'" in result.stderr
    assert "Traceback" not in result.stderr
    assert empty.read_text() == ""


def test_a_key_the_node_does_not_know_is_a_login_error(cluster: Testbed, run, tmp_path: Path,
                                                      busybox_bundle: Path) -> None:
    from tests.testbed.sshd import keygen

    other = tmp_path / "other_key"
    keygen(other, "stranger")
    config = tmp_path / "ssh_config"
    config.write_text("")
    result = run(cluster, "template", "push", "-b", str(busybox_bundle), "--node", "pve2", root=tmp_path / "cache",
                 PVEOCI_SSH_KEY_FILES=str(other), PVEOCI_SSH_CONFIG_FILE=str(config))
    assert result.returncode == 16, result.stderr
    assert "SSH login to node 'pve2' (root@" in result.stderr
    assert "Permission denied" in result.stderr
