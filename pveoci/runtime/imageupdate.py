"""An image update in place: a container moved to another image, keeping what is its own.

Proxmox has no way to give a container another root filesystem: `move-volume` refuses the rootfs, and a
restore over it destroys its mount points' volumes. So the container stays (its VMID, node, config: mount
points and their data, network with its MAC address, resources, annotations) and only its root filesystem's
content and its process change:

1. the image is pulled for the node and its template sent there as a create's would be (never twice);
2. the process stops (a shutdown: it gets its stop signal and 10 s, as `docker stop`); on the node, the
   template is unpacked beside the old tree and the two swap places by renames (backends.swapscript), mount
   points left where they are;
3. one config change gives the container its new process, marker and card: the moment the update takes;
4. the CT starts; a container that ran is started again and watched for `grace` seconds;
5. the old tree is removed. If the new container does not start, or its process ends within the grace
   period, the old config and tree come back and it starts again as it was (RolledBack).

Each step is journaled in the cache first. Killed at any moment, the next command here (runtime.recovery,
runtime.swap) or another update from anywhere finishes it or undoes it: the container's marker says which
template it is on now, and the node's `.pveoci-update` which one the swap was to, so the root filesystem is
made to match the config, never left half-way.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pveoci import card, errors, marker
from pveoci.lxc.properties import tag_list
from pveoci.models import Guest, State
from pveoci.process import encode
from pveoci.progress import Progress
from pveoci.runtime import STOP_TIMEOUT, facts, initfeed, nodeimage, push, swap, transitions
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_STARTED
from pveoci.runtime.locate import Located, require, to_state
from pveoci.runtime.plans import plan_for

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest
    from pveoci.lxc.mapping import Plan
    from pveoci.oci.bundle import Bundle
    from pveoci.template.manifest import Scan

log = logging.getLogger("pveoci.runtime")

#: Seconds a started process is watched before an update counts as done.
GRACE = 3.0


@dataclass
class ImageUpdate:
    """What an image update changes (`dry_run`: would change) and keeps."""

    id: str
    node: str
    vmid: int
    status: str                       # the container's status before
    image: str                        # the new image, as pulled
    digest: str                       # its manifest's digest
    template: str                     # the template it is on now
    new_template: str                 # the template it goes to (its name; a volid once sent)
    size: int                         # bytes of the new image's root filesystem
    disk: str                         # the root disk it keeps (its rootfs option)
    process: dict[str, Any]           # the new process: args, env, cwd, user, stop signal
    kept: dict[str, str]              # what stays: mount points, network, ... (option -> value)
    keeps: list[str] = field(default_factory=list)   # paths whose content stays: mount points, volumes, --keep
    findings: list[str] = field(default_factory=list)
    dry_run: bool = False
    changed: bool = True              # False: already on this image with this process
    state: State | None = None        # after the update

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "state"}
        out["state"] = self.state.to_json() if self.state is not None else None
        return out


@dataclass
class _Change:
    """An update under way: the container as found, the new image's bundle and plan, the config before and after."""

    cid: str
    found: Located
    config: dict[str, Any]
    old: marker.Marker
    target: swap.Target
    bundle: Bundle
    scanned: Scan
    plan: Plan
    entrypoint: str | None          # the option it gets (initfeed.entrypoint); None before PVE 9.1

    @property
    def g(self) -> Guest:
        return self.found.guest


def update_image(ctx: Context, cid: str, image: ImageRequest, *, dry_run: bool = False, grace: float = GRACE,
                 keep: Sequence[str] = (), transport: str = "sftp", progress: Progress,
                 warn: bool = True) -> ImageUpdate:
    wanted = [swap.kept_path(path, "--keep") for path in keep]
    change, result = _prepared(ctx, cid, image, wanted, progress=progress, warn=warn, make=not dry_run)
    result.dry_run = dry_run
    if dry_run:
        return result
    g = change.g
    dest = facts.destination(ctx, g.node, ctx.profile.template_storage)
    if not dest.directory:
        raise errors.Unsupported(f"storage {dest.storage} on {g.node} has no directory the node can unpack a "
                                 "template from")
    arch = push.node_arch(ctx, g.node)
    pushed = push.ensure(ctx, change.bundle, change.plan, dest, arch=arch, transport=transport, progress=progress,
                         scanned=change.scanned)
    result.new_template = pushed.volid
    template = f"{dest.directory}/{pushed.name}" if pushed.volid != change.old.template else ""
    if not template and change.config.get("entrypoint") == change.entrypoint and \
            change.old.spec_digest == change.bundle.config_digest:
        result.changed = False
        result.state = to_state(ctx, change.found)
        return result
    result.state = _apply(ctx, change, pushed.volid, template, grace=grace, progress=progress)
    return result


def _prepared(ctx: Context, cid: str, image: ImageRequest, keep: list[str], *, progress: Progress,
              warn: bool, make: bool = True) -> tuple[_Change, ImageUpdate]:
    """The container as it is, the image pulled for its node and planned for it: what would change. What the old
    tree has at the image's volumes and at `keep` stays (as docker keeps a service's volumes). `make`: an image
    the node pulls has its template made there (not for a dry run, which plans from its config)."""
    found = _updatable(ctx, cid)
    g = found.guest
    config = ctx.backend.config(g.node, g.vmid)
    old = marker.parse(config.get("description"))
    if old is None:
        raise errors.MarkerUnreadable(f"CT {g.vmid} on {g.node} carries no pveoci marker", node=g.node,
                                      vmid=g.vmid)
    arch = push.node_arch(ctx, g.node)
    bundle, scanned = nodeimage.load(ctx, image, arch, note=progress.note)
    if make and bundle.image is not None and bundle.image.on_node:
        first = plan_for(ctx, bundle, cid, strict=False, warn=False, size=scanned.size)
        bundle, scanned, _ = nodeimage.ready(ctx, bundle, scanned, first, g.node, arch, progress)
    plan = plan_for(ctx, bundle, cid, strict=False, warn=warn, size=scanned.size)
    assert bundle.image is not None
    pulled = bundle.image.image
    keep += [path for path in map(_volume, pulled.process.get("Volumes") or {}) if path and path not in keep]
    change = _Change(cid, found, config, old, swap.target_of(config, g, keep), bundle, scanned, plan,
                     initfeed.entrypoint(plan.process, plan.legacy_init))
    result = ImageUpdate(
        id=cid, node=g.node, vmid=g.vmid, status=found.status, image=str(pulled.reference), digest=pulled.digest,
        template=old.template, new_template=push.known_template(ctx, bundle.rootfs, scanned, arch,
                                                                 plan.legacy_init) or "(packed when sent)",
        size=scanned.size, disk=str(config.get("rootfs", "")), process=_process(plan),
        kept={k: str(v) for k, v in sorted(config.items()) if _kept(k)},
        findings=[f"{f.field}: {f.detail} ({f.status})" for f in plan.warnings()],
        keeps=["/" + path for path in change.target.keep])
    return change, result


def _volume(path: object) -> str:
    """An image's volume as a path to keep; "" for one no update can keep (its finding says what it is)."""
    try:
        return swap.kept_path(str(path), "a volume")
    except errors.InvalidParameter:
        return ""


def _apply(ctx: Context, change: _Change, volid: str, template: str, *, grace: float, progress: Progress) -> State:
    """Stop, swap the tree (to `template`, a path on the node; "" keeps it), change the config, start; journaled,
    rolled back on failure (RolledBack)."""
    g, old, plan, cid, status = change.g, change.old, change.plan, change.cid, change.found.status
    new_mark = replace(old, bundle=str(change.bundle.path), rootfs=str(change.bundle.rootfs), template=volid,
                       spec_digest=change.bundle.config_digest, stop_signal=plan.stop_signal,
                       annotations=_annotations(old.annotations, plan.annotations))
    before = {"description": change.config.get("description", ""), "tags": tag_list(g.tags)}
    if "entrypoint" in change.config:
        before["entrypoint"] = str(change.config["entrypoint"])
    description = marker.render(new_mark)
    tags = (set(g.tags) - {TAG_STARTED} - card.for_description(before["description"])) | card.for_description(
        description)
    after = {"description": description, "tags": tag_list(tags)}
    if change.entrypoint is not None:
        after["entrypoint"] = change.entrypoint
    if template:   # before anything changes: a disk too small refuses the update with the process still running
        swap.run_step(ctx, g, change.target, "check", template, change.scanned.size)
    op = ctx.cache.begin("update", cid, ctx.cluster, g.node)
    # A spec that reaches the init only after a start (before 9.1, or too long): kept for a recovery that starts it.
    spec = base64.b64encode(encode(plan.process)).decode() if initfeed.spec_after_start(change.entrypoint) else ""
    ctx.cache.step(op, "stop", vmid=g.vmid, was=status, name=template.rsplit("/", 1)[-1] if template else "",
                   before=before, after=description, spec=spec)
    try:
        if g.status == "running":
            progress.note(f"stopping CT {g.vmid} on {g.node}")
            _shut_down(ctx, g)
        if template:
            ctx.cache.step(op, "swap")
            progress.note(f"swapping the root filesystem of CT {g.vmid}")
            swap.swap_to(ctx, g, change.target, template, change.scanned.size, old.template)
        ctx.cache.step(op, "config")
        ctx.backend.set_options(g.node, g.vmid, after)
        ctx.cache.step(op, "start")
        started = _bring_up(ctx, cid, g, status, encode(plan.process) if spec else b"", grace)
        if template:
            swap.run_step(ctx, started.guest, change.target, "commit")
    except errors.PveociError as exc:
        try:
            swap.roll_back(ctx, cid, g, change.target, before, status, bool(template))
        except errors.PveociError as again:
            raise errors.PveociError(f"the update of {cid} failed ({exc.message}) and so did putting its old image "
                                     f"back ({again.message}); the next pveoci command for it tries again",
                                     detail=exc.detail) from None
        finally:
            ctx.cache.settle(op)
        ctx.cache.finish(op)
        assert change.bundle.image is not None
        raise errors.RolledBack(f"the update of {cid} to {change.bundle.image.image.reference} did not take "
                                f"({exc.message}); it is back on {old.template}", detail=exc.detail) from None
    except BaseException:
        ctx.cache.settle(op)   # interrupted: the next command finishes or undoes it (recover)
        raise
    record = started.record
    record.bundle, record.rootfs, record.template = new_mark.bundle, new_mark.rootfs, new_mark.template
    record.annotations, record.stop_signal = new_mark.annotations, new_mark.stop_signal
    ctx.cache.put(record)
    ctx.cache.finish(op)
    return to_state(ctx, Located(started.guest, record))


def _shut_down(ctx: Context, g: Guest) -> None:
    """As `docker stop`: the process gets its stop signal (the init forwards Proxmox's halt to it) and
    STOP_TIMEOUT seconds to end, then the CT is stopped."""
    try:
        ctx.backend.shutdown(g.node, g.vmid, STOP_TIMEOUT)
    except errors.PveociError:
        if ctx.backend.status(g.node, g.vmid).status == "running":
            transitions.stop_ct(ctx, g.node, g.vmid)


def _updatable(ctx: Context, cid: str) -> Located:
    found = require(ctx, cid)
    status = found.status
    if not found.with_init:
        raise errors.Unsupported(f"container {cid} was made by pveoci 0.1 (its process is in its template): "
                                 "recreate it to update its image")
    if status == "paused":
        raise errors.Paused(f"container {cid} is paused: resume it before updating its image", status=status)
    if status not in ("created", "running", "stopped"):
        raise errors.ContainerStateError(f"cannot update container {cid} while it is {status}", status=status)
    return found


def _process(plan: Plan) -> dict[str, Any]:
    p = plan.process
    return {"args": list(p.args), "env": list(p.env), "cwd": p.cwd, "user": f"{p.uid}:{p.gid}",
            "additional_gids": list(p.additional_gids), "stop_signal": plan.stop_signal}


def _kept(option: str) -> bool:
    return (option.startswith(("mp", "net", "dev")) and option[-1:].isdigit()) or option in (
        "memory", "swap", "cores", "cpulimit", "cpuunits", "hostname", "nameserver", "searchdomain", "features",
        "unprivileged", "onboot", "startup")


def _annotations(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """The container's annotations stay its own; those an image gives (its name, digest, stop signal) are the new
    image's."""
    from pveoci.image import imageconfig

    from_image = {imageconfig.STOP_SIGNAL, imageconfig.IMAGE_NAME, imageconfig.IMAGE_DIGEST}
    return {**{k: v for k, v in old.items() if k not in from_image},
            **{k: v for k, v in new.items() if k in from_image}}


def _bring_up(ctx: Context, cid: str, g: Guest, was: str, spec: bytes, grace: float) -> Located:
    """Start the CT on its new process (`spec`: given to its init once it runs, when not on its entrypoint):
    created stays created (its init waits); running or stopped is started and watched for `grace` seconds.
    RolledBack-worthy errors (a start that fails, a process that ends) raise."""
    ctx.backend.start(g.node, g.vmid)
    if spec:
        initfeed.place_spec(ctx, g.node, g.vmid, spec)
    found = require(ctx, cid)
    if was == "created":
        return found
    transitions.start(ctx, cid, found)
    deadline = time.monotonic() + grace
    while True:
        now = require(ctx, cid)
        if now.guest.status != "running":
            from pveoci.runtime import processes

            status = processes.exit_status(ctx, to_state(ctx, now))
            raise errors.PveociError(f"its process exited with status {status} within {grace:g} s")
        if time.monotonic() >= deadline:
            return now
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
