"""A Backend put together from parts, one per protocol of backends.base: the seam is written once.

A real backend is four parts, each given what it needs when it is made (a reader of the API's paths, a
runner, an SSH connector, a client): its reads (ClusterReads), its lifecycle (Lifecycle), what runs on
a node (OnNode) and its template storage (TemplateStorage). Each operation of a protocol is the part's
for that protocol, found by name from the protocols themselves, so an operation added to a protocol is
written in the protocol, in the parts that do it, and nowhere in between. The backend itself writes
only what is its own: `name`, `checks` and `close`.
"""

from __future__ import annotations

from typing import Any

from pveoci.backends.base import ClusterReads, Lifecycle, OnNode, TemplateStorage, operations

#: The part that serves each operation, by the protocol that declares it.
ROUTES: dict[str, str] = {name: part for part, protocol in (("reads", ClusterReads), ("lifecycle", Lifecycle),
                                                            ("node", OnNode), ("storage", TemplateStorage))
                          for name in operations(protocol)}


class Assembled:
    """The Backend protocol over four parts, set by the backend's constructor (each checked against its own
    protocol by the type checker where it is assigned)."""

    reads: ClusterReads
    lifecycle: Lifecycle
    node: OnNode
    storage: TemplateStorage

    def __getattr__(self, name: str) -> Any:
        """Only for what the class does not have itself: an operation of a protocol, from its part."""
        part = ROUTES.get(name)
        if part is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(getattr(self, part), name)
