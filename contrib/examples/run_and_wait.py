#!/usr/bin/env python3
"""Run a bundle on the cluster, wait until its process ends, report, and clean up.

    python run_and_wait.py ./bundles/job job42 [--profile lab] [--node pve2] [--timeout 600] [--keep]

Prints the final state as JSON, with the process's exit status under "exit_status"; exits with that
status (as `pveoci run` in the foreground does), or with pveoci's error code when something else failed.
"""

from __future__ import annotations

import argparse
import json
import sys

import pveoci


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("id")
    parser.add_argument("--profile")
    parser.add_argument("--node")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="do not delete the container afterwards")
    args = parser.parse_args()

    try:
        with pveoci.connect(args.profile) as rt:
            started = rt.run(args.id, args.bundle, node=args.node)
            print(f"{started.id} runs on {started.node} as CT {started.vmid}", file=sys.stderr)
            status = rt.wait(args.id, timeout=args.timeout)
            final = rt.state(args.id).to_json()
            print(json.dumps({**final, "exit_status": status}, indent=2))
            if not args.keep:
                rt.delete(args.id, force=True)
    except pveoci.OperationTimeout as exc:
        print(f"run_and_wait: {exc}; the container keeps running", file=sys.stderr)
        return 1
    except pveoci.PveociError as exc:
        print(f"run_and_wait: {exc}", file=sys.stderr)
        return exc.exit_code
    return status


if __name__ == "__main__":
    sys.exit(main())
