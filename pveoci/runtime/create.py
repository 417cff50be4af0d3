"""Create: a bundle becomes a container on the cluster, or nothing does.

The steps (template, allocate, create) are journaled in the cache before they run, so a failed
create is rolled back here and a killed one by the next command (runtime.recovery). After its
container exists, a create checks that it is the only one for its id (runtime.claim).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pveoci import card, errors, hooks, marker
from pveoci.cache import Record
from pveoci.lxc.draft import CopiedFile
from pveoci.lxc.mapping import Plan
from pveoci.lxc.properties import tag_list
from pveoci.models import Guest, Placement, PushResult, StandIn
from pveoci.oci.bundle import Bundle
from pveoci.process import ProcessSpec, encode
from pveoci.progress import Progress
from pveoci.runtime import facts, initfeed, push, standins, survey
from pveoci.runtime.claim import claim
from pveoci.runtime.context import Context
from pveoci.runtime.ids import check_id, id_tag, rfc3339_now
from pveoci.runtime.locate import Located, locate, settled, to_state
from pveoci.runtime.placement import choose_node
from pveoci.runtime.plans import check_mapping, plan_for
from pveoci.runtime.recovery import recover, roll_back
from pveoci.runtime.vmids import create_with_fresh_vmid
from pveoci.runtime.walking import walking
from pveoci.template import manifest

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest

log = logging.getLogger("pveoci.runtime")



def relayed(process: ProcessSpec, *, stdin: bool, pty: bool) -> ProcessSpec:
    """The process with its input relayed by a stand-in, and with a pty of its own in place of the console when
    a stand-in gives it a terminal (runc's console socket, which needs process.terminal, as runc's does)."""
    if pty and not process.terminal:
        raise errors.InvalidParameter("--console-socket: the bundle's process.terminal is false: it gets no "
                                      "terminal (runc refuses it too)")
    return replace(process, stdin=True, pty=pty, terminal=process.terminal and not pty)


def checked(ctx: Context, cid: str, bundle_dir: Path, transport: str, image: ImageRequest | None = None,
            node: str | None = None, progress: Progress | None = None) -> tuple[Bundle, manifest.Scan]:
    """What a create can check before it asks the cluster anything: the id, the transport, the bundle (or the
    image, pulled for the architecture its node most likely has), and the mapping (as for the cluster's likely
    version: a program not in the rootfs, a resource out of range)."""
    check_id(cid)
    push.check_transport(transport)
    if image is not None:
        from pveoci.runtime import nodeimage

        bundle, scanned = nodeimage.load(ctx, image, push.likely_arch(ctx, node),
                                         note=progress.note if progress else None)
    else:
        # One stat walk (the disk's size, and whether it was packed before), while the spec is checked.
        with walking(bundle_dir) as (bundle, walk):
            scanned = walk.result()
    check_mapping(ctx, bundle, cid, size=scanned.size)
    return bundle, scanned


def create(ctx: Context, cid: str, bundle_dir: Path, *, node: str | None, strict: bool, transport: str,
           progress: Progress, exclude: Iterable[str] = (),
           on_placement: Callable[[Placement], None] | None = None, warn: bool = True,
           stand_in: StandIn | None = None, image: ImageRequest | None = None) -> Located:
    bundle, scanned = checked(ctx, cid, bundle_dir, transport, image, node or ctx.profile.node, progress)
    recover(ctx, cid)
    wanted = node or ctx.profile.node
    # Placed by score, the id is looked for among the containers placement reads anyway: one request fewer.
    if locate(ctx, cid, [] if wanted == "auto" else None) is not None:
        raise errors.AlreadyExists("container with given ID already exists")
    def planned(bundle: Bundle, scanned: manifest.Scan) -> Plan:
        plan = plan_for(ctx, bundle, cid, strict=strict, warn=warn, size=scanned.size)
        if stand_in is not None and (stand_in.stdin or stand_in.console_socket is not None):
            plan.process = relayed(plan.process, stdin=stand_in.stdin, pty=stand_in.console_socket is not None)
        return plan

    plan = planned(bundle, scanned)
    target, op = _place(ctx, cid, bundle, plan, scanned, wanted, exclude, on_placement)
    try:
        arch = push.node_arch(ctx, target)  # an unsupported one is refused before anything is sent
        if bundle.image is not None and bundle.image.arch != arch:  # a node unlike the one guessed
            from pveoci.image import source

            bundle, scanned = source.for_arch(bundle, scanned, arch, note=progress.note)
            plan = planned(bundle, scanned)
        if bundle.image is not None and bundle.image.on_node:  # the node pulls it: its template made there first
            from pveoci.runtime import nodeimage

            bundle, scanned, _ = nodeimage.ready(ctx, bundle, scanned, plan, target, arch, progress)
            plan = planned(bundle, scanned)
        ctx.cache.step(op, "template")
        dest = facts.destination(ctx, target, ctx.profile.template_storage)

        def template() -> PushResult:
            return push.ensure(ctx, bundle, plan, dest, arch=arch, transport=transport, progress=progress,
                               scanned=scanned)

        made = _make_with(ctx, op, cid, bundle, plan, template, arch, progress)
        if stand_in is not None:  # before the hooks: the state they are given has its pid, as every state after
            standins.leave_for(ctx, cid, stand_in)
        hooks.run("prestart", made.record.hooks, to_state(ctx, made).to_json())
        hooks.run("createRuntime", made.record.hooks, to_state(ctx, made).to_json())
        ctx.cache.finish(op)
    except BaseException as exc:
        if isinstance(exc, errors.NodeOffline):
            facts.nodes_changed(ctx)
        roll_back(ctx, op, cid)
        raise
    finally:
        ctx.cache.settle(op)   # rolled back, or left for recover() when the roll back failed too
    return made


def _make_with(ctx: Context, op: int, cid: str, bundle: Bundle, plan: Plan, template: Callable[[], PushResult],
               arch: str, progress: Progress) -> Located:
    """Make the container from the template; if the template was known to be on the storage but is gone
    (removed from elsewhere), Proxmox says so, and it is sent again for one more try."""
    pushed = template()
    try:
        return _make(ctx, op, cid, bundle, plan, pushed, arch, progress)
    except errors.TaskFailed as exc:
        if not _template_missing(exc, pushed.volid):
            raise
        log.info("%s is no longer on %s; sending it again", pushed.volid, pushed.node)
        facts.template_gone(ctx, facts.destination(ctx, pushed.node, pushed.storage), pushed.volid.split("/", 1)[1])
        return _make(ctx, op, cid, bundle, plan, template(), arch, progress)


def _template_missing(exc: errors.TaskFailed, volid: str) -> bool:
    """Proxmox's words for a create whose ostemplate is not there: `can't find file '<volid>'` (PVE's
    abs_filesystem_path), or `volume '<volid>' does not exist`."""
    text = " ".join([exc.message, *exc.log_tail])
    return f"can't find file '{volid}'" in text or f"volume '{volid}' does not exist" in text


def _place(ctx: Context, cid: str, bundle: Bundle, plan: Plan, scanned: manifest.Scan, wanted: str,
           exclude: Iterable[str], on_placement: Callable[[Placement], None] | None) -> tuple[str, int]:
    """The node for the create, and its journal entry, which records the node and what the container asks of
    it. `auto` picks under the cache's placement lock, so this machine's creates see each other's picks."""
    ask = survey.ask_for(ctx, plan, exclude)
    hint = template_hint(ctx, bundle, scanned, plan)
    rootfs = hint.rootfs

    def journal(target: str) -> int:
        op = ctx.cache.begin("create", cid, ctx.cluster, target)
        ctx.cache.step(op, "placed", memory=ask.memory, disk=ask.disk, rootfs=rootfs, group=ask.group)
        return op

    if wanted != "auto":
        target = choose_node(facts.nodes(ctx), wanted)
        if on_placement is not None:
            on_placement(replace(explain(ctx, ask, cid, hint), node=target))
        return target, journal(target)
    def taken(guests: list[Guest]) -> None:
        if locate(ctx, cid, guests) is not None:
            raise errors.AlreadyExists("container with given ID already exists")

    with ctx.cache.lock(survey.LOCK):
        placed = survey.place(ctx, ask, cid, hint, taken)
        op = journal(placed.node)
    log.info("%s goes to %s (score %.1f)", cid, placed.node, placed.scores[0].score or 0.0)
    if on_placement is not None:
        on_placement(placed)
    return placed.node, op


def template_hint(ctx: Context, bundle: Bundle, scanned: manifest.Scan, plan: Plan) -> survey.TemplateHint:
    """How placement tells which nodes have this bundle's template (by the name its last pack had, or an alike
    tree's)."""
    return survey.TemplateHint(str(bundle.rootfs.resolve()), lambda node: push.known_template(
        ctx, bundle.rootfs, scanned, push.node_arch(ctx, node), plan.legacy_init))


def explain(ctx: Context, ask: survey.Ask, cid: str, hint: survey.TemplateHint | None = None) -> Placement:
    """Every node's score, as placement sees it, whether or not one can take the container."""
    try:
        return survey.place(ctx, ask, cid, hint)
    except errors.NoSuitableNode as exc:
        if exc.placement is None:
            raise
        return exc.placement


def _make(ctx: Context, op: int, cid: str, bundle: Bundle, plan: Plan, pushed: PushResult, arch: str,
          progress: Progress) -> Located:
    """Allocate a VMID and create the container, started: its init waits with the process spec. It must then
    hold the id alone."""
    created = rfc3339_now()
    mark = marker.Marker(id=cid, bundle=str(bundle.path), rootfs=str(bundle.rootfs), template=pushed.volid,
                         spec_digest=bundle.config_digest, created=created, host=socket.gethostname(),
                         annotations=plan.annotations, stop_signal=plan.stop_signal)
    description = marker.render(mark)
    tags = {marker.TAG, id_tag(cid), *card.for_description(description)}  # the card: `list` reads it (pveoci.card)
    # PVE >= 9.1: the spec rides on the entrypoint option; before (or when too long), it is placed after the start.
    entry = initfeed.entrypoint(plan.process, plan.legacy_init)
    options = {**plan.options, "ostemplate": pushed.volid, "description": description,
               "tags": tag_list(tags), "arch": arch, "start": 1}
    if entry is not None:
        options["entrypoint"] = entry
    target = pushed.node

    def journal(vmid: int) -> None:
        ctx.cache.step(op, "allocate", vmid=vmid)
        progress.note(f"creating CT {vmid} on {target}")
        ctx.cache.step(op, "create", vmid=vmid)

    vmid = create_with_fresh_vmid(ctx, target, options, journal)
    if initfeed.spec_after_start(entry):
        initfeed.place_spec(ctx, target, vmid, encode(plan.process))
    if not claim(ctx, cid, target, vmid, tags):
        raise errors.AlreadyExists("container with given ID already exists")
    guest = settled(ctx, target, vmid)
    if plan.files:
        _place_files(ctx, target, vmid, plan)
    record = Record(id=cid, cluster=ctx.cluster, node=target, vmid=vmid, bundle=str(bundle.path),
                    rootfs=str(bundle.rootfs), template=pushed.volid, created=created, status="created",
                    annotations=plan.annotations, stop_signal=plan.stop_signal,
                    hooks=hooks.from_spec(bundle.spec.hooks), marker_version=mark.version)
    ctx.cache.put(record)
    return Located(guest, record)


def _place_files(ctx: Context, node: str, vmid: int, plan: Plan) -> None:
    """The files of this machine's that bind mounts put in the container (an engine's /etc/hosts, resolv.conf),
    written by the waiting init (`init files`), all in one command."""
    initfeed.feed_init(ctx, node, vmid, "files", encode_files(plan.files), "copy the bind-mounted files into")


def encode_files(files: Iterable[CopiedFile]) -> bytes:
    """`init files`'s stdin: PATH NUL MODE(octal) NUL UID NUL GID NUL LENGTH NUL, then the bytes, for each file."""
    return b"".join(f"{f.path}\0{f.mode:o}\0{f.uid}\0{f.gid}\0{len(f.data)}\0".encode() + f.data for f in files)
