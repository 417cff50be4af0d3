"""A real OpenSSH sshd per bed node: own loopback address, own host key, key-only login.

Each sshd runs in its own mount namespace with the node's storage directory bound at
the path the API reports, so an upload lands on the node it was meant for. A
ForceCommand script logs every command that reached the node before running it, with
the node's own bin directory (its `pct` shim) first on PATH. Where LXC is installed, the
node's own /etc/lxc (its lxc.conf names the node's LXC path) is bound there too, so
`lxc-info -n <vmid>` and friends see that node's containers, as on a PVE node.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.pids import stop

SSHD = "/usr/sbin/sshd"
LXC_ETC = "/etc/lxc"
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                          "/usr/libexec/sftp-server")

FORCE_COMMAND = """#!/bin/sh
# Log what reached this node (each command ended by a NUL: one may hold newlines), then run it (sftp sessions
# get the external sftp-server).
{path}printf '%s\\0' "$SSH_ORIGINAL_COMMAND" >> {log}
case "$SSH_ORIGINAL_COMMAND" in
  "") exec /bin/sh -l ;;
  {sftp}) exec {sftp} ;;
  *) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
"""


def sftp_server() -> str | None:
    return next((p for p in SFTP_SERVER_CANDIDATES if os.access(p, os.X_OK)), None)


def keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


def port_free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


@dataclass
class NodeSshd:
    node: str
    address: str
    port: int
    workdir: Path          # this node's files: host key, config, logs
    storage_dir: Path      # the node's own storage directory
    mount_target: Path     # where the API says the storage lives
    authorized_keys: Path
    bin_dir: Path | None = None   # first on PATH in SSH sessions (the node's pct shim)
    lxc_etc: Path | None = None   # bound at /etc/lxc: lxc-* tools default to the node's own containers
    extra_config: str = ""        # appended to sshd_config (a bastion's LogLevel, say)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def commands_log(self) -> Path:
        return self.workdir / "commands.log"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    def known_hosts_line(self) -> str:
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{name} {kind} {key}\n"

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        (self.storage_dir / "template" / "cache").mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, f"bed-{self.node}")
        sftp = sftp_server()
        if sftp is None:
            raise RuntimeError("no sftp-server found (Debian package openssh-sftp-server)")
        force = self.workdir / "force-command"
        path = f"PATH={shlex.quote(str(self.bin_dir))}:$PATH; export PATH\n" if self.bin_dir else ""
        force.write_text(FORCE_COMMAND.format(log=shlex.quote(str(self.commands_log)), sftp=sftp, path=path))
        force.chmod(0o755)
        self.commands_log.touch()
        (self.workdir / "sshd_config").write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "MaxStartups 64:30:128\n"
            "MaxSessions 64\n"
            # sshd runs ForceCommand with the user's shell; Debian's bash, started by sshd at shell level 1, reads
            # ~/.bashrc. A Proxmox node's root has Debian's plain one; this machine's may not (pyenv's init: 150 ms
            # and 100 processes per command). At level 2 bash reads none: each command costs what it would cost
            # on a node.
            "SetEnv SHLVL=1\n"
            f"Subsystem sftp {sftp}\n"
            f"ForceCommand {force}\n"
            + self.extra_config
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def start(self, timeout: float = 10.0) -> None:
        self.prepare()
        script = ('mount --bind "$1" "$2" && if [ -n "$5" ]; then mount --bind "$5" /etc/lxc; fi && '
                  'exec "$3" -D -e -f "$4"')
        lxc_etc = str(self.lxc_etc) if self.lxc_etc is not None and Path(LXC_ETC).is_dir() else ""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
                 str(self.storage_dir), str(self.mount_target), SSHD, str(self.workdir / "sshd_config"), lxc_etc],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd for {self.node} exited: {self.log_file.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5) as conn:
                    if conn.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd for {self.node} did not start in {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        stop(self.process)
        self.process = None

    def commands(self) -> list[str]:
        """Every command line that reached this node over SSH, oldest first (interactive logins left out)."""
        return [c for c in self.commands_log.read_text().split("\0") if c]
