"""The test bed: a simulated PVE cluster on this machine, from real or third-party parts.

API: fakepve (BedPve) over real HTTPS on a loopback address, its certificate verified.
SSH: one real OpenSSH sshd per node on the node's own loopback address (the first node's also serves the
API), with the node's `pct` and `pvesh` first on PATH (tests/testbed/nodetools.py).
Containers: real LXC when `lxc` is on (see tests/testbed/lxc.py; off by default, since a
create then needs a real template and the machine LXC).
Profile: a pveoci config.toml with an API token that holds exactly the privileges
docs/permissions.md lists, the CA file, the client key and a known_hosts file.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import random
import secrets
import shutil
import sys
import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from fakepve.certs import make_cert

from tests.testbed.pve import BedPve
from tests.testbed.sshd import NodeSshd, keygen, port_free

T = TypeVar("T")

# What docs/permissions.md says pveoci needs; the bed's token holds exactly these on /.
PVEOCI_PRIVILEGES = (
    "Sys.Audit", "VM.Allocate", "VM.Audit", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
    "VM.Config.Options", "VM.Config.Disk", "VM.PowerMgmt", "VM.Migrate", "Datastore.AllocateTemplate",
    "Datastore.Audit", "Datastore.Allocate", "Datastore.AllocateSpace", "SDN.Use",
)
TOKEN_ID = "pveoci@pve!bed"
START_TIMEOUT = 30.0


def _address_block() -> str:
    """A random 127.a.b prefix, so several beds (tests, a demo) can run at once."""
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}"


class _Loop:
    """An asyncio loop in a daemon thread that serves the fake API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bed-fakepve", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = START_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


class Testbed:
    __test__ = False  # not a test class, whatever its name
    def __init__(self, root: Path, nodes: Iterable[str] = ("pve1", "pve2"), *, ssh: bool = True,
                 lxc: bool = False) -> None:
        self.root = Path(root).resolve()
        self.node_names = tuple(nodes)
        self.with_ssh = ssh
        self.lxc_default = lxc
        block = _address_block()
        self.addresses = {name: f"{block}.{10 + i}" for i, name in enumerate(self.node_names)}
        # Every PVE node serves the API; the profile's host is the first node, as a user's would be.
        self.api_address = self.addresses[self.node_names[0]]
        self.root_password = secrets.token_hex(16)
        self.ssh_port = 22
        self.sshds: dict[str, NodeSshd] = {}
        self.token_id = TOKEN_ID
        self.token_secret = secrets.token_hex(16)
        self._loop: _Loop | None = None
        self.pve: BedPve

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def cafile(self) -> Path:
        return self.root / "pki" / "fakepve.crt"

    @property
    def client_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def url(self) -> str:
        return f"https://{self.api_address}:8006"

    def template_dir(self, node: str, storage: str = "local") -> Path:
        return self.pve.template_dir(node, storage)

    def ct_dir(self, node: str, vmid: int) -> Path:
        """A real container's files: rootfs/, console.log (what its processes print), lxc.log."""
        return self.pve.lxc.ct_dir(node, vmid)

    def console_log(self, node: str, vmid: int) -> Path:
        return self.pve.lxc.console_log(node, vmid)

    def lxc_path(self, node: str) -> Path:
        """The node's LXC path (lxc-* -P): <vmid>/config is the LXC config written at start."""
        return self.pve.lxc.lxcpath(node)

    def enable_lxc(self, on: bool = True) -> None:
        """Containers created from now on run for real (reset() restores the bed's default)."""
        self.pve.lxc_enabled = on

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Testbed:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "pki").mkdir(exist_ok=True)
        certfile, keyfile, der = make_cert(str(self.root / "pki"), hosts=(self.api_address,))
        digest = hashlib.sha256(der).hexdigest().upper()
        self.fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
        self.pve = BedPve(root=self.root, addresses=self.addresses, fingerprint=self.fingerprint,
                          host=self.api_address, port=8006, user="root@pam", password=self.root_password)
        self.pve.client_max_size = 4 * 1024 ** 3
        # PVE 9.1 is the first with the entrypoint and env container options pveoci uses.
        self.pve.version, self.pve.release_version = "9.1.2", "9.1"
        self.pve.apitokens[self.token_id] = self.token_secret
        self.pve.grant(self.token_id.split("!")[0], "/", *PVEOCI_PRIVILEGES)
        self.pve.lxc_enabled = self.lxc_default
        (self.root / "vz").mkdir(exist_ok=True)
        for name in self.node_names:
            self.pve.node_dir(name).joinpath("template", "cache").mkdir(parents=True, exist_ok=True)
        self.pve.template_dir("", "shared").mkdir(parents=True, exist_ok=True)
        self._baseline = self._fault_state()
        self._loop = _Loop()
        try:
            self._loop.call(self.pve.start(certfile, keyfile))
            if self.with_ssh:
                self._start_ssh()
            self._write_profile()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_ssh(self) -> None:
        ssh_dir = self.root / "ssh"
        ssh_dir.mkdir(exist_ok=True)
        if not self.client_key.exists():
            keygen(self.client_key, "pveoci-bed-client")
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        self.ssh_port = next(p for p in [22, *random.sample(range(20000, 60000), 50)]
                             if all(port_free(a, p) for a in self.addresses.values()))
        for name, address in self.addresses.items():
            sshd = NodeSshd(node=name, address=address, port=self.ssh_port, workdir=self.root / "nodes" / name,
                            storage_dir=self.pve.node_dir(name), mount_target=self.root / "vz",
                            authorized_keys=authorized, bin_dir=self._write_tools(name),
                            lxc_etc=self.pve.lxc.write_etc(name))
            self.sshds[name] = sshd
            sshd.start()
        self.known_hosts.write_text("".join(s.known_hosts_line() for s in self.sshds.values()))

    def _write_tools(self, node: str) -> Path:
        """The node's pct and pvesh (tests/testbed/nodetools.py), logged in to the API as root@pam."""
        ticket, csrf = self.pve.issue_ticket("root@pam")
        credentials = self.root / "nodes" / node / "root.auth"
        credentials.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"user": "root@pam", "password": self.root_password, "ticket": ticket, "csrf": csrf}, fh)
        return self.pve.lxc.write_tools(node, f"{self.url}/api2/json", self.cafile, credentials, self.addresses)

    def tool_calls(self, node: str) -> list[dict[str, Any]]:
        """Every pct and pvesh call on the node so far, as the tools received it ({"tool", "argv"})."""
        return self.pve.lxc.tool_calls(node)

    def _write_profile(self) -> None:
        secret_file = self.root / "token"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.token_secret + "\n")
        self.config_path.write_text(
            'default_profile = "bed"\n\n'
            "[profiles.bed]\n"
            f'host = "{self.api_address}"\n'
            "port = 8006\n"
            f'token_id = "{self.token_id}"\n'
            f'token_secret_file = "{secret_file}"\n'
            f'ca_file = "{self.cafile}"\n'
            "timeout = 10\n"
            'template_storage = "local"\n'
            'rootfs_storage = "local-lvm"\n\n'
            "[profiles.bed.ssh]\n"
            'user = "root"\n'
            f"port = {self.ssh_port}\n"
            "agent = false\n"
            f'key_files = ["{self.client_key}"]\n'
            f'known_hosts = "{self.known_hosts}"\n'
        )

    def stop(self) -> None:
        try:
            self._stop_containers()
        finally:
            for sshd in self.sshds.values():
                sshd.stop()
            self.sshds.clear()
            if self._loop is not None:
                try:
                    self._loop.call(self.pve.stop())
                finally:
                    self._loop.close()
                    self._loop = None

    def _stop_containers(self) -> None:
        """lxc-stop -k every container the bed started, end their tasks, remove their files."""
        if not hasattr(self, "pve"):
            return
        if self._loop is not None:
            try:
                self._loop.call(self.pve.lxc_cleanup(), timeout=120)
            except Exception as exc:  # the loop is stuck or gone: do it from this thread
                print(f"test bed: cleaning up containers without the API's loop ({exc!r})", file=sys.stderr)
            else:
                return
        self.pve.lxc.cleanup_sync()

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------- use

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for running pveoci against the bed (other PVEOCI_* variables removed). create and run -d
        leave no stand-in (PVEOCI_STAND_IN=0) unless a test asks for one: a test that reads a command's output
        to its end would wait for the container's process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PVEOCI_")}
        env["PVEOCI_CONFIG"] = str(self.config_path)
        env["PVEOCI_STAND_IN"] = "0"
        env.update(extra)
        return env

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of fakepve's async scenario methods on the server's loop."""
        assert self._loop is not None
        return self._loop.call(coro)

    def add_token(self, token_id: str, privileges: Iterable[str], path: str = "/") -> str:
        """A new API token whose user holds these privileges on path; returns its secret."""
        secret = secrets.token_hex(16)
        self.pve.apitokens[token_id] = secret
        self.pve.grant(token_id.split("!")[0], path, *privileges)
        return secret

    # ----------------------------------------------------------------- faults

    def _fault_state(self) -> dict[str, Any]:
        pve = self.pve
        return copy.deepcopy({
            "failures": pve.failures, "network": pve.network, "quorate": pve.quorate, "nodes": pve.nodes,
            "acl": pve.acl, "apitokens": pve.apitokens, "ticket_ttl": pve.ticket_ttl,
            "time_scale": pve.time_scale, "version": pve.version, "ct_secs": pve.ct_secs, "cts": pve.cts,
            "storages": pve.storages,
            "lxc_enabled": pve.lxc_enabled, "node_load": pve.node_load, "maintenance": pve.maintenance,
            "ha_move_delay": pve.ha_move_delay,
        })

    def reset(self) -> None:
        """Undo every fault, token, grant, container and template a test added (real containers stopped)."""
        self._stop_containers()
        for key, value in copy.deepcopy(self._baseline).items():
            setattr(self.pve, key, value)
        self.pve.requests.clear()
        for node in self.node_names:
            self.pve.lxc.tools_log(node).unlink(missing_ok=True)
        for folder in [self.template_dir(n) for n in self.node_names] + [self.pve.template_dir("", "shared")]:
            for entry in folder.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)  # a claim of an upload (template/node_claim.py)
                else:
                    entry.unlink()

    def sshd(self, node: str) -> NodeSshd:
        return self.sshds[node]
