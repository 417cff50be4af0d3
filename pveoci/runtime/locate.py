"""Finding a container by its OCI id: the cache's guess confirmed by one status call, else one cluster scan.

A container is pveoci's when it carries the ownership marker (pveoci.marker); the tag derived
from its id finds it in /cluster/resources, the marker in its description confirms it. One with the
tag whose marker is missing or cannot be read is reported (MarkerUnreadable), never passed over as
someone else's: `state` would say "does not exist" and `delete -f` succeed while it stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pveoci import errors, marker
from pveoci.cache import Record
from pveoci.models import Guest, State, Status
from pveoci.retry import Backoff, poll
from pveoci.runtime.context import Context
from pveoci.runtime.ids import TAG_PAUSED, TAG_STARTED, TAG_TICKET, check_id, id_tag

if TYPE_CHECKING:
    from pveoci.card import Card

UNLOCK_WAIT = 30.0
_UNLOCK_POLL = Backoff(first=0.05, factor=2.0, cap=1.0)
#: Markers from this version on: the container runs pveoci's init, which waits for `start` (docs/init.md).
INIT_MARKER = 2


def oci_status(guest: Guest, version: int = INIT_MARKER) -> Status:
    """The OCI status of a container from what the cluster says of it (and which pveoci made it).

    With pveoci's init: created = the CT runs and the init waits (no pveoci-started tag); running = the
    process was started; stopped = the CT stopped (the process ended, or was killed while created).
    Made by pveoci 0.1: created = a stopped CT never started.
    """
    if guest.lock == "create":
        return "creating"
    if guest.status == "unknown":
        return "unknown"
    started = TAG_STARTED in guest.tags
    if guest.status == "running":
        if TAG_PAUSED in guest.tags:
            return "paused"
        return "running" if started or version < INIT_MARKER else "created"
    return "created" if version < INIT_MARKER and not started else "stopped"


@dataclass(frozen=True)
class Located:
    guest: Guest
    record: Record

    @property
    def status(self) -> Status:
        return oci_status(self.guest, self.record.marker_version)

    @property
    def with_init(self) -> bool:
        """Made with pveoci's init (not by 0.1, whose process was in the template)."""
        return self.record.marker_version >= INIT_MARKER


def ticket(guest: Guest) -> int:
    """The claim ticket a create took when it raced others for the same id (runtime.claim); 1 if none."""
    for tag in guest.tags:
        if tag.startswith(TAG_TICKET) and tag[len(TAG_TICKET):].isdigit():
            return int(tag[len(TAG_TICKET):])
    return 1


def contenders(guests: list[Guest], cid: str) -> list[Guest]:
    """The containers that carry this id's tag, the rightful one first."""
    tag = id_tag(cid)
    return sorted((g for g in guests if tag in g.tags), key=lambda g: (g.lock == "create", ticket(g), g.vmid))


def adopt(ctx: Context, guest: Guest, cid: str | None = None) -> Record | None:
    """Read the marker of a container that carries pveoci's tags and mirror it into the cache (None: its marker
    names another id). MarkerUnreadable when it has no marker, or one that cannot be read."""
    config = ctx.backend.config(guest.node, guest.vmid)
    return record_from_marker(ctx, guest, read_marker(guest, config, cid), cid)


def read_marker(guest: Guest, config: dict[str, Any], cid: str | None = None) -> marker.Marker:
    """The marker in the config of a container that carries pveoci's tags (`cid`: the id it is looked up by).

    Its tags say it is pveoci's: a marker missing or broken is reported (MarkerUnreadable, naming the CT and
    what to do), never taken to mean the container is someone else's (docs/state.md, "An unreadable marker").
    """
    try:
        found = marker.parse(config.get("description"))
    except errors.MarkerUnreadable as exc:
        raise unreadable(guest, exc.reason, cid) from None
    if found is None:
        raise unreadable(guest, "its notes hold no pveoci block", cid)
    return found


def unreadable(guest: Guest, reason: str, cid: str | None = None) -> errors.MarkerUnreadable:
    who = f"container {cid} (CT {guest.vmid} on {guest.node})" if cid else f"CT {guest.vmid} on {guest.node}"
    return errors.MarkerUnreadable(
        f"{who} carries pveoci's tags but its ownership marker cannot be read ({reason}); pveoci leaves it as it "
        "is: restore the marker in its notes, or remove the container or its pveoci tags in Proxmox",
        reason=reason, node=guest.node, vmid=guest.vmid)


def record_from_marker(ctx: Context, guest: Guest, found: marker.Marker | Card, cid: str | None) -> Record | None:
    """The cache's record of a marker just read, or of the card that repeats it (None: it names another id than
    `cid`)."""
    if cid is not None and found.id != cid:
        return None
    record = Record(id=found.id, cluster=ctx.cluster, node=guest.node, vmid=guest.vmid, bundle=found.bundle,
                    rootfs=found.rootfs, template=found.template, created=found.created,
                    status=oci_status(guest, found.version), annotations=dict(found.annotations),
                    stop_signal=found.stop_signal, marker_version=found.version)
    ctx.cache.put(record)
    return record


def locate(ctx: Context, cid: str, guests: list[Guest] | None = None) -> Located | None:
    """The container with this OCI id, or None; NodeOffline when it is on a node that cannot be asked.

    `guests`: the cluster's containers, as just read by the caller (by default asked here when the cache's record
    does not lead to the container)."""
    record = ctx.cache.get(cid, ctx.cluster)
    tag = id_tag(cid)
    if record is not None:
        try:
            guest = ctx.backend.status(record.node, record.vmid)
            if tag in guest.tags:
                return Located(guest, record)
        except errors.NotFound:
            pass  # gone, or migrated: the cluster scan below says which
    for guest in contenders(ctx.backend.guests() if guests is None else guests, cid):
        if guest.status == "unknown":
            raise errors.NodeOffline(f"node '{guest.node}' of container {cid} is offline", node=guest.node)
        try:
            found = adopt(ctx, guest, cid)
        except errors.NotFound:
            continue  # deleted meanwhile
        if found is not None:
            return Located(ctx.backend.status(guest.node, guest.vmid), found)
    if record is not None:
        ctx.cache.drop(cid, ctx.cluster)  # its container is gone
    return None


def settled(ctx: Context, node: str, vmid: int) -> Guest:
    """A container just made, once its `lock: create` has cleared (it may linger a moment after vzcreate)."""
    return poll(lambda: _unlocked(ctx.backend.status(node, vmid)), timeout=UNLOCK_WAIT,
                what=f"CT {vmid} on {node} is locked (create)", backoff=_UNLOCK_POLL)


def _unlocked(guest: Guest) -> Guest | None:
    return None if guest.lock == "create" else guest


def require(ctx: Context, cid: str) -> Located:
    """The container with this id; runc's "container does not exist" if there is none."""
    check_id(cid)
    found = locate(ctx, cid)
    if found is None:
        raise errors.NotFound("container does not exist")
    return found


def to_state(ctx: Context, found: Located, *, cached: bool = False) -> State:
    """The OCI state of a located container; the cache learns what changed."""
    g, r = found.guest, found.record
    status: Status = r.status if cached else found.status  # type: ignore[assignment]  # a Status when stored
    pid = (g.pid or 0) if status in ("created", "running", "paused") else 0
    if not cached and (r.status != status or r.pid != pid or r.node != g.node):
        r.status, r.pid, r.node = status, pid, g.node
        ctx.cache.put(r)
    state = State(id=r.id, status=status, pid=pid, bundle=r.bundle, rootfs=r.rootfs, created=r.created,
                  annotations=r.annotations, cluster=ctx.cluster, node=g.node, vmid=g.vmid, template=r.template,
                  cached=cached)
    if status in ("created", "running", "paused"):
        # The stand-in this machine left stands for the process here (runc: the init's pid, in the caller's
        # namespace); the init's pid on its node stays in the state's "pveoci" part.
        from pveoci.standin import standing_pid

        local = standing_pid(ctx.cache, ctx.cluster, r.id)
        if local is not None:
            state.node_pid, state.pid = pid, local
    return state
