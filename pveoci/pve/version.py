"""Proxmox VE versions as numbers, for what depends on them (9.1 added the entrypoint and env options)."""

from __future__ import annotations

import re

from pveoci import errors


def parse_version(text: str) -> tuple[int, int]:
    found = re.match(r"^(\d+)\.(\d+)", str(text))
    if not found:
        raise errors.ApiError(f"cannot read the Proxmox VE version '{text}'")
    return int(found.group(1)), int(found.group(2))
