"""OCI container ids (runc's rules) and the tags that carry them, and pveoci's state, on the cluster."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

from pveoci import errors

ID_RE = re.compile(r"[A-Za-z0-9_+.-]+")  # whole ids only: "$" would let a final newline through
ID_MAX = 1024
TAG_STARTED = "pveoci-started"
TAG_PAUSED = "pveoci-paused"
TAG_TICKET = "pveoci-ticket-"     # + a number: the order of creates that raced for one id (runtime.claim)
TAG_MOVING = "pveoci-moving"      # a started container on its way to another node: its process to start there


def check_id(cid: str) -> None:
    """runc's id rules, with runc's words for a bad one."""
    if not cid:
        raise errors.InvalidParameter("container id cannot be empty")
    if len(cid) > ID_MAX or not ID_RE.fullmatch(cid) or cid in (".", ".."):
        raise errors.InvalidParameter("invalid container ID format")


def id_tag(cid: str) -> str:
    """The short, tag-safe handle of an OCI id: ids may be long and have upper case, tags may not."""
    return "pveoci-id-" + hashlib.sha256(cid.encode()).hexdigest()[:12]


def rfc3339_now() -> str:
    """Now, as runc writes `created`: RFC 3339 in UTC with nanoseconds."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond * 1000:09d}Z"
