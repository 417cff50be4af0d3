#!/usr/bin/env bash
# Set up (contrib/setup.sh), then run the main job on the embedded local test bed:
# a simulated two-node Proxmox VE cluster on this machine. Needs root (sshd, namespaces, LXC).
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/setup.sh
exec .venv/bin/python -m tests.testbed demo "$@"
