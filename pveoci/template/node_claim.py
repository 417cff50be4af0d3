"""A claim on a template over SSH: one upload of it per node's storage, however many creates want it at once.

The claim is a directory in the node's template directory (`.pveoci-claim-<key>`), made with `mkdir`
(atomic): who makes it holds it, and writes who it is in it (`holder`). Whoever finds it there waits
in it: it makes an entry of its own there (`w.<host>-<pid>-<token>`) and looks at it until the holder
writes the template's name (`result`); reading that, it removes its entry. The claim goes as soon as
it has its result and no waiter is left in it, whoever sees that last (the holder or a waiter): a
finished claim leaves nothing in someone's storage. A holder that gives up removes its claim, and
its waiters take over, as they do a claim not touched (heartbeat) for QUIET seconds. A claim goes by
being renamed away first, so nobody can join it while it is being removed; what killed processes
left is the sweep's (sweep.py). The scripts are in scripts.py.
"""

from __future__ import annotations

import os
import secrets
import time

from pveoci import errors
from pveoci.models import Destination
from pveoci.ssh import SshConnector
from pveoci.template import scripts
from pveoci.template.node_dir import RemoteDir, host_tag
from pveoci.template.sweep import QUIET, Listings, dead_here

HEARTBEAT = 5.0
POLL = 0.5


class RemoteClaim:
    """A claim on the template keyed so, on dest's template directory (backends.base.Claim)."""

    def __init__(self, connector: SshConnector, dest: Destination, key: str) -> None:
        self.remote = RemoteDir(connector, dest)
        self.path = f"{self.remote.directory}/.pveoci-claim-{key[:32]}"
        mark = f"{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.holder = mark.replace("-", " ")        # what `holder` says while this claim is ours
        self.entry = f"w.{mark}"                    # this waiter's entry in a claim another holds
        self._touched = 0.0
        self._result: str | None = None
        self.recorded: str | None = None   # the name an upload already wrote as the result (SftpStream.finish)
        self.ours = self._take(scripts.TAKE)

    def _take(self, script: str, *more: str) -> bool:
        # Taken (and who holds it, so a sweep on this host knows a holder that was killed) with what the
        # storage's hidden entries are, for the sweep that follows; or waited in: one round trip.
        done = self.remote.run(["sh", "-c", f"{script}(\n{scripts.LIST})\nexit 0\n", "sh", self.path, self.holder,
                                self.entry, *more])
        if done.status == 0:
            self._touched = time.monotonic()
            self.remote.connector.own(Listings).keep(self.remote.dest, done.stdout.decode(errors="replace"))
            return True
        if done.status == 1:
            return False   # another create holds it: this one waits in it
        raise errors.SshError(f"cannot write to {self.remote.directory} on node '{self.remote.dest.node}': "
                              f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")

    def _poll(self) -> tuple[int, str]:
        """One look as a waiter: (0, its result) and this waiter left; (1, seconds since the holder was heard
        of); (3, "") gone."""
        done = self.remote.run(["sh", "-c", scripts.POLL, "sh", self.path, self.entry])
        return done.status, done.stdout.decode(errors="replace").strip()

    def result(self) -> str | None:
        if self._result is None and not self.ours:
            status, said = self._poll()
            self._result = said or None if status == 0 else None
        return self._result

    def wait(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, said = self._poll()
            if status == 0:
                self._result = said or None
                return self._result
            if status != 1 or _seconds(said) > QUIET or dead_here(said.split()[1:]):
                return None   # gone (given up, taken over, swept), gone quiet, or its holder, of this host, killed
            time.sleep(POLL)
        return None

    def take_over(self) -> bool:
        """The holder went quiet or gave up: remove its claim (if it is still the one waited in, or it names a
        template the storage does not have) and try to take it."""
        stale, self._result = self._result or "", None
        self.ours = self._take(scripts.TAKE_OVER, stale)
        return self.ours

    def heartbeat(self) -> None:
        if self.ours and time.monotonic() - self._touched > HEARTBEAT:
            self.remote.run(["touch", "-c", "--", self.path])   # -c: a claim taken over meanwhile is not made a file
            self._touched = time.monotonic()

    def release(self, name: str | None) -> None:
        """Done: the name for the waiters, and the claim goes once they have read it; gave up (None): the claim
        goes, and a waiter takes over. A waiter that stops waiting leaves the claim."""
        try:
            if self.ours and name and name == self.recorded:
                return   # written by the upload's last command already, which left the claim too
            if self.ours:
                self.remote.run(["sh", "-c", scripts.RELEASE, "sh", self.path, self.holder, name or ""])
            elif self._result is None:
                self.remote.run(["sh", "-c", scripts.RELEASE, "sh", self.path, "", self.entry])
        finally:
            self.remote.close()


def _seconds(said: str) -> float:
    """The seconds a poll printed (negative when the storage's clock is ahead of the node's); unreadable: gone."""
    try:
        return float(int(said.split()[0]))
    except (ValueError, IndexError):
        return float("inf")
