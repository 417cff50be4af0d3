"""A claim on a template, over SSH: a directory in the node's template directory, made with `mkdir` (atomic).

Its holder touches it while it works and writes the template's name into it when done; waiters read
that, or take over a claim gone quiet.
"""

from __future__ import annotations

import os
import time

from pveoci import errors
from pveoci.models import Destination
from pveoci.ssh import SshConnector
from pveoci.template import scripts
from pveoci.template.node_dir import RemoteDir, host_tag
from pveoci.template.sweep import QUIET, Listings

HEARTBEAT = 5.0
POLL = 0.5


class RemoteClaim:
    """Claim over SSH: a directory in the template directory (see the module's docstring)."""

    def __init__(self, connector: SshConnector, dest: Destination, key: str) -> None:
        self.remote = RemoteDir(connector, dest)
        self.path = f"{self.remote.directory}/.pveoci-claim-{key[:32]}"
        self._touched = 0.0
        self.recorded: str | None = None   # the name an upload already wrote as the result (SftpStream.finish)
        self.ours = self._take()

    def _take(self) -> bool:
        # Taken, who holds it (so a sweep on this host knows a holder that was killed), and what the storage's
        # hidden entries are (for the sweep that follows), in one round trip.
        done = self.remote.run(["sh", "-c", f"{scripts.TAKE}(\n{scripts.LIST})\nexit 0\n", "sh", self.path, host_tag(),
                                str(os.getpid())])
        if done.status == 0:
            self._touched = time.monotonic()
            self.remote.connector.own(Listings).keep(self.remote.dest, done.stdout.decode(errors="replace"))
            return True
        if done.status == 1:
            return False   # another create holds it
        raise errors.SshError(f"cannot write to {self.remote.directory} on node '{self.remote.dest.node}': "
                              f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")

    def result(self) -> str | None:
        done = self.remote.run(["cat", "--", f"{self.path}/result"])
        text = done.stdout.decode(errors="replace").strip()
        return text or None if done.status == 0 else None

    def _gone_quiet(self) -> bool:
        done = self.remote.run(["sh", "-c", 'stat -c %Y -- "$1" && date +%s', "sh", self.path])
        words = done.stdout.split()
        if done.status != 0 or len(words) != 2:
            return True  # it is gone
        return int(words[1]) - int(words[0]) > QUIET

    def wait(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.remote.run(["test", "-e", f"{self.path}/result"]).status == 0:
                return self.result()
            if self._gone_quiet():
                return None
            time.sleep(POLL)
        return None

    def take_over(self) -> bool:
        """The holder went quiet or gave up: remove its claim and try to take it."""
        self.remote.run(["rm", "-rf", "--", self.path])
        self.ours = self._take()
        return self.ours

    def heartbeat(self) -> None:
        if self.ours and time.monotonic() - self._touched > HEARTBEAT:
            self.remote.run(["touch", "--", self.path])
            self._touched = time.monotonic()

    def release(self, name: str | None) -> None:
        """Done: the name for the waiters; gave up (None): the claim goes, and a waiter takes over."""
        try:
            if self.ours and name:
                if name != self.recorded:   # not written by the upload's last command already
                    self.remote.run(["sh", "-c", 'printf %s "$2" > "$1/result"', "sh", self.path, name])
            elif self.ours:
                self.remote.run(["rm", "-rf", "--", self.path])
        finally:
            self.remote.close()
