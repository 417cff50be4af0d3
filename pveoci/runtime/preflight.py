"""Before a container moves, everything that could stop it, asked of the cluster while nothing has changed yet:
the target node (in the cluster, online, not in maintenance, not excluded), Proxmox's own precondition (the
nodes it allows, HA rules), the HA state, the container's lock and mode, local mounts and devices, the
storages its volumes and templates need there, and the memory the target has left.

Each finding is a `Check` (pass, warn, fail); any fail refuses the move (MoveRefused, with the checks).
Proxmox's precondition lists offline nodes as allowed: the target's own status is asked first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pveoci import errors
from pveoci.models import Check, Destination, MoveMode, Node
from pveoci.runtime.context import Context
from pveoci.runtime.locate import Located
from pveoci.runtime.placement import size, storage

HA_BUSY = frozenset({"error", "fence", "recovery", "freeze"})    # HA is dealing with it: hands off
HA_MOVING = frozenset({"migrate", "relocate"})                   # HA is moving it already
_MOUNT = re.compile(r"^mp\d+$")
_DEVICE = re.compile(r"^dev\d+$")


def volume(value: object) -> tuple[str, int]:
    """A mount's (volume, size in bytes): `local-lvm:vm-100-disk-0,size=4G` -> ("local-lvm:vm-100-disk-0", 4 GiB)."""
    parts = str(value or "").split(",")
    first = parts[0] if "=" not in parts[0] else ""
    options = dict(p.split("=", 1) for p in parts if "=" in p)
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", options.get("size", ""))
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return options.get("volume", first), int(float(found.group(1)) * scale[found.group(2)]) if found else 0


def mode(found: Located) -> MoveMode:
    """How Proxmox will move it: through HA, in restart mode (running), or offline (stopped)."""
    if found.guest.ha_state:
        return "ha"
    return "restart" if found.guest.status == "running" else "offline"


def target_node(ctx: Context, cid: str, target: str) -> Node:
    """The target as the cluster reports it: NotFound if it is no node of it, NodeOffline if offline."""
    nodes = ctx.backend.nodes()
    node = next((n for n in nodes if n.name == target), None)
    if node is None:
        raise errors.NotFound(f"node '{target}' is not in the cluster (nodes: {', '.join(n.name for n in nodes)})")
    if not node.online:
        raise errors.NodeOffline(f"node '{target}' is offline: {cid} stays where it is", node=target)
    return node


def _target(node: Node, exclude: Iterable[str]) -> Check:
    if node.maintenance:
        return Check("target", "fail", f"{node.name} is in maintenance")
    if node.name in set(exclude):
        return Check("target", "fail", f"{node.name} is excluded")
    return Check("target", "pass", f"{node.name} is online")


def _container(found: Located, restart: bool) -> Check:
    g = found.guest
    if g.lock and g.lock != "migrate":
        return Check("container", "fail", f"CT {g.vmid} is locked ({g.lock})")
    if g.status == "running" and not restart and not g.ha_state:
        return Check("container", "fail", f"CT {g.vmid} runs: containers move only in restart mode")
    if g.status == "running":
        return Check("container", "pass", f"CT {g.vmid} runs: it stops on {g.node} and starts again there")
    return Check("container", "pass", f"CT {g.vmid} is stopped: it moves as it is")


def _proxmox(ctx: Context, found: Located, target: str) -> list[Check]:
    g = found.guest
    said = ctx.backend.migrate_check(g.node, g.vmid, target)
    blocked = dict(said.blocked)
    if target in blocked:
        out = [Check("proxmox", "fail", f"Proxmox does not allow {target}: {blocked[target]}")]
    elif target not in said.allowed:
        out = [Check("proxmox", "fail", f"Proxmox does not allow {target} (allowed: "
                                        f"{', '.join(said.allowed) or 'none'})")]
    else:
        out = [Check("proxmox", "pass", f"Proxmox allows {target}")]
    if said.dependent:
        out.append(Check("ha", "warn", f"HA moves these along: {', '.join(said.dependent)}"))
    return out


def _ha(found: Located) -> Check:
    state = found.guest.ha_state
    if state is None:
        return Check("ha", "pass", "not HA-managed")
    if state in HA_BUSY:
        return Check("ha", "fail", f"HA resource ct:{found.guest.vmid} is in state {state}: HA deals with it")
    return Check("ha", "pass", f"HA-managed ({state}): the move is requested through HA")


def _local(config: dict[str, Any]) -> list[Check]:
    """Bind mounts and devices are the node's own: they do not move with the container."""
    out = []
    for key in sorted(config):
        if _MOUNT.match(key):
            where, _ = volume(config[key])
            shared = "shared=1" in str(config[key]).split(",")
            if where.startswith("/") and not shared:
                out.append(Check(f"mount {key}", "fail", f"{key} binds {where} of this node (mark it shared=1 "
                                                         "if every node has it)"))
        elif _DEVICE.match(key):
            where = volume(config[key])[0] or str(config[key]).split(",")[0]
            out.append(Check(f"device {key}", "warn", f"{key} passes {where} through: the target must have it"))
    return out


def _storages(ctx: Context, config: dict[str, Any], node: Node) -> list[Check]:
    out = []
    volumes = {volume(config[k])[0].split(":", 1)[0] for k in config if k == "rootfs" or _MOUNT.match(k)}
    for name in sorted(v for v in volumes if v and not v.startswith("/")):
        if storage(node, name, "rootdir") is None:
            out.append(Check("storage", "fail", f"storage '{name}' of its volumes is not usable on {node.name}"))
        else:
            out.append(Check("storage", "pass", f"storage '{name}' is usable on {node.name}"))
    wanted = ctx.profile.template_storage
    if storage(node, wanted, "vztmpl") is None:
        out.append(Check("storage", "fail", f"template storage '{wanted}' is not usable on {node.name}"))
    return out


def _template(ctx: Context, found: Located, node: Node) -> Check:
    where = storage(node, ctx.profile.template_storage, "vztmpl")
    name = found.record.template.split("/", 1)[-1]
    if where is None or not name:
        return Check("template", "pass", "no template to look for")
    there = name in {t.name for t in ctx.backend.templates(Destination(node.name, where.name, where.shared))}
    return Check("template", "pass", f"{name} is on {node.name}" if there else
                 f"{name} is not on {node.name} (not needed: the root disk moves with the container)")


def _memory(found: Located, node: Node) -> Check:
    need = found.guest.maxmem
    if node.maxmem and need > node.mem_free:
        return Check("memory", "warn", f"{node.name} has {size(node.mem_free)} free, the container may use "
                                       f"{size(need)}")
    return Check("memory", "pass", f"{node.name} has {size(node.mem_free)} free")


def preflight(ctx: Context, cid: str, found: Located, target: str, *, restart: bool,
              exclude: Iterable[str] = ()) -> list[Check]:
    """Every check of moving this container to target; MoveRefused (with them) if one fails. Changes nothing."""
    node = target_node(ctx, cid, target)
    g = found.guest
    checks = [_target(node, exclude), _container(found, restart), _ha(found)]
    if checks[1].status != "fail":  # Proxmox's precondition refuses a locked container outright
        checks += _proxmox(ctx, found, target)
    config = ctx.backend.config(g.node, g.vmid)
    checks += _local(config) + _storages(ctx, config, node)
    checks += [_template(ctx, found, node), _memory(found, node)]
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise errors.MoveRefused(f"cannot move {cid} to {target}: " + "; ".join(c.detail for c in failed),
                                 checks=checks)
    return checks
