"""The API backend: containers through the Proxmox HTTP API; exec and signals through SSH to the node."""

from __future__ import annotations

import contextlib
import logging
import select
import sys
import threading
import time
from typing import Any

from pveoci import errors
from pveoci.backends.base import Guest
from pveoci.pve.client import PveClient
from pveoci.pve.version import parse_version
from pveoci.ssh import SshConnector, command_line

log = logging.getLogger("pveoci.backend")

UNLOCK_WAIT = 30.0


class ApiBackend:
    name = "api"

    def __init__(self, client: PveClient, ssh: SshConnector) -> None:
        self.client = client
        self.ssh = ssh  # exec, signals and freeze go to the node over SSH

    # ------------------------------------------------------------------ reads

    def version(self) -> tuple[int, int]:
        return parse_version(str(self.client.version().get("version", "")))

    def next_vmid(self) -> int:
        return int(self.client.get("cluster", "nextid"))

    def used_vmids(self) -> set[int]:
        return {int(item["vmid"]) for item in self.client.get("cluster", "resources", type="vm") if "vmid" in item}

    def guests(self) -> list[Guest]:
        return [Guest.from_api(item) for item in self.client.get("cluster", "resources", type="vm")
                if item.get("type") == "lxc"]

    def status(self, node: str, vmid: int) -> Guest:
        return Guest.from_api({"vmid": vmid, **self.client.get("nodes", node, "lxc", vmid, "status", "current")},
                              node)

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        data: dict[str, Any] = self.client.get("nodes", node, "lxc", vmid, "config")
        return data

    # ----------------------------------------------------------------- writes

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.client.wait(self.client.post("nodes", node, "lxc", vmid=vmid, **options))
        self._wait_unlocked(node, vmid)

    def _wait_unlocked(self, node: str, vmid: int) -> None:
        """After vzcreate the config may still say `lock: create` for a moment."""
        deadline = time.monotonic() + UNLOCK_WAIT
        delay = 0.05
        while self.config(node, vmid).get("lock") == "create":
            if time.monotonic() > deadline:
                raise errors.Locked(f"CT {vmid} on {node} is still locked (create) after {UNLOCK_WAIT:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.client.put("nodes", node, "lxc", vmid, "config", **options)

    def _power(self, node: str, vmid: int, action: str, **params: Any) -> None:
        self.client.wait(self.client.post("nodes", node, "lxc", vmid, "status", action, **params))

    def start(self, node: str, vmid: int) -> None:
        self._power(node, vmid, "start")

    def stop(self, node: str, vmid: int) -> None:
        self._power(node, vmid, "stop")

    def shutdown(self, node: str, vmid: int, timeout: int) -> None:
        # forceStop: once the timeout has passed the task stops it, so TERM always ends in a stopped container.
        self._power(node, vmid, "shutdown", timeout=timeout, forceStop=1)


    def destroy(self, node: str, vmid: int) -> None:
        self.client.wait(self.client.delete("nodes", node, "lxc", vmid, purge=1, **{"destroy-unreferenced-disks": 1}))

    # ------------------------------------------------------- on the node (SSH)

    def exec(self, node: str, vmid: int, argv: list[str], *, tty: bool = False) -> int:
        """`pct exec VMID -- ARGV` on the node; stdio is passed through and the exit status comes back."""
        line = command_line(["pct", "exec", str(vmid), "--", *argv], sudo=self.ssh.settings.sudo)
        client = self.ssh.connect(node)
        try:
            transport = client.get_transport()
            assert transport is not None
            channel = transport.open_session()
            if tty:
                channel.get_pty()
            channel.exec_command(line)
            feeder = threading.Thread(target=_feed_stdin, args=(channel,), daemon=True)
            if not sys.stdin.isatty():
                feeder.start()
            else:
                channel.shutdown_write()
            out, err = sys.stdout.buffer, sys.stderr.buffer
            while True:
                # The channel's fileno() becomes readable when stdout or stderr data (or the end) arrives.
                select.select([channel], [], [], 1.0)
                while channel.recv_ready():
                    out.write(channel.recv(65536))
                    out.flush()
                while channel.recv_stderr_ready():
                    err.write(channel.recv_stderr(65536))
                    err.flush()
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
            return int(channel.recv_exit_status())
        finally:
            client.close()

    def capture(self, node: str, vmid: int, argv: list[str]) -> tuple[int, bytes, bytes]:
        """`pct exec VMID -- ARGV` with its output collected: (exit status, stdout, stderr)."""
        from pveoci.ssh import run

        client = self.ssh.connect(node)
        try:
            result = run(client, ["pct", "exec", str(vmid), "--", *argv], sudo=self.ssh.settings.sudo, timeout=120)
        finally:
            client.close()
        return result.status, result.stdout, result.stderr

    def _on_node(self, node: str, argv: list[str], what: str) -> None:
        from pveoci.ssh import run

        client = self.ssh.connect(node)
        try:
            result = run(client, argv, sudo=self.ssh.settings.sudo, timeout=60)
        finally:
            client.close()
        if result.status != 0:
            raise errors.PveociError(f"cannot {what} on {node}: {result.stderr.decode(errors='replace').strip()}")

    def signal(self, node: str, pid: int, signame: str) -> None:
        self._on_node(node, ["kill", "-s", signame.removeprefix("SIG"), str(pid)],
                      f"send {signame} to the container's init (pid {pid})")

    # PVE's suspend is a CRIU checkpoint to disk, not runc's pause: freeze the cgroup instead, as LXC does.
    def freeze(self, node: str, vmid: int) -> None:
        self._on_node(node, ["lxc-freeze", "-n", str(vmid)], f"freeze CT {vmid}")

    def thaw(self, node: str, vmid: int) -> None:
        self._on_node(node, ["lxc-unfreeze", "-n", str(vmid)], f"thaw CT {vmid}")


def _feed_stdin(channel: Any) -> None:
    try:
        while chunk := sys.stdin.buffer.read1(65536) if hasattr(sys.stdin.buffer, "read1") else b"":
            channel.sendall(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            channel.shutdown_write()
