"""runc's `update`: a container's resource limits changed where it runs, through its Proxmox config.

Proxmox applies what an update sets to a running container at once: memory, swap, cpulimit and cpuunits are
written to its cgroup as the config changes (pve-container's vmconfig_hotplug_pending), cores is taken by
pvestatd's next rebalance of the node's cpusets (within seconds). A created container (its CT runs, the init
waits) and a paused one (frozen) are running CTs to Proxmox; a stopped one is refused, as runc refuses it. The
limits live in the CT's config alone (the cluster is the source of truth): the cache keeps none to update.
"""

from __future__ import annotations

import logging

from pveoci import errors
from pveoci.lxc.resource_update import ResourceUpdate, map_update
from pveoci.oci.runtime_spec import Resources
from pveoci.runtime.context import Context
from pveoci.runtime.locate import require

log = logging.getLogger("pveoci.runtime")
findings_log = logging.getLogger("pveoci.findings")
#: The OCI states whose container Proxmox runs: an update reaches its cgroup.
LIVE = ("created", "running", "paused")


def update(ctx: Context, cid: str, resources: Resources, *, warn: bool = True) -> ResourceUpdate:
    """Change the container's limits to what `resources` asks (runc's update); what was asked of Proxmox.

    NotFound for an unknown id; Unsupported or MappingError for what Proxmox cannot do, NotRunning for a stopped
    container: in each case before anything changes."""
    found = require(ctx, cid)
    g = found.guest
    change = map_update(resources, lambda: ctx.backend.config(g.node, g.vmid))
    if found.status not in LIVE:
        raise errors.NotRunning("container not running", status=found.status)
    if change.changes:
        ctx.backend.set_options(g.node, g.vmid, change.request())
        log.debug("%s (CT %s on %s): %s", cid, g.vmid, g.node,
                  " ".join(f"{k}={v}" for k, v in change.request().items()))
    if warn:
        log_findings(change)
    return change


def log_findings(change: ResourceUpdate) -> None:
    """Each approximation, and each field left as it is, to `pveoci.findings` at info (as a create's)."""
    for finding in change.findings:
        if finding.status != "applied":
            findings_log.info("%s: %s (%s)", finding.field, finding.detail, finding.status)
