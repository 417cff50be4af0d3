"""The sweep of a node's template directory, in process: which hidden entries are abandoned, and whose listing
it may use."""

from __future__ import annotations

from pveoci.models import Destination
from pveoci.settings import SshSettings
from pveoci.ssh import SshConnector
from pveoci.template.sweep import Listings

DEST = Destination(node="pve1", storage="local", shared=False, directory="/var/lib/vz/template/cache")


def test_a_claims_listing_serves_only_the_sweep_of_the_same_connection() -> None:
    """Two profiles may name a node and a storage alike: what one cluster's claim listed is not another's."""
    mine, theirs = SshConnector(SshSettings(), {}), SshConnector(SshSettings(), {})
    mine.own(Listings).keep(DEST, ".pveoci-claim-x\t0\tdone\t\n")
    assert theirs.own(Listings).recent(DEST) is None
    assert mine.own(Listings).recent(DEST) == ".pveoci-claim-x\t0\tdone\t\n"
    assert mine.own(Listings).recent(DEST) is None  # once
