"""A path looked up in an image's tree as the container would resolve it: what layers.Merged and nodetree.NodeTree
share. Symlinks are followed inside the tree (an absolute target starts at the root again, ".." stops there),
40 hops at most."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

N = TypeVar("N")
MAX_HOPS = 40


def walk(root: N, parts: Iterable[str], follow_last: bool, children: Callable[[N], Mapping[str, N] | None],
         link: Callable[[N], str | None]) -> tuple[list[str], N] | None:
    """The node at parts and its real path; the last symlink is followed only with follow_last. `children`: a
    directory's entries (None for any other node); `link`: a symlink's target (None for any other node). None when
    absent, under a non-directory, or more than MAX_HOPS symlinks deep."""
    pending = list(parts)[::-1]
    names: list[str] = []
    nodes = [root]
    hops = 0
    while pending:
        name = pending.pop()
        if name == ".." and names:
            names.pop()
            nodes.pop()
        if name in ("", ".", ".."):
            continue
        entries = children(nodes[-1])
        node = None if entries is None else entries.get(name)
        if node is None:
            return None
        target = link(node)
        if target is not None and (pending or follow_last):
            hops += 1
            if hops > MAX_HOPS:
                return None
            if target.startswith("/"):
                names, nodes = [], [root]
            pending.extend(reversed(target.split("/")))
            continue
        names.append(name)
        nodes.append(node)
    return names, nodes[-1]
