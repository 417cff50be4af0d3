"""`pveoci doctor` for the pct backend: the way in (this node, or SSH to the profile's host), pct and pvesh there
and on every online node, run as root (or through sudo); then the cluster's checks, as pvesh sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pveoci import checks, errors
from pveoci.backends.runner import ENTRY
from pveoci.models import Check
from pveoci.pve import cluster

if TYPE_CHECKING:
    from pveoci.backends.pct import PctBackend

# Run on a node by the pct backend's checks: are pct and pvesh there, and who runs them (0: root).
_TOOLS = 'for tool in pct pvesh; do command -v "$tool" >/dev/null || { echo "$tool: not found" >&2; exit 127; }; ' \
         'done; id -u'


def diagnose_pct(backend: PctBackend, *, with_cluster: bool = True) -> Iterator[Check]:
    """The pct path: the entry (this node, or SSH to the profile's host), pct and pvesh as root there and on every
    online node; with `with_cluster`, the cluster's checks as pvesh sees them."""
    settings = backend.settings
    first = _tools_check(backend, ENTRY, "pct", backend.entry_label)
    yield first
    if first.status == "fail":
        return
    try:
        version = backend.pvesh.get("version")
        status = backend.cluster_status()
        nodes = cluster.nodes(backend.pvesh)
    except errors.PveociError as exc:
        yield Check("pvesh", "fail", exc.message)
        return
    yield Check("pvesh", "pass", f"Proxmox VE {version.get('version', '?')}, entered at node {status.local or '?'}")
    if with_cluster:
        yield from checks.cluster_checks(status, nodes, settings, backend.ssh)
    for node in nodes:
        if node.online:
            yield _tools_check(backend, node.name, f"pct {node.name}", f"node {node.name}")


def _tools_check(backend: PctBackend, node: str, name: str, where: str) -> Check:
    try:
        done = backend.runner.run(node, ["sh", "-c", _TOOLS], timeout=60)
    except errors.PveociError as exc:
        return Check(name, "fail", f"{where}: {exc.message}")
    said = done.stderr.decode(errors="replace").strip()
    if done.status != 0:
        return Check(name, "fail", f"{where}: {said or f'exit {done.status}'}")
    uid = done.stdout.decode(errors="replace").strip()
    if uid != "0":
        return Check(name, "fail", f"{where}: pct and pvesh need root, and run as uid {uid} (set ssh.sudo, or log "
                                   "in as root)")
    how = "through sudo" if getattr(backend.runner, "sudo", False) else "as root"
    return Check(name, "pass", f"{where}: pct and pvesh found, run {how}")
