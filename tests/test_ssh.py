"""SSH to the bed's nodes: host keys are checked, never accepted silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from pveoci import errors
from pveoci.settings import NodeSsh, SshSettings
from pveoci.ssh import SshConnector
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def ssh_settings(bed: Testbed, **changes: object) -> SshSettings:
    base = SshSettings(user="root", port=bed.ssh_port, agent=False, key_files=[bed.client_key],
                       known_hosts=bed.known_hosts)
    return base.model_copy(update=changes)


def run(client, command: str) -> str:  # type: ignore[no-untyped-def]
    _stdin, stdout, _stderr = client.exec_command(command)
    return str(stdout.read().decode())


def test_connects_to_each_node_at_the_address_the_cluster_reports(cluster: Testbed) -> None:
    connector = SshConnector(ssh_settings(cluster), cluster.addresses)
    for node in ("pve1", "pve2"):
        client = connector.connect(node)
        try:
            assert run(client, "echo ok") == "ok\n"
        finally:
            client.close()
        assert cluster.sshd(node).commands()[-1] == "echo ok"


def test_each_node_sees_its_own_storage_at_the_same_path(cluster: Testbed) -> None:
    (cluster.template_dir("pve1") / "only-on-pve1").write_text("1")
    connector = SshConnector(ssh_settings(cluster), cluster.addresses)
    path = f"{cluster.pve.storage_path}/template/cache"
    seen = {}
    for node in ("pve1", "pve2"):
        client = connector.connect(node)
        try:
            seen[node] = client.open_sftp().listdir(path)
        finally:
            client.close()
    assert "only-on-pve1" in seen["pve1"]
    assert "only-on-pve1" not in seen["pve2"]
    (cluster.template_dir("pve1") / "only-on-pve1").unlink()


def test_unknown_host_key_is_refused(cluster: Testbed, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    connector = SshConnector(ssh_settings(cluster, known_hosts=empty), cluster.addresses)
    with pytest.raises(errors.HostKeyError, match=r"host key of node 'pve1' .* is unknown: it is not in"):
        connector.connect("pve1")
    assert empty.read_text() == ""  # nothing was added behind the user's back


def test_changed_host_key_is_refused(cluster: Testbed, tmp_path: Path) -> None:
    # pve2's key filed under pve1's name: what a man in the middle would present.
    lines = cluster.known_hosts.read_text().splitlines()
    pve1_name = lines[0].split()[0]
    forged = tmp_path / "known_hosts"
    forged.write_text(pve1_name + " " + " ".join(lines[1].split()[1:]) + "\n")
    connector = SshConnector(ssh_settings(cluster, known_hosts=forged), cluster.addresses)
    with pytest.raises(errors.HostKeyError, match=r"does not match .* intercepting"):
        connector.connect("pve1")


def test_missing_known_hosts_file_is_refused(cluster: Testbed, tmp_path: Path) -> None:
    connector = SshConnector(ssh_settings(cluster, known_hosts=tmp_path / "nope"), cluster.addresses)
    with pytest.raises(errors.HostKeyError, match=r"known_hosts file .* does not exist"):
        connector.connect("pve1")


def test_per_node_override_of_address_and_port(cluster: Testbed) -> None:
    settings = ssh_settings(cluster, port=1, nodes={"pve2": NodeSsh(address=cluster.addresses["pve2"],
                                                                   port=cluster.ssh_port)})
    connector = SshConnector(settings, {})
    client = connector.connect("pve2")
    client.close()
    with pytest.raises(errors.ConfigError, match="no SSH address for node 'pve1'"):
        connector.connect("pve1")


def test_wrong_key_is_a_login_error(cluster: Testbed, tmp_path: Path) -> None:
    from tests.testbed.sshd import keygen

    other = tmp_path / "other_key"
    keygen(other, "stranger")
    connector = SshConnector(ssh_settings(cluster, key_files=[other]), cluster.addresses)
    with pytest.raises(errors.SshError, match="SSH login to node 'pve1' as root failed"):
        connector.connect("pve1")


def test_nothing_listening_is_a_clear_error(cluster: Testbed) -> None:
    connector = SshConnector(ssh_settings(cluster, port=1, connect_timeout=2), cluster.addresses)
    with pytest.raises(errors.SshError, match=r"cannot reach node 'pve1' over SSH at root@.*:1: Connection refused"):
        connector.connect("pve1")


@pytest.fixture
def agent_with_key(cluster: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A real ssh-agent holding the bed's client key, as SSH_AUTH_SOCK; HOME without keys of its own."""
    import shutil
    import subprocess

    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        from tests.conftest import need

        need(["ssh-agent and ssh-add (Debian package openssh-client)"])
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            import time

            time.sleep(0.02)
        subprocess.run(["ssh-add", str(cluster.client_key)], env={"SSH_AUTH_SOCK": str(sock)}, check=True,
                       capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
        yield sock
    finally:
        agent.kill()
        agent.wait(10)


def test_agent_false_never_uses_the_agent(cluster: Testbed, agent_with_key: Path) -> None:
    connector = SshConnector(ssh_settings(cluster, agent=False, key_files=[]), cluster.addresses)
    with pytest.raises(errors.SshError, match="SSH login to node 'pve1' as root failed"):
        connector.connect("pve1")


def test_agent_true_logs_in_with_the_agents_key(cluster: Testbed, agent_with_key: Path) -> None:
    connector = SshConnector(ssh_settings(cluster, agent=True, key_files=[]), cluster.addresses)
    client = connector.connect("pve1")
    try:
        assert run(client, "echo ok") == "ok\n"
    finally:
        client.close()


def test_an_address_kept_from_before_is_asked_again_when_nothing_answers_there(cluster: Testbed) -> None:
    asked = []

    def refresh() -> dict[str, str]:
        asked.append(1)
        return cluster.addresses

    block = cluster.api_address.rsplit(".", 1)[0]
    connector = SshConnector(ssh_settings(cluster, connect_timeout=2), {"pve1": f"{block}.99"}, refresh=refresh)
    client = connector.connect("pve1")
    try:
        assert run(client, "echo moved") == "moved\n"
    finally:
        client.close()
    assert asked == [1]
    # Where the cluster says the same, the error stands.
    stuck = SshConnector(ssh_settings(cluster, connect_timeout=2), {"pve1": f"{block}.99"},
                         refresh=lambda: {"pve1": f"{block}.99"})
    with pytest.raises(errors.SshError, match=r"cannot reach node 'pve1' over SSH at root@.*\.99:"):
        stuck.connect("pve1")


def test_requests_and_answers_are_not_held_back_by_nagle(cluster: Testbed) -> None:
    """Every exchange over a node's connection is a request and its answer: with Nagle's algorithm each would
    wait for the peer's delayed ACK (40 ms a command on Linux). The connection sends at once, as OpenSSH's does."""
    import socket

    client = SshConnector(ssh_settings(cluster), cluster.addresses).connect("pve1")
    try:
        transport = client.get_transport()
        assert transport is not None
        assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.close()


def test_a_node_command_does_not_read_this_machines_shell_startup_files(cluster: Testbed) -> None:
    """The bed's nodes are Proxmox nodes: root's bash there reads no pyenv init, whatever this machine's root
    ~/.bashrc holds (sshd runs a command through the user's shell, which Debian's bash makes read ~/.bashrc)."""
    client = SshConnector(ssh_settings(cluster), cluster.addresses).connect("pve1")
    try:
        # What this machine's root ~/.bashrc exports (pyenv's init, here) does not reach a node's commands.
        assert run(client, "echo ${PYENV_ROOT-none} ${PYENV_SHELL-none}") == "none none\n"
    finally:
        client.close()


@pytest.mark.parametrize("address", ["-oProxyCommand=touch /tmp/pwned", "pve 1", "10.0.0.1\n-x", "a;b", ""])
def test_an_address_the_cluster_reports_is_an_address_or_refused(tmp_path: Path, address: str) -> None:
    """/cluster/status's addresses go into ssh's command line (OpenSSH) and paramiko's connect: one that is no IP
    address or host name is refused in one line, never passed on (a leading '-' would be an option)."""
    settings = SshSettings(agent=False, known_hosts=tmp_path / "known_hosts")
    connector = SshConnector(settings, {"pve1": address})
    with pytest.raises(errors.ConfigError) as caught:
        connector.target("pve1")
    assert "\n" not in caught.value.message
    assert "ssh.nodes.pve1.address" in caught.value.message
    for fine in ("10.0.0.1", "fd00::1", "pve1.example.org"):
        assert SshConnector(settings, {"pve1": fine}).target("pve1").host == fine
