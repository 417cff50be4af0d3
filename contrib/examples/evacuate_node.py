#!/usr/bin/env python3
"""Move every pveoci container off a node (before maintenance): each to the online node with most free memory.

    python evacuate_node.py pve1 [--profile lab] [--to pve2] [--dry-run]

Running containers restart on their new node; stopped ones move as they are. One JSON line per
container: {"id", "from", "to", "status"}. Exits 1 if any move failed (the others are done).
"""

from __future__ import annotations

import argparse
import json
import sys

import pveoci


def target_for(nodes: list[pveoci.Node], leaving: str, wanted: str | None) -> str:
    if wanted:
        return wanted
    others = [n for n in nodes if n.online and n.name != leaving]
    if not others:
        raise pveoci.NodeOffline(f"no other online node to move to from {leaving}")
    return max(others, key=lambda n: n.mem_free).name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node")
    parser.add_argument("--profile")
    parser.add_argument("--to", help="the node to move to (default: the online node with most free memory)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    failed = 0
    try:
        with pveoci.connect(args.profile) as rt:
            for c in [c for c in rt.list() if c.node == args.node]:
                to = target_for(rt.nodes(), args.node, args.to)
                line = {"id": c.id, "from": c.node, "to": to, "status": "would move" if args.dry_run else "moved"}
                if not args.dry_run:
                    try:
                        line["status"] = rt.migrate(c.id, to).status
                    except pveoci.PveociError as exc:
                        line["status"], line["error"] = "failed", exc.message
                        failed += 1
                print(json.dumps(line), flush=True)
    except pveoci.PveociError as exc:
        print(f"evacuate_node: {exc}", file=sys.stderr)
        return exc.exit_code
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
