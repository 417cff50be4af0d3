#!/usr/bin/env python3
"""List pveoci's containers as JSON, and stop every running one that carries an annotation.

    python stop_annotated.py team=blue [--profile lab] [--signal TERM] [--dry-run]

The annotation is KEY=VALUE (or KEY alone for any value). Prints {"containers": [...], "stopped": [...]}.
"""

from __future__ import annotations

import argparse
import json
import sys

import pveoci


def matches(state: pveoci.State, key: str, value: str | None) -> bool:
    return key in state.annotations and (value is None or state.annotations[key] == value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotation", help="KEY=VALUE or KEY")
    parser.add_argument("--profile")
    parser.add_argument("--signal", default="TERM")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    key, sep, value = args.annotation.partition("=")

    try:
        with pveoci.connect(args.profile) as rt:
            containers = rt.list()
            chosen = [c for c in containers if c.status in ("running", "paused")
                      and matches(c, key, value if sep else None)]
            for c in chosen:
                if not args.dry_run:
                    rt.kill(c.id, "KILL" if c.status == "paused" else args.signal)
    except pveoci.PveociError as exc:
        print(f"stop_annotated: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps({"containers": [c.to_json() for c in containers], "stopped": [c.id for c in chosen],
                      "dry_run": args.dry_run}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
