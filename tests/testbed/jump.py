"""A jump host for the bed: a real sshd of its own beside the nodes, and the ssh_config a user behind a bastion
writes (the nodes' addresses only through it), for ssh.transport = openssh."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.testbed.bed import Testbed
from tests.testbed.sshd import NodeSshd


@contextmanager
def bastion(bed: Testbed, workdir: Path) -> Iterator[NodeSshd]:
    """The jump host's sshd (logging every connection it forwards), stopped at the end."""
    (workdir / "mnt").mkdir(parents=True, exist_ok=True)
    block = bed.api_address.rsplit(".", 1)[0]
    sshd = NodeSshd(node="bastion", address=f"{block}.5", port=bed.ssh_port, workdir=workdir / "sshd",
                    storage_dir=workdir / "storage", mount_target=workdir / "mnt",
                    authorized_keys=bed.root / "ssh" / "authorized_keys", extra_config="LogLevel DEBUG1\n")
    sshd.start()
    try:
        yield sshd
    finally:
        sshd.stop()


def write_config(bed: Testbed, jump: NodeSshd, folder: Path) -> Path:
    """An ssh_config: the bastion by name with its own key and known_hosts, every node through it."""
    known = folder / "bastion_known_hosts"
    known.write_text(jump.known_hosts_line())
    block = bed.api_address.rsplit(".", 1)[0]
    config = folder / "ssh_config"
    config.write_text(
        "Host bastion\n"
        f"  HostName {jump.address}\n  Port {jump.port}\n  User root\n"
        f"  IdentityFile {bed.client_key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
        f"Host {block}.1?\n"
        "  ProxyJump bastion\n"
    )
    return config


def forwarded_to(jump: NodeSshd, address: str) -> int:
    """How many connections the bastion forwarded to this address (sshd's own log line)."""
    return sum("server_request_direct_tcpip" in line and f"target {address} port" in line
               for line in jump.log_file.read_text(errors="replace").splitlines())


@contextmanager
def runtime_dir() -> Iterator[Path]:
    """An XDG_RUNTIME_DIR for pveoci processes (their master connections' sockets: short paths under /tmp),
    every master ended and the directory removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="pveoci-rt-", dir="/tmp"))
    try:
        yield folder
    finally:
        for sock in (folder / "pveoci" / "ssh").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "master"], capture_output=True,
                           timeout=30, check=False)
        shutil.rmtree(folder, ignore_errors=True)
