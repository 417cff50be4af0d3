"""How Proxmox VE words its errors, and which of pveoci's typed errors each wording is.

The same Perl code answers the HTTP API, `pvesh` and `pct`, so one message reads the same on every
path; this module types it once for all of them (pve.translate for the API, backends.pvesh for the
command-line tools). Pure: no network, no library beyond the standard one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pveoci import errors

PERMISSION = re.compile(r"Permission check failed \(([^,]+), ([^)]+)\)")
NOT_FOUND = ("does not exist", "no such", "not found")
EXISTS = ("already exists", "File exists")
LOCKED = ("is locked", "can't lock file", "got timeout")


def oneline(text: object) -> str:
    return " ".join(str(text).split())


def param_errors(errs: Mapping[str, Any]) -> str:
    return "; ".join(f"{oneline(str(key))}: {oneline(str(val))}" for key, val in sorted(errs.items()))


def invalid_parameter(errs: Mapping[str, Any]) -> errors.InvalidParameter:
    """400 Parameter verification failed, with PVE's message per parameter."""
    return errors.InvalidParameter(f"Proxmox rejected the request: {param_errors(errs)}",
                                   errors={str(k): oneline(str(v)) for k, v in errs.items()})


def permission_denied(reason: str, identity: str, where: str) -> errors.PermissionDenied:
    found = PERMISSION.search(reason)
    if found:
        path, privilege = found.group(1), found.group(2)
        return errors.PermissionDenied(f"permission denied: {identity} lacks {privilege} on {path}", path=path,
                                       privilege=privilege)
    return errors.PermissionDenied(f"permission denied for {identity} on {where}: {reason}")


def by_reason(reason: str) -> errors.PveociError | None:
    """The typed error a reason names (no quorum, a lock, something that exists or not); None for any other."""
    if "no quorum" in reason:
        return errors.NoQuorum(f"the cluster has no quorum: nothing can be changed until it is back ({reason})")
    if any(word in reason for word in LOCKED):
        return errors.Locked(reason)
    if any(word in reason for word in EXISTS):
        return errors.AlreadyExists(reason)
    if any(word in reason.lower() for word in NOT_FOUND):
        return errors.NotFound(reason)
    return None
