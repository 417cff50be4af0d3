#!/usr/bin/env bash
# Set up (contrib/setup.sh), then lint, type-check and run the tests against the local test bed.
# The bed needs root; as root every test-bed part is required, so nothing is skipped for lack of one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/setup.sh
if [ "$(id -u)" -eq 0 ]; then export PVEOCI_REQUIRE_BED=${PVEOCI_REQUIRE_BED:-1}; fi
.venv/bin/ruff check pveoci tests bench
.venv/bin/mypy --strict pveoci
exec .venv/bin/python -m pytest -q --durations=30 "$@"
