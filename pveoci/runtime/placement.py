"""Which node a container goes to: the one asked for, or the best of the nodes that can take it, and why.

A node is rejected when it is offline, in HA maintenance, excluded, lacks the root-disk or the
template storage, or has too little memory or disk for the container. The others score up to 100:

    memory   40  memory free after the container's, as a share of the largest node's
    spread   25  fewer pveoci containers: 25 * (1 - n / (most + 1)), creates on their way counted
    cpu      15  idle cores, as a share of the most cores a node has
    storage  10  root-disk room left, as a share of the roomiest node's
    template 10  the container's template is there already (or on its way): nothing to upload

and lose 30 for each container of the container's spread group already there (annotation
`pveoci.spread-group`: a soft anti-affinity). A node's memory counts as used by the larger of what it
reports and what its running containers (and the creates on their way) may use, so containers that idle
still hold their share, and creates that cannot be seen yet in the cluster's figures count at once.

Nodes within TIE points of the best are equals; a hash of the container's id picks among them, so one
container gets the same answer every time while different ones spread over equal nodes, even from
workstations that cannot see each other's creates in flight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pveoci import errors
from pveoci.models import Node, NodeScore, Placement, Storage

SPREAD_GROUP = "pveoci.spread-group"
WEIGHTS = {"memory": 40.0, "spread": 25.0, "cpu": 15.0, "storage": 10.0, "template": 10.0}
GROUP_PENALTY = 30.0
TIE = 0.5


@dataclass(frozen=True)
class Ask:
    """What a container needs of a node."""

    memory: int = 0                      # bytes
    disk: int = 0                        # bytes of root disk on rootfs_storage
    rootfs_storage: str = "local-lvm"
    template_storage: str = "local"
    group: str | None = None             # its spread group
    exclude: frozenset[str] = frozenset()


@dataclass
class NodeLoad:
    """What placement knows of one node: the node, and what pveoci counts on it."""

    node: Node
    containers: int = 0                  # pveoci containers there, creates on their way included
    committed: int = 0                   # bytes its running containers (and creates on their way) may use
    disk_pending: int = 0                # bytes of root disks on their way (not yet in the storage's figures)
    group: int = 0                       # containers of the ask's spread group there
    template: bool = False               # the ask's template is there, or on its way
    problems: list[str] = field(default_factory=list)   # reasons found while surveying (an unsupported machine)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def mem_free(self) -> int:
        """Memory left once the larger of what the node uses and what its containers may use is taken."""
        n = self.node
        return n.maxmem - max(n.mem, self.committed)


def choose_node(nodes: list[Node], wanted: str) -> str:
    """`wanted` if it is an online node of the cluster (NotFound, NodeOffline otherwise)."""
    found = next((n for n in nodes if n.name == wanted), None)
    if found is None:
        raise errors.NotFound(f"node '{wanted}' is not in the cluster "
                              f"(nodes: {', '.join(n.name for n in nodes) or 'none'})")
    if not found.online:
        raise errors.NodeOffline(f"node '{wanted}' is offline", node=wanted)
    return wanted


def storage(node: Node, name: str, content: str) -> Storage | None:
    """The node's storage of that name if it is active and takes that content (rootdir, vztmpl)."""
    return next((s for s in node.usable(content) if s.name == name), None)


def size(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def rejection(load: NodeLoad, ask: Ask) -> str | None:
    """Why this node cannot take the container, or None."""
    n = load.node
    if not n.online:
        return f"offline ({n.problem})" if n.problem else "offline"
    if n.maintenance:
        return "in maintenance"
    if n.name in ask.exclude:
        return "excluded"
    if load.problems:
        return "; ".join(load.problems)
    root = storage(n, ask.rootfs_storage, "rootdir")
    if root is None:
        return f"no usable root-disk storage '{ask.rootfs_storage}' (content rootdir, active)"
    if storage(n, ask.template_storage, "vztmpl") is None:
        return f"no usable template storage '{ask.template_storage}' (content vztmpl, active)"
    if n.maxmem and ask.memory > n.mem_free:
        return f"too little memory: {size(n.mem_free)} free, it needs {size(ask.memory)}"
    if root.avail and ask.disk > root.avail - load.disk_pending:
        return f"too little room on {root.name}: {size(root.avail - load.disk_pending)}, it needs {size(ask.disk)}"
    return None


@dataclass(frozen=True)
class _Scale:
    """The largest figures among the nodes that can take it: what each node's share is taken of."""

    memory: int
    cores: int
    room: int
    most: int

    @classmethod
    def of(cls, loads: list[NodeLoad], ask: Ask) -> _Scale:
        return cls(memory=max((ld.node.maxmem for ld in loads), default=0),
                   cores=max((ld.node.maxcpu for ld in loads), default=0),
                   room=max((_room(ld, ask) for ld in loads), default=0),
                   most=max((ld.containers for ld in loads), default=0))


def _room(load: NodeLoad, ask: Ask) -> int:
    root = storage(load.node, ask.rootfs_storage, "rootdir")
    return max((root.avail if root else 0) - load.disk_pending - ask.disk, 0)


def _share(part: float, whole: float) -> float:
    return max(part, 0.0) / whole if whole > 0 else 0.0


def _scored(load: NodeLoad, ask: Ask, scale: _Scale) -> NodeScore:
    n = load.node
    free = load.mem_free - ask.memory
    idle = n.maxcpu * (1.0 - min(max(n.cpu, 0.0), 1.0))
    room = _room(load, ask)
    parts = {
        "memory": WEIGHTS["memory"] * _share(free, scale.memory),
        "spread": WEIGHTS["spread"] * (1.0 - load.containers / (scale.most + 1)),
        "cpu": WEIGHTS["cpu"] * _share(idle, scale.cores),
        "storage": WEIGHTS["storage"] * _share(room, scale.room),
        "template": WEIGHTS["template"] if load.template else 0.0,
    }
    notes = [f"{size(max(free, 0))} memory free after its {size(ask.memory)}", f"{idle:.1f} of {n.maxcpu} cores idle",
             f"{size(room)} left on {ask.rootfs_storage}", f"{load.containers} pveoci container(s)",
             "template there" if load.template else "template not there"]
    if ask.group:
        parts["group"] = -GROUP_PENALTY * load.group
        notes.append(f"{load.group} of spread group {ask.group}")
    return NodeScore(node=n.name, score=sum(parts.values()), parts=parts, notes=tuple(notes))


def score(loads: list[NodeLoad], ask: Ask) -> list[NodeScore]:
    """Every node's score for the container, best first; rejected nodes last (score None, the reason)."""
    rejected = [(ld, why) for ld in loads if (why := rejection(ld, ask)) is not None]
    fit = [ld for ld in loads if all(ld is not r for r, _ in rejected)]
    scale = _Scale.of(fit, ask)
    scored = sorted((_scored(ld, ask, scale) for ld in fit), key=lambda s: (-(s.score or 0.0), s.node))
    return scored + sorted((NodeScore(node=ld.name, score=None, notes=(why,)) for ld, why in rejected),
                           key=lambda s: s.node)


def _tie_key(seed: str, node: str) -> str:
    return hashlib.sha256(f"{seed}\0{node}".encode()).hexdigest()


def pick(scores: list[NodeScore], seed: str) -> Placement:
    """The best node; among those within TIE of it, the one the seed (the container's id) hashes first."""
    fit = [s for s in scores if s.score is not None]
    if not fit:
        why = "; ".join(f"{s.node}: {s.notes[0]}" for s in scores) or "the cluster has no nodes"
        raise errors.NoSuitableNode(f"no node can take it ({why})", placement=Placement(node="", scores=tuple(scores)))
    best = max(s.score or 0.0 for s in fit)
    chosen = min((s for s in fit if (s.score or 0.0) >= best - TIE), key=lambda s: _tie_key(seed, s.node))
    ordered = [chosen, *(s for s in scores if s is not chosen)]
    return Placement(node=chosen.node, scores=tuple(ordered))
