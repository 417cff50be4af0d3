"""The ownership marker: how a container on the cluster says it is pveoci's, and which OCI container it is.

Every container pveoci makes carries the tag `pveoci` and, in its description (PVE's notes,
markdown), a line for people and a machine-readable block in an HTML comment, so any
workstation can find a container by its OCI id with an empty cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

TAG = "pveoci"
_BLOCK = re.compile(r"<!-- pveoci (\{.*?\}) -->", re.S)
HEADER = "Managed by pveoci (OCI container `{id}`). Edit it with pveoci, not here."
DESCRIPTION_MAX = 8192


@dataclass(frozen=True)
class Marker:
    id: str
    bundle: str
    template: str
    spec_digest: str
    created: str                   # RFC 3339
    host: str                      # the machine that created it
    annotations: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    # 1: made by pveoci 0.1 (the process in the template, `created` is a stopped CT); 2: pveoci's init
    # runs as PID 1 and waits for `start`, the process travels with the container (docs/init.md).
    version: int = 2
    rootfs: str = ""               # absolute path of the bundle's rootfs (state's `rootfs`)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def render(marker: Marker) -> str:
    """The description text: a sentence for people, the JSON block for machines (at most 8192 characters)."""
    data = json.dumps(marker.to_json(), sort_keys=True, separators=(",", ":"))
    text = HEADER.format(id=marker.id) + "\n\n<!-- pveoci " + data + " -->\n"
    if len(text) > DESCRIPTION_MAX:
        # Annotations are the only unbounded part; drop them rather than fail the create.
        slim = Marker(**{**marker.to_json(), "annotations": {"pveoci.truncated": "true"}})
        return render(slim)
    return text


def parse(description: str | None) -> Marker | None:
    """The marker in a description, or None for a container that is not (or no longer) pveoci's."""
    if not description:
        return None
    found = _BLOCK.search(description)
    if not found:
        return None
    try:
        data = json.loads(found.group(1))
        return Marker(**{k: v for k, v in data.items() if k in Marker.__dataclass_fields__})
    except (ValueError, TypeError):
        return None


def has_tag(tags: str | None) -> bool:
    return TAG in re.split(r"[;, ]+", tags or "")
