"""Sweeping a node's template directory: what killed uploads left (hidden partial files, claims of dead or quiet
holders, finished claims of dead waiters) is removed, never what a live process of this or another machine is
still writing or reading."""

from __future__ import annotations

import os
import time

from pveoci.models import Destination
from pveoci.ssh import SshConnector
from pveoci.template import scripts
from pveoci.template.node_dir import RemoteDir, host_tag

QUIET = 60.0                # a claim not touched for this long is taken over
PARTIAL_AGE = 3600.0        # another host's partial file this old is abandoned
FRESH = 5.0                 # a claim's listing serves the sweep that follows it this long


class Listings:
    """What claims just listed of the template directories over one connector's connections, per node and
    directory, for the sweep that follows (one round trip fewer); owned by the connector (SshConnector.own)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str | None], tuple[float, str]] = {}

    def keep(self, dest: Destination, listing: str) -> None:
        self._kept[(dest.node, dest.directory)] = (time.monotonic(), listing)

    def recent(self, dest: Destination) -> str | None:
        """The listing a claim took of dest in the last few seconds, once (the sweep after it uses it)."""
        when, listing = self._kept.pop((dest.node, dest.directory), (0.0, ""))
        return listing if time.monotonic() - when < FRESH else None


def sweep(connector: SshConnector, dest: Destination) -> list[str]:
    """Remove hidden uploads of dead processes of this host (or older than PARTIAL_AGE from other hosts), claims
    whose holder died or went quiet, and finished claims nobody alive still waits in; the names removed."""
    remote = RemoteDir(connector, dest)
    try:
        # One line per hidden entry (scripts.LIST): the listing a claim just took here, or a new one.
        listing = connector.own(Listings).recent(dest)
        if listing is None:
            listing = remote.run(["sh", "-c", scripts.LIST, "sh", remote.directory]).stdout.decode(errors="replace")
        doomed = []
        for line in listing.splitlines():
            name, age, done, holder, waiters = ([*line.split("\t"), "", "", "", "", ""])[:5]
            if name.startswith(".pveoci-") and _abandoned(name, _age(age), done == "done", holder, waiters.split()):
                doomed.append(name)
        if doomed:
            remote.run(["sh", "-c", scripts.REMOVE, "sh", remote.directory, *doomed])
        return doomed
    finally:
        remote.close()


def _abandoned(name: str, age: float, done: bool, holder: str, waiters: list[str]) -> bool:
    if name.startswith(".pveoci-claim-"):
        if ".gone." in name:
            return True    # renamed away to be removed: its remover was killed
        if done:           # its waiters read the result within a poll or two, unless they were killed
            return age > QUIET or all(dead_here(w.removeprefix("w.").split("-")) for w in waiters)
        return dead_here(holder.split()) or age > QUIET
    parts = name.split(".")
    maker = parts[-2].split("-") if len(parts) >= 4 else []
    if len(maker) == 3 and maker[0] == host_tag() and maker[1].isdigit():
        return not alive(int(maker[1]))
    return age > PARTIAL_AGE


def dead_here(maker: list[str]) -> bool:
    """A process of this host ([host tag, pid, ...], as hidden names and holders say it) that is gone."""
    return len(maker) >= 2 and maker[0] == host_tag() and maker[1].isdigit() and not alive(int(maker[1]))


def _age(said: str) -> float:
    try:
        return float(said or 0)
    except ValueError:
        return 0.0


def alive(pid: int) -> bool:
    """Whether a process of this machine still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
