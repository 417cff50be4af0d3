"""A bundle mapped for the cluster, as create, update --image, plan and template push need it, without what a create
needs besides (placement, VMIDs, the journal): a template push of an unchanged rootfs loads no more than this."""

from __future__ import annotations

import logging

from pveoci import marker, planning
from pveoci.lxc.mapping import Plan
from pveoci.oci.bundle import Bundle
from pveoci.runtime.context import Context

#: What a create cannot honour in the bundle (the mapping's findings): a logger of its own, so that scripts
#: can silence it (`logging.getLogger("pveoci.findings").setLevel(logging.ERROR)`) and keep the others.
findings_log = logging.getLogger("pveoci.findings")


def plan_for(ctx: Context, bundle: Bundle, cid: str, *, strict: bool, warn: bool = True,
             size: int | None = None) -> Plan:
    """The bundle mapped for this cluster; in strict mode a MappingError before anything changes.

    With `warn`, what Proxmox cannot honour is logged (a create warns; a template push does not).
    """
    plan = planning.plan_bundle(bundle, ctx.profile, container_id=cid, pve_version=ctx.backend.version(),
                                size=size, root_pam=ctx.backend.privileged())
    marker.check_fits(cid, str(bundle.path), str(bundle.rootfs))  # the container's notes can hold its marker
    plan.check(strict)
    if not warn:
        return plan
    unsupported = sorted({f.field for f in plan.unsupported})
    if unsupported:
        findings_log.warning("%s: not supported by Proxmox, ignored (pveoci plan -b %s shows why)",
                    ", ".join(unsupported), bundle.path)
    for finding in plan.warnings():
        findings_log.info("%s: %s (%s)", finding.field, finding.detail, finding.status)
    return plan


def check_mapping(ctx: Context, bundle: Bundle, cid: str, *, size: int) -> None:
    """The mapping's refusals (a program not in the rootfs, a resource out of range), as for the cluster's likely
    version, before the cluster is asked its own."""
    planning.plan_bundle(bundle, ctx.profile, container_id=cid, pve_version=planning.ASSUMED_VERSION, size=size)
