"""`pveoci doctor`: check a profile against its cluster, one pass/fail result per check.

`diagnose` checks the API backend's path (API, TLS, auth, privileges) and then, as the pct backend's
checks do too (backends.pct_checks), the cluster, its nodes and SSH to each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Literal

from pveoci import errors
from pveoci.models import Check, Node, Storage
from pveoci.pve import cluster, privileges
from pveoci.pve.version import parse_version
from pveoci.settings import Settings
from pveoci.ssh import SshConnector

if TYPE_CHECKING:
    from pveoci.pve.client import PveClient

Status = Literal["pass", "fail", "warn", "skip"]


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def _tls_mode(settings: Settings) -> tuple[Status, str]:
    p = settings.profile
    if p.fingerprint:
        return "pass", "TLS pinned to fingerprint"
    if p.ca_file:
        return "pass", f"TLS verified with CA {p.ca_file}"
    if p.verify_tls:
        return "pass", "TLS verified with the system CAs"
    return "warn", "TLS NOT verified (verify_tls = false)"


#: How a node's SSH is checked: the connector (node addresses from the cluster) and the node's name.
SshCheck = Callable[[SshConnector, str], Check]


def node_pull(held: Mapping[str, Mapping[str, object]], version: str) -> Check:
    """Whether the nodes may pull images themselves (`--pull node`, and `auto`'s first choice): Proxmox VE 9.1's
    `oci-registry-pull` and the token's Sys.AccessNetwork. Not needed: without it, images are pulled here."""
    try:
        release = parse_version(version)
    except errors.PveociError:
        release = (0, 0)
    if release < (9, 1):
        return Check("node pull", "skip", f"Proxmox VE {version or '?'} cannot pull images (9.1 can): this "
                                          "machine pulls them")
    if not privileges.holds(held, "/nodes", "Sys.AccessNetwork"):
        return Check("node pull", "skip", "no Sys.AccessNetwork on /nodes: this machine pulls images (the nodes "
                                          "could pull public ones themselves with it: docs/permissions.md)")
    return Check("node pull", "pass", "the nodes pull public images themselves (Sys.AccessNetwork on /nodes)")


def diagnose(settings: Settings, client: PveClient, ssh_check: SshCheck | None = None) -> Iterator[Check]:
    """Each check of the profile against its cluster, as it finishes (`ssh_check` replaces the SSH one)."""
    profile = settings.profile
    tls_status, tls_text = _tls_mode(settings)
    try:
        version = client.version()
    except errors.AuthError as exc:
        yield Check("api", tls_status, f"{client.endpoint} answers; {tls_text}")
        yield Check("auth", "fail", exc.message)
        return
    except errors.PveociError as exc:
        yield Check("api", "fail", exc.message)
        return
    yield Check("api", tls_status,
                f"{client.endpoint} answers, Proxmox VE {version.get('version', '?')}; {tls_text}")
    method = "API token" if profile.token_id else "login ticket for"
    yield Check("auth", "pass", f"{method} {client.identity}")

    try:
        held = client.permissions()
    except errors.PveociError as exc:
        yield Check("privileges", "fail", f"cannot read the caller's permissions: {exc.message}")
    else:
        wanted = privileges.requirements(profile)
        lacking = privileges.missing(held, wanted)
        if lacking:
            text = "; ".join(f"{r.privilege} on {r.path} ({r.why})" for r in lacking)
            yield Check("privileges", "fail", f"{client.identity} lacks {text}")
        else:
            yield Check("privileges", "pass", f"all {len(wanted)} privileges pveoci needs are held")
        yield node_pull(held, str(version.get("version", "")))

    try:
        status = cluster.quorum(client)
        nodes = cluster.nodes(client)
    except errors.PveociError as exc:
        yield Check("cluster", "fail", exc.message)
        return
    yield from cluster_checks(status, nodes, settings, SshConnector(profile.ssh, status.addresses), ssh_check)


def cluster_checks(status: cluster.Quorum, nodes: list[Node], settings: Settings,
                   connector: SshConnector, ssh_check: SshCheck | None = None) -> Iterator[Check]:
    """Quorum, each node and its storages, SSH (host key, SFTP) to each online node."""
    members = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    if status.quorate:
        yield Check("quorum", "pass", f"cluster {status.name or '(single node)'} is quorate, {members}")
    else:
        yield Check("quorum", "fail", f"cluster {status.name or ''} has NO quorum: nothing can be changed")
    for node in nodes:
        yield _node_check(node, settings)
    try:
        for node in nodes:
            if not node.online:
                yield Check(f"ssh {node.name}", "skip", "node is offline")
                continue
            yield (ssh_check or check_ssh)(connector, node.name)
    finally:
        connector.close_all()
    yield packer_check()


def packer_check() -> Check:
    """Which packer makes templates on this workstation (the C one uses about half the CPU)."""
    from pveoci.template import native

    why = native.why_not()
    if why is None:
        return Check("packer", "pass", f"templates packed by {native.binary()} (zstd "
                                       f"{'.'.join(map(str, native.ZSTD_VERSION))})")
    return Check("packer", "pass" if why == "PVEOCI_PACKER=python" else "warn", f"templates packed in Python: {why}")


def _node_check(node: Node, settings: Settings) -> Check:
    profile = settings.profile
    name = f"node {node.name}"
    if not node.online:
        return Check(name, "fail", f"offline{': ' + node.problem if node.problem else ''}")
    templates = node.usable("vztmpl")
    roots = node.usable("rootdir")

    def listing(items: list[Storage]) -> str:
        return ", ".join(f"{s.name} ({s.type}{', shared' if s.shared else ''}, {_gib(s.avail)} free)"
                         for s in items) or "none"

    detail = (f"online, {node.maxcpu} CPUs at {node.cpu:.0%}, {_gib(node.mem_free)} memory free; "
              f"templates: {listing(templates)}; root disks: {listing(roots)}")
    problems = []
    if profile.template_storage not in {s.name for s in templates}:
        problems.append(f"template storage '{profile.template_storage}' is not usable here")
    if profile.rootfs_storage not in {s.name for s in roots}:
        problems.append(f"rootfs storage '{profile.rootfs_storage}' is not usable here")
    if problems:
        return Check(name, "fail", "; ".join(problems) + f" ({detail})")
    return Check(name, "pass", detail)


def check_ssh(connector: SshConnector, node: str) -> Check:
    """Log in to the node, check its host key, open SFTP."""
    name = f"ssh {node}"
    try:
        target = connector.target(node)
        session = connector.session(node)
        sftp = session.sftp()
        sftp.close()
        return Check(name, "pass", f"{target} over {connector.settings.transport}, {session.describe()}, "
                     "SFTP works")
    except errors.PveociError as exc:
        return Check(name, "fail", exc.message)
    except Exception as exc:
        return Check(name, "fail", f"{node}: SSH works but SFTP failed: {exc}")
