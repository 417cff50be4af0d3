#!/usr/bin/env python3
"""Move every pveoci container that carries an annotation to one node (or each where placement puts it).

    python move_annotated.py team=blue --to pve3 [--profile lab] [--dry-run]

The annotation is KEY=VALUE (or KEY alone for any value). Every move's preflight runs first: if one of them
is refused, nothing moves and the script exits 1. With --to auto, the dry run says where each would go now;
the moves themselves place each in turn, seeing the earlier ones. One JSON line per container ({"id",
"from", "to", "mode", "result", "status", "error"}); containers already on the target are "unchanged".
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


def preflight(rt: pveoci.Runtime, ids: list[str], to: str) -> list[pveoci.Migration]:
    """Each container's dry run: what would happen, or why it would be refused."""
    out = []
    for cid in ids:
        try:
            out.append(rt.migrate(cid, to, dry_run=True))
        except (pveoci.MoveRefused, pveoci.NodeOffline, pveoci.NoSuitableNode) as exc:
            state = rt.state(cid)
            out.append(pveoci.Migration(cid, state.vmid, state.node, to, "none", "refused", error=exc.message))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotation", help="KEY=VALUE or KEY")
    parser.add_argument("--to", default="auto", help="the node (default: where placement puts each)")
    parser.add_argument("--profile")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    key, sep, value = args.annotation.partition("=")
    try:
        with pveoci.connect(args.profile) as rt:
            ids = [c.id for c in rt.list(annotations={key: value if sep else None})]
            plans = preflight(rt, ids, args.to)
            if args.dry_run or not all(p.ok for p in plans):
                for plan in plans:
                    show(plan)
                return 0 if all(p.ok for p in plans) else 1
            for plan in plans:  # auto decides again for each: earlier moves count
                show(rt.migrate(plan.id, args.to) if plan.result == "would move" else plan)
    except pveoci.PveociError as exc:
        print(f"move_annotated: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
