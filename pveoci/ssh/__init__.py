"""SSH to the nodes: sessions over paramiko (in process) or OpenSSH's client, host keys checked against
known_hosts.

An unknown or changed host key is refused, never accepted silently. Addresses come
from the cluster (`/cluster/status` ips) unless the profile overrides them per node.
"""

from __future__ import annotations

import logging
import re
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pveoci import errors
from pveoci.settings import SshSettings

if TYPE_CHECKING:
    import paramiko

    from pveoci.ssh.session import Session

log = logging.getLogger("pveoci.ssh")

_Owned = TypeVar("_Owned")

# AES-GCM first: both ends accelerate it, and it is what makes paramiko's uploads match
# OpenSSH's (docs/performance.md). The rest of paramiko's list follows unchanged.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _paramiko_without_invoke() -> None:
    """Import paramiko without invoke, the task runner its config module imports (most of paramiko's import time)
    for `Match exec` in an ssh_config file: pveoci never has paramiko read one (docs/performance.md)."""
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        return
    sys.modules["invoke"] = None  # type: ignore[assignment]  # None in sys.modules: `import invoke` fails
    try:
        import paramiko  # noqa: F401
    finally:
        blocked: object = sys.modules.get("invoke", sys)
        if blocked is None:  # still the stand-in (not a real invoke another thread imported meanwhile)
            del sys.modules["invoke"]


class Unreachable(errors.SshError):
    """Nothing answered at the node's SSH address."""


@dataclass(frozen=True)
class SshTarget:
    node: str
    host: str
    port: int
    user: str

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class SshConnector:
    """Opens verified SSH connections to cluster nodes by name."""

    def __init__(self, settings: SshSettings,
                 addresses: Mapping[str, str] | Callable[[], Mapping[str, str]],
                 refresh: Callable[[], Mapping[str, str]] | None = None) -> None:
        """`addresses` may be a callable: then the cluster is asked only when a node is first looked up.
        `refresh` asks the cluster afresh when a node cannot be reached at the address `addresses` gave (which
        may have been kept from an earlier command)."""
        self.settings = settings
        self._addresses = addresses
        self._refresh = refresh
        self._resolved: dict[str, str] | None = None
        self._shared: dict[str, paramiko.SSHClient] = {}
        self._sessions: dict[str, Session] = {}
        self._owned: dict[type, object] = {}
        self._lock = threading.RLock()  # a connect may look up an address over another connection (pct)

    def own(self, kind: type[_Owned]) -> _Owned:
        """This connector's one `kind()`, made on first use: what its users keep about its connections lives as
        long as they do (another connector's node of the same name is another machine)."""
        with self._lock:
            found = self._owned.get(kind)
            if found is None:
                found = self._owned[kind] = kind()
            return cast(_Owned, found)

    def shared(self, node: str) -> paramiko.SSHClient:
        """A connection to the node that stays open for the next caller (many channels share it; do not close
        it: close_all() does). A login costs a key exchange: one per node and process, not one per command."""
        return self._kept(node, lambda: self.connect(node))

    def _kept(self, key: str, connect: Callable[[], paramiko.SSHClient]) -> paramiko.SSHClient:
        with self._lock:
            client = self._shared.get(key)
            transport = client.get_transport() if client is not None else None
            if client is None or transport is None or not transport.is_active():
                client = self._shared[key] = connect()
            return client

    def session(self, node: str) -> Session:
        """The node's Session over the profile's transport (shared: do not close it; close_all() does)."""
        return self._session(node, node, lambda: self.target(node), lambda: self.connect(node))

    def session_to(self, target: SshTarget) -> Session:
        """A Session to a host known by its address (host_target: the node the cluster is entered by)."""
        key = f"@{target}"
        return self._session(key, target.node, lambda: target, lambda: self.connect_to(target))

    def _session(self, key: str, name: str, target: Callable[[], SshTarget],
                 connect: Callable[[], paramiko.SSHClient]) -> Session:
        if self.settings.transport == "openssh":
            with self._lock:
                found = self._sessions.get(key)
                if found is None:
                    from pveoci.ssh.openssh import OpenSshSession

                    found = self._sessions[key] = OpenSshSession(self.settings, target())
                return found
        from pveoci.ssh.paramiko_session import ParamikoSession

        return ParamikoSession(self._kept(key, connect), name, self.settings.sudo)

    def close_all(self) -> None:
        with self._lock:
            for client in self._shared.values():
                client.close()
            self._shared.clear()
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()

    @property
    def addresses(self) -> dict[str, str]:
        if self._resolved is None:
            source = self._addresses
            self._resolved = dict(source() if callable(source) else source)
        return self._resolved

    def target(self, node: str) -> SshTarget:
        override = self.settings.nodes.get(node)
        host = (override.address if override and override.address else None) or _reported(node, self.addresses)
        if not host:
            raise errors.ConfigError(
                f"no SSH address for node '{node}': the cluster reports none; "
                f"set ssh.nodes.{node}.address in the profile"
            )
        port = (override.port if override and override.port else None) or self.settings.port
        user = (override.user if override and override.user else None) or self.settings.user
        return SshTarget(node=node, host=host, port=port, user=user)

    def host_target(self, host: str) -> SshTarget:
        """A host known by its address only (the node the cluster is entered by, before its name is known)."""
        return SshTarget(node=host, host=host, port=self.settings.port, user=self.settings.user)

    def known_hosts(self) -> Path:
        return self.settings.known_hosts.expanduser()

    def connect(self, node: str) -> paramiko.SSHClient:
        """A connected, authenticated client; the caller closes it."""
        try:
            return self.connect_to(self.target(node))
        except errors.SshError as exc:
            if not isinstance(exc, Unreachable) or self._refresh is None:
                raise
            before = self.target(node)
            self._resolved = dict(self._refresh())
            self._refresh = None  # once per connector
            if self.target(node) == before:
                raise
            log.info("node %s has moved to %s; retrying there", node, self.target(node).host)
            return self.connect_to(self.target(node))

    def connect_to(self, target: SshTarget) -> paramiko.SSHClient:
        """A connected, authenticated client for this target, its host key checked; the caller closes it."""
        _paramiko_without_invoke()
        import paramiko

        node = target.node
        client = paramiko.SSHClient()
        known = self.known_hosts()
        try:
            client.load_host_keys(str(known))
        except FileNotFoundError:
            raise errors.HostKeyError(
                f"cannot check the host key of node '{node}': known_hosts file {known} does not exist"
            ) from None
        except OSError as exc:
            raise errors.HostKeyError(f"cannot read known_hosts file {known}: {exc.strerror}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key_files = [str(p.expanduser()) for p in self.settings.key_files]
        log.debug("ssh connect %s (node %s)", target, node)
        try:
            client.connect(
                target.host, port=target.port, username=target.user,
                key_filename=key_files or None,  # type: ignore[arg-type]  # a list works
                allow_agent=self.settings.agent,
                look_for_keys=not key_files, timeout=self.settings.connect_timeout,
                transport_factory=_fast_transport,
                banner_timeout=self.settings.connect_timeout, auth_timeout=self.settings.connect_timeout,
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise errors.HostKeyError(
                f"host key of node '{node}' ({target.known_hosts_name}) does not match {known}: "
                "someone may be intercepting the connection, or the node was reinstalled; "
                "check the key before you replace it"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            if "not found in known_hosts" in text:
                raise errors.HostKeyError(
                    f"host key of node '{node}' ({target.known_hosts_name}) is unknown: it is not in {known}; "
                    f"check it and add it, e.g. ssh-keyscan -p {target.port} {target.host} >> {known}"
                ) from None
            if "No authentication methods available" in text:
                raise errors.SshError(f"SSH login to node '{node}' as {target.user} failed: no key to offer "
                                      "(set ssh.key_files, or ssh.agent = true with a running agent)") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise errors.SshError(f"SSH login to node '{node}' as {target.user} failed: {text}") from None
            raise errors.SshError(f"SSH to node '{node}' ({target}) failed: {text}") from None
        except (TimeoutError, OSError) as exc:
            client.close()
            # paramiko's NoValidConnectionsError keeps the real socket errors per address.
            causes = list(getattr(exc, "errors", {}).values()) or [exc]
            reason = getattr(causes[0], "strerror", None) or str(causes[0]) or "timed out"
            raise Unreachable(f"cannot reach node '{node}' over SSH at {target}: {reason}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        return client


_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")


def _reported(node: str, addresses: Mapping[str, str]) -> str | None:
    """The node's address as the cluster reports it, if it is an IP address or a host name: anything else (a
    leading '-' would be an option to OpenSSH's ssh; blanks, control characters) is refused with one line."""
    host = addresses.get(node)
    if not host:
        return None
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        if _HOST_NAME.fullmatch(host):
            return host
    shown = repr(host[:80] + ("..." if len(host) > 80 else ""))
    raise errors.ConfigError(f"the cluster reports the address {shown} for node '{node}', which is no IP address "
                             f"or host name; set ssh.nodes.{node}.address in the profile")


@dataclass(frozen=True)
class CommandResult:
    status: int
    stdout: bytes
    stderr: bytes


def command_line(argv: Sequence[str], *, sudo: bool = False) -> str:
    """One shell command line from argv, every word quoted: user data never reaches a shell unquoted."""
    words = ["sudo", "-n", "--", *argv] if sudo else list(argv)
    return shlex.join(words)


def run(client: paramiko.SSHClient, argv: Sequence[str], *, sudo: bool = False, timeout: float = 600.0,
        stdin: bytes | None = None) -> CommandResult:
    """Run argv on the node and wait for it; its exit status, stdout and stderr come back."""
    line = command_line(argv, sudo=sudo)
    log.debug("ssh exec: %s", line)
    chan_in, chan_out, chan_err = client.exec_command(line, timeout=timeout)
    try:
        if stdin is not None:
            chan_in.write(stdin)
        chan_in.channel.shutdown_write()
        out = chan_out.read()
        err = chan_err.read()
        return CommandResult(chan_out.channel.recv_exit_status(), out, err)
    finally:
        chan_out.channel.close()  # a shared connection's sessions are few (sshd's MaxSessions)


def _fast_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    import paramiko

    # Every exchange is a request and its answer (a login's round trips, a channel opened for each command):
    # with Nagle's algorithm on, each waits for the peer's delayed ACK, 40 ms, as OpenSSH's client never does.
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in offered) + tuple(
        c for c in offered if c not in PREFERRED_CIPHERS)
    return transport
