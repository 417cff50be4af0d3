"""Templates as use cases: make sure a bundle's template is on a storage (create and `template push` share
this), list pveoci's templates with the containers made from them, remove one, remove the unused ones.

A template is named by its content, so a storage that lists the name has it: it is never sent twice.
Shared storage holds one copy for every node; node-local storage one per node.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pveoci import errors
from pveoci.models import Destination, PushResult, State, Template
from pveoci.progress import Progress
from pveoci.runtime.context import Context
from pveoci.template.pack import NAME_PREFIX, SUFFIX, ExtraFile, Packed, pack, rootfs_size

if TYPE_CHECKING:
    from pveoci.lxc.mapping import Plan
    from pveoci.oci.bundle import Bundle

TRANSPORTS = ("sftp", "api")


def is_pveoci_template(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith(SUFFIX)


def default_work_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("pveoci") / "templates"


def template_files(rootfs: Path, arch: str, legacy_init: bool) -> list[ExtraFile]:
    """What pveoci adds to a rootfs in its template: its init for the node's architecture, the directory
    the init keeps its state in, and, for PVE before 9.1 (no entrypoint option), /sbin/init pointing at it.

    Nothing of the process: that travels with the container, so one template serves every bundle of a rootfs.
    """
    from pveoci import init

    files = [ExtraFile(init.INIT_PATH.lstrip("/"), init.binary(arch), 0o755),
             ExtraFile(init.RUN_DIR.lstrip("/"), mode=0o711, directory=True)]
    if legacy_init:
        files += _sbin_init(rootfs, init.INIT_PATH)
    return files


def _sbin_init(rootfs: Path, target: str) -> list[ExtraFile]:
    """LXC starts /sbin/init: replace what that path names in this rootfs (following /sbin -> usr/sbin as the
    container would) by a link to pveoci's init, so the rootfs's own init never runs instead."""
    from pveoci.oci.rootfs import resolve_in_root

    sbin = resolve_in_root(rootfs, "/sbin")
    if sbin is None:
        return [ExtraFile("sbin", mode=0o755, directory=True), ExtraFile("sbin/init", link=target)]
    if not sbin.is_dir():
        raise errors.BundleError(f"rootfs {rootfs}: /sbin is not a directory, so PVE before 9.1 cannot start "
                                 "pveoci's init as /sbin/init")
    where = sbin.relative_to(rootfs).as_posix()
    return [ExtraFile("init" if where == "." else f"{where}/init", link=target)]


def ensure(ctx: Context, bundle: Bundle, plan: Plan, dest: Destination, *, arch: str, transport: str,
           progress: Progress) -> PushResult:
    """Pack the bundle's template and upload it to dest unless dest lists it already; the local file is removed.

    Each call packs into a directory of its own: concurrent pushes of the same bundle make files of
    the same name, and one must not remove another's while it is being sent.
    """
    if transport not in TRANSPORTS:
        raise errors.ConfigError(f"unknown transport '{transport}' (one of: {', '.join(TRANSPORTS)})")
    started = time.monotonic()
    base = default_work_dir()
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="push-", dir=base))
    try:
        progress.note(f"packing {bundle.rootfs}")
        try:
            packed = pack(bundle.rootfs, workdir, extras=template_files(bundle.rootfs, arch, plan.legacy_init),
                          progress=progress.transfer("packing", rootfs_size(bundle.rootfs)))
        finally:
            progress.done("packing")
        result = _upload_unless_present(ctx, packed, dest, transport, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return replace(result, seconds=time.monotonic() - started)


def _upload_unless_present(ctx: Context, packed: Packed, dest: Destination, transport: str,
                           progress: Progress) -> PushResult:
    volid = dest.volid(packed.name)

    def result(uploaded: bool, sent: int) -> PushResult:
        return PushResult(volid=volid, node=dest.node, storage=dest.storage, shared=dest.shared, uploaded=uploaded,
                          bytes_sent=sent, size=packed.size, digest=packed.digest)

    if _find(ctx, dest, packed.name) is not None:
        progress.note(f"{packed.name} is on {dest.storage} ({dest.node}) already")
        return result(False, 0)
    if dest.avail is not None and dest.avail < packed.size:
        raise errors.PveociError(f"storage '{dest.storage}' on {dest.node} has {dest.avail} bytes free; "
                                 f"the template needs {packed.size}")
    progress.note(f"uploading {packed.name} to {dest.node} over {transport}")
    try:
        sent = ctx.backend.upload(packed, dest, transport=transport,
                                  progress=progress.transfer("uploading", packed.size))
    finally:
        progress.done("uploading")
    landed = _find(ctx, dest, packed.name)
    if landed is None:
        raise errors.ApiError(f"{volid} was uploaded but node '{dest.node}' does not list it")
    if landed.size != packed.size:
        raise errors.ApiError(f"{volid} on node '{dest.node}' has {landed.size} bytes, {packed.size} were sent")
    return result(True, sent)


def _find(ctx: Context, dest: Destination, name: str) -> Template | None:
    return next((t for t in ctx.backend.templates(dest) if t.name == name), None)


ARCH_MAX_AGE = 24 * 3600.0     # a node's architecture, remembered for a day


def node_arch(ctx: Context, node: str) -> str:
    """The init architecture of a node (amd64, arm64); Unsupported for any other, before anything is sent."""
    from pveoci import init

    key = f"machine:{node}"
    machine = ctx.cache.recall(ctx.cluster, key, ARCH_MAX_AGE)
    if not isinstance(machine, str):
        machine = ctx.backend.node_machine(node)
        ctx.cache.remember(ctx.cluster, key, machine)
    try:
        return init.arch_for(machine)
    except ValueError as exc:
        raise errors.Unsupported(f"node '{node}' is {machine}: {exc}") from None


# ------------------------------------------------------------------------ listing


def listing(ctx: Context, node: str | None, storage: str | None) -> list[Template]:
    """pveoci's templates on every online node (or one), a shared storage listed once."""
    wanted = storage or ctx.profile.template_storage
    out: list[Template] = []
    seen_shared = False
    for info in ctx.backend.nodes():
        if (node and info.name != node) or not info.online:
            continue
        usable = {s.name: s for s in info.usable("vztmpl")}
        if wanted not in usable:
            continue
        shared = usable[wanted].shared
        if shared and seen_shared:
            continue
        seen_shared = seen_shared or shared
        dest = Destination(info.name, wanted, shared)
        out.extend(t for t in ctx.backend.templates(dest) if is_pveoci_template(t.name))
    if node and not out and node not in {n.name for n in ctx.backend.nodes()}:
        raise errors.NotFound(f"node '{node}' is not in the cluster")
    return out


def with_users(templates: Iterable[Template], containers: Iterable[State]) -> list[Template]:
    """Each template with the ids of the containers made from it: by volid, and on node-local storage
    only those on that node (local:vztmpl/x on pve1 is not the file of the same name on pve2)."""
    states = list(containers)
    out = []
    for t in templates:
        users = sorted(s.id for s in states if s.template == t.volid and (t.shared or s.node == t.node))
        out.append(replace(t, used_by=tuple(users)))
    return out


def remove(ctx: Context, found: Template, *, force: bool) -> Template:
    """Remove a template; refused (InUse) while containers use it, unless force."""
    if found.used_by and not force:
        raise errors.InUse(f"template {found.name} is used by {', '.join(found.used_by)}; "
                           "--force removes it anyway", users=list(found.used_by))
    ctx.backend.remove_template(Destination(found.node, found.storage, found.shared), found.name)
    return found


def select(templates: list[Template], name: str, node: str | None, storage: str) -> Template:
    """The one template named so (on that node, for node-local storage); NotFound or ambiguous otherwise."""
    if not is_pveoci_template(name):
        raise errors.NotFound(f"'{name}' is not a pveoci template name (pveoci-<digest>.tar.zst)")
    matches = [t for t in templates if t.name == name and (node is None or t.shared or t.node == node)]
    if not matches:
        where = f" ({node})" if node else ""
        raise errors.NotFound(f"template {name} does not exist on {storage}{where}")
    if len(matches) > 1:
        nodes = ", ".join(t.node for t in matches)
        raise errors.InvalidParameter(f"template {name} is on several nodes ({nodes}): say which with --node")
    return matches[0]
