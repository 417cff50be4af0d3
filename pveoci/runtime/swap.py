"""The node's side of an image update (runtime.imageupdate), and settling one that was killed.

A container's root filesystem is swapped on its node (backends.swapscript): the template unpacked beside the old
tree, the two swapped by renames, mount points left where they are, the old tree kept until `commit`. An update
killed half-way is settled by `recover` (from the cache's journal, runtime.recovery) or by the next update (its
`swap` finds the node's `.pveoci-update`): the container's marker says which template its config is on, the node
which one the swap was to, so the tree is made to match the config: finished (`commit`) or undone (`back`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from pveoci import errors, marker
from pveoci.cache import Step
from pveoci.lxc.properties import tag_list
from pveoci.models import Guest
from pveoci.runtime import initfeed, transitions
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_STARTED
from pveoci.runtime.locate import require

log = logging.getLogger("pveoci.runtime")

#: The id map Proxmox gives an unprivileged container without lxc.idmap entries (pve-container's LXC.pm).
DEFAULT_IDMAP = ("u:0:100000:65536", "g:0:100000:65536")


@dataclass(frozen=True)
class Target:
    """How the node's side unpacks for this container: the owner of its root, its id map, and the paths (from its
    root) whose content stays: its mount points, and the directories an update keeps."""

    owner: str
    userns: tuple[str, ...]
    keep: tuple[str, ...]


def kept_path(path: str, what: str) -> str:
    """An absolute path inside the container as the node's side takes it (relative, normalised); InvalidParameter
    for one it cannot keep (not absolute, `..`, a control character, the root itself)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not path.startswith("/") or not parts or ".." in parts or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise errors.InvalidParameter(f"{what}: {path!r} is not a path an update can keep (an absolute path "
                                      "below /, without ..)")
    return "/".join(parts)


def target_of(config: dict[str, Any], guest: Guest, keep: Iterable[str] = ()) -> Target:
    """The container's mount points and `keep` (absolute paths), and, unprivileged, its id map as Proxmox applies
    it."""
    kept = []
    for option, value in sorted(config.items()):
        if option.startswith("mp") and option[2:].isdigit():
            path = next((part[3:] for part in str(value).split(",") if part.startswith("mp=")), "")
            kept.append(kept_path(path, f"CT {guest.vmid}'s {option}"))
    kept += [path for path in keep if path not in kept]
    if str(config.get("unprivileged", "0")) not in ("1", "true"):
        return Target("0:0", (), tuple(kept))
    maps = []
    for key, value in config.get("lxc") or []:
        if key == "lxc.idmap":
            kind, inside, outside, count = str(value).split()
            maps.append(f"{kind}:{inside}:{outside}:{count}")
    maps = maps or list(DEFAULT_IDMAP)
    root = {kind: outside for kind, inside, outside, _ in (m.split(":") for m in maps) if inside == "0"}
    return Target(f"{root.get('u', '100000')}:{root.get('g', '100000')}", tuple(maps), tuple(kept))


def run_step(ctx: Context, guest: Guest, target: Target, action: str, template: str = "",
             need: int = 0) -> tuple[str, str]:
    """One step on the node (backends.swapscript): through /proc/PID/root while the CT runs, else `pct mount`."""
    pid = (guest.pid or 0) if guest.status == "running" else 0
    return ctx.backend.swap_rootfs(guest.node, guest.vmid, action, pid=pid, template=template, owner=target.owner,
                                   userns=target.userns, keep=target.keep, need=need)


def swap_to(ctx: Context, guest: Guest, target: Target, template: str, need: int, current: str) -> None:
    """Swap the stopped container's tree for the template's; an update that did not finish is first finished or
    undone, as its config says (the template the config names is the one the tree must be)."""
    stopped = replace(guest, status="stopped", pid=None)
    try:
        run_step(ctx, stopped, target, "swap", template, need)
        return
    except errors.Locked as exc:
        _, _, name = (exc.detail or "").partition(" ")
    settle(ctx, stopped, target, current, name)
    run_step(ctx, stopped, target, "swap", template, need)


def settle(ctx: Context, guest: Guest, target: Target, current: str, name: str) -> None:
    """Finish (the config names the template it swapped to) or undo an update that did not finish."""
    finished = bool(name) and current.endswith("/" + name)
    log.warning("CT %s on %s: an image update that did not finish is %s", guest.vmid, guest.node,
                "finished" if finished else "undone")
    run_step(ctx, guest, target, "commit" if finished else "back")


def roll_back(ctx: Context, cid: str, g: Guest, target: Target, before: dict[str, str], was: str,
              swapped: bool) -> None:
    """The old config and tree back, and the container as it was (started again when it ran)."""
    log.info("the update of %s did not take: putting its old image back", cid)
    now = ctx.backend.status(g.node, g.vmid)
    if now.status == "running":
        transitions.stop_ct(ctx, g.node, g.vmid)
    restore = dict(before)
    restore["tags"] = tag_list(set(restore["tags"].split(";")) - {TAG_STARTED, ""})
    ctx.backend.set_options(g.node, g.vmid, restore)
    if swapped:
        run_step(ctx, replace(g, status="stopped", pid=None), target, "back")
    restart(ctx, cid, g, was)


def restart(ctx: Context, cid: str, g: Guest, want: str, spec: bytes = b"") -> None:
    """The container `want` (created: its init waits; running: its process started), from stopped or created;
    `spec`: the process its init is given once it runs (PVE before 9.1, whose init has it from no option)."""
    if want in ("created", "running") and ctx.backend.status(g.node, g.vmid).status != "running":
        ctx.backend.start(g.node, g.vmid)
        if spec:
            initfeed.place_spec(ctx, g.node, g.vmid, spec)
    if want == "running":
        found = require(ctx, cid)
        if found.status == "created":
            transitions.start(ctx, cid, found)


def recover(ctx: Context, step: Step) -> None:
    """An update killed half-way (its journal entry, its process gone): finished when its config change was
    made (the config has the new marker), else undone; the container then as the update leaves it (created
    stays created, else started), or as it was."""
    node, vmid = step.node, step.vmid
    try:
        config = ctx.backend.config(node, vmid) if node is not None and vmid is not None else None
    except errors.NotFound:
        config = None
    if config is None or node is None or vmid is None:
        ctx.cache.finish(step.op)
        return
    g = ctx.backend.status(node, vmid)
    target = target_of(config, g)
    done = config.get("description") == step.data.get("after")
    if step.data.get("name"):
        state, _ = run_step(ctx, g, target, "state")
        if state != "none":
            if not done and g.status == "running":
                transitions.stop_ct(ctx, node, vmid)
                g = ctx.backend.status(node, vmid)
            run_step(ctx, g, target, "commit" if done else "back")
    before = dict(step.data.get("before") or {})
    if not done and before and config.get("description") != before.get("description"):
        before["tags"] = tag_list(set(str(before.get("tags", "")).split(";")) - {TAG_STARTED, ""})
        ctx.backend.set_options(node, vmid, before)
    record = ctx.cache.get(step.id, ctx.cluster)
    now = marker.parse(config.get("description")) if done else None
    if record is not None and now is not None:   # what the cache knows: the image the config now says
        record.bundle, record.rootfs, record.template = now.bundle, now.rootfs, now.template
        record.annotations, record.stop_signal = now.annotations, now.stop_signal
        ctx.cache.put(record)
    was = str(step.data.get("was") or "")
    log.warning("the image update of %s was interrupted; it is %s", step.id, "finished" if done else "undone")
    # Undone before 9.1, the old tree's init keeps the spec it was given at its create (in the old tree).
    spec = base64.b64decode(str(step.data.get("spec") or "")) if done else b""
    restart(ctx, step.id, g, ("running" if was == "stopped" else was) if done else was, spec)
    ctx.cache.finish(step.op)
