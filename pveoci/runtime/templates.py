"""pveoci's templates on the cluster: list them with the containers made from them, remove one, remove the
unused ones, sweep what killed uploads left. (Getting one there: runtime/push.py.)

Shared storage holds one copy for every node; node-local storage one per node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pveoci import errors
from pveoci.models import Destination, State, Template
from pveoci.runtime import facts
from pveoci.runtime.context import Context
from pveoci.template.pack import NAME_PREFIX, SUFFIX


def is_pveoci_template(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith(SUFFIX)


# ------------------------------------------------------------------------ listing


def places(ctx: Context, node: str | None, storage: str | None) -> list[Destination]:
    """The template storage on every online node (or one) that has it, a shared storage once."""
    wanted = storage or ctx.profile.template_storage
    nodes = ctx.backend.nodes()
    if node and node not in {n.name for n in nodes}:
        raise errors.NotFound(f"node '{node}' is not in the cluster")
    out: list[Destination] = []
    seen_shared = False
    for info in nodes:
        if (node and info.name != node) or not info.online:
            continue
        usable = {s.name: s for s in info.usable("vztmpl")}
        if wanted not in usable:
            continue
        shared = usable[wanted].shared
        if shared and seen_shared:
            continue
        seen_shared = seen_shared or shared
        out.append(Destination(info.name, wanted, shared))
    return out


def listing(ctx: Context, node: str | None, storage: str | None) -> list[Template]:
    """pveoci's templates on every online node (or one), a shared storage listed once."""
    return [t for dest in places(ctx, node, storage) for t in ctx.backend.templates(dest)
            if is_pveoci_template(t.name)]


def sweep(ctx: Context, storage: str | None = None) -> list[str]:
    """Remove what killed pushes left (hidden partial files, claims of dead or quiet holders, finished claims whose
    waiters died) on every online node."""
    removed = []
    for place in places(ctx, None, storage):
        dest = ctx.backend.template_destination(place.node, place.storage)
        removed += [f"{dest.node}:{name}" for name in ctx.backend.sweep_templates(dest)]
    return removed


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
    dest = Destination(found.node, found.storage, found.shared)
    ctx.backend.remove_template(dest, found.name)
    facts.template_gone(ctx, dest, found.name)
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
