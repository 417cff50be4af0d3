"""The sweep of a node's template directory, in process: which hidden entries are abandoned (never what a live
process still writes or reads), and whose listing it may use."""

from __future__ import annotations

import os
import subprocess
import sys

from pveoci.models import Destination
from pveoci.settings import SshSettings
from pveoci.ssh import SshConnector
from pveoci.template.node_dir import host_tag
from pveoci.template.sweep import Listings, _abandoned

DEST = Destination(node="pve1", storage="local", shared=False, directory="/var/lib/vz/template/cache")


def test_a_claims_listing_serves_only_the_sweep_of_the_same_connection() -> None:
    """Two profiles may name a node and a storage alike: what one cluster's claim listed is not another's."""
    mine, theirs = SshConnector(SshSettings(), {}), SshConnector(SshSettings(), {})
    mine.own(Listings).keep(DEST, ".pveoci-claim-x\t0\tdone\t\n")
    assert theirs.own(Listings).recent(DEST) is None
    assert mine.own(Listings).recent(DEST) == ".pveoci-claim-x\t0\tdone\t\n"
    assert mine.own(Listings).recent(DEST) is None  # once


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_finished_claim_stays_while_a_live_waiter_of_this_host_has_not_read_it() -> None:
    here, dead = f"w.{host_tag()}-{os.getpid()}-0a0b0c0d", f"w.{host_tag()}-{_dead_pid()}-0a0b0c0d"
    claim = ".pveoci-claim-" + "c" * 32
    assert not _abandoned(claim, 1, True, "", [here, dead])
    assert _abandoned(claim, 1, True, "", [dead])
    assert _abandoned(claim, 1, True, "", [])                      # its last reader was killed as it left
    assert not _abandoned(claim, 1, True, "", ["w.0000abcd-1-0a0b0c0d"])   # another host's: not before QUIET
    assert _abandoned(claim, 61, True, "", ["w.0000abcd-1-0a0b0c0d"])


def test_a_held_claim_goes_when_its_holder_of_this_host_is_dead_or_it_went_quiet() -> None:
    claim = ".pveoci-claim-" + "c" * 32
    assert not _abandoned(claim, 1, False, f"{host_tag()} {os.getpid()} 0a0b0c0d", [])
    assert _abandoned(claim, 1, False, f"{host_tag()} {_dead_pid()} 0a0b0c0d", [])
    assert _abandoned(claim, 1, False, f"{host_tag()} {_dead_pid()}", [])          # as older versions wrote it
    assert not _abandoned(claim, 1, False, "0000abcd 1 0a0b0c0d", [])
    assert _abandoned(claim, 61, False, "0000abcd 1 0a0b0c0d", [])
    assert _abandoned(claim + ".gone.123", 0, False, "", [])       # renamed away by a remover that was killed
