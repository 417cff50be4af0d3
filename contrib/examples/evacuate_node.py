#!/usr/bin/env python3
"""Move every pveoci container off a node before its maintenance: `Runtime.drain`, each where placement puts it.

    python evacuate_node.py pve1 [--profile lab] [--to pve2] [--parallel 2] [--dry-run]

A dry run comes first: if any container could not go (its preflight fails: a local mount, an HA rule, no
node with room), nothing moves and the script exits 1. Then running containers restart on their new node
and stopped ones move as they are. One JSON line per container ({"id", "from", "to", "mode", "result",
"status", ...}, as `pveoci drain -o json`). Exits 1 if any move failed (the others are done); run it again
to finish an interrupted evacuation.
"""

from __future__ import annotations

import argparse
import json
import sys

import pveoci


def show(move: pveoci.Migration) -> None:
    line = move.to_json()
    del line["checks"]
    print(json.dumps(line), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node")
    parser.add_argument("--profile")
    parser.add_argument("--to", default="auto", help="the node to move to (default: where placement puts each)")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    try:
        with pveoci.connect(args.profile) as rt:
            plan = rt.drain(args.node, to=args.to, dry_run=True)
            if args.dry_run or not plan.ok:
                for move in plan.moves:
                    show(move)
                return 0 if plan.ok else 1
            report = rt.drain(args.node, to=args.to, parallel=args.parallel, on_move=show)
    except pveoci.PveociError as exc:
        print(f"evacuate_node: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
