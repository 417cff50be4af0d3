#!/usr/bin/env python3
"""Recreate every pveoci container of one profile's cluster on another profile's cluster, from its bundle.

    python recreate_on_cluster.py --from lab --to prod [--annotation team=blue] [--dry-run] [--keep-source]

A dry run always comes first: for each container, its bundle must still be on this machine, its id free
on the other cluster, and a node there able to take it (placement). If any is not, nothing is changed and
the script exits 1. Then each is created there (and started if it was running), and, unless --keep-source,
deleted where it was once the new one is up. One JSON line per container: {"id", "from", "to", "result",
"status", "error"}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pveoci


def report(c: pveoci.State, result: str) -> dict[str, object]:
    return {"id": c.id, "from": f"{c.cluster}:{c.node}", "to": None, "result": result, "status": c.status,
            "error": None}


def check(dst: pveoci.Runtime, c: pveoci.State) -> dict[str, object]:
    """Where c would go on the other cluster, or why it cannot."""
    line = report(c, "would recreate")
    try:
        if not (Path(c.bundle) / "config.json").is_file():
            raise pveoci.BundleError(f"its bundle {c.bundle} is not on this machine")
        try:
            dst.state(c.id)
            raise pveoci.AlreadyExists(f"{c.id} exists on {dst.settings.profile.name} already")
        except pveoci.NotFound:
            pass
        line["to"] = f"{dst.settings.profile.name}:{dst.place(c.bundle, id=c.id).node}"
    except pveoci.PveociError as exc:
        line["result"], line["error"] = "refused", exc.message
    return line


def recreate(src: pveoci.Runtime, dst: pveoci.Runtime, c: pveoci.State, keep: bool) -> dict[str, object]:
    line = report(c, "failed")
    try:
        made = dst.run(c.id, c.bundle) if c.status in ("running", "paused") else dst.create(c.id, c.bundle)
        line.update(to=f"{made.cluster}:{made.node}", result="recreated", status=made.status)
        if not keep:
            src.delete(c.id, force=True)
    except pveoci.PveociError as exc:
        line["result"], line["error"] = "failed", exc.message
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True, help="the profile the containers are on")
    parser.add_argument("--to", dest="target", required=True, help="the profile to recreate them on")
    parser.add_argument("--config", help="the settings file (default: pveoci's)")
    parser.add_argument("--annotation", help="only those with this annotation, KEY=VALUE or KEY")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--keep-source", action="store_true", help="do not delete the originals")
    args = parser.parse_args()
    wanted = None
    if args.annotation:
        key, sep, value = args.annotation.partition("=")
        wanted = {key: value if sep else None}
    try:
        with pveoci.connect(args.source, config=args.config) as src, \
                pveoci.connect(args.target, config=args.config) as dst:
            containers = src.list(annotations=wanted)
            plan = [check(dst, c) for c in containers]
            if args.dry_run or any(line["result"] == "refused" for line in plan):
                for line in plan:
                    print(json.dumps(line), flush=True)
                return 1 if any(line["result"] == "refused" for line in plan) else 0
            failed = 0
            for c in containers:
                line = recreate(src, dst, c, args.keep_source)
                failed += line["result"] != "recreated"
                print(json.dumps(line), flush=True)
    except pveoci.PveociError as exc:
        print(f"recreate_on_cluster: {exc}", file=sys.stderr)
        return exc.exit_code
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
