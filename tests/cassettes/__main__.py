"""Record pveoci's own cassettes (fixtures/cassettes/) against fresh test beds: one command, as root.

  sudo .venv/bin/python -m tests.cassettes               # every scenario
  sudo .venv/bin/python -m tests.cassettes lifecycle     # some of them

Nothing changed in pveoci or the bed: nothing changes in the files (`git diff fixtures/cassettes`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.cassettes.scenarios import BY_NAME, FIXTURES, SCENARIOS
from tests.testbed import parts


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cassettes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="SCENARIO",
                        help=f"scenarios to record (default: all of {', '.join(BY_NAME)})")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="where the cassettes go (default: %(default)s)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"no scenario {', '.join(unknown)} (scenarios: {', '.join(BY_NAME)})")
    wanted = [BY_NAME[n] for n in args.names] or list(SCENARIOS)
    missing = parts.missing_for_ssh() + parts.missing_for_busybox()
    if any(s.lxc for s in wanted):
        missing += parts.missing_for_lxc()
    if missing:
        sys.exit("recording needs the test bed: " + ", ".join(dict.fromkeys(missing)) + " (run contrib/setup.sh)")
    from tests.cassettes.recording import record

    for scenario in wanted:
        started = time.monotonic()
        path = record(scenario, args.out)
        print(f"{scenario.name}: {path} ({time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
