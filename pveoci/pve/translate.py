"""Turn what proxmoxer and requests raise into pveoci's typed errors, in words a user can act on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests

from pveoci import errors
from pveoci.pve import wording

_NODE_IN_PATH = re.compile(r"^/nodes/([^/]+)")


def from_resource_exception(exc: Any, method: str, path: str, identity: str) -> errors.PveociError:
    """A proxmoxer ResourceException (status_code, content = PVE's reason, errors) as a typed error."""
    status = int(exc.status_code)
    reason = wording.oneline(exc.content or exc.status_message or "")
    errs = exc.errors if isinstance(exc.errors, Mapping) else None
    where = f"{method} {path}"
    if status == 401:
        return errors.AuthError(
            f"the Proxmox API refused the credentials of {identity} ({reason or 'authentication failure'})"
        )
    if status == 403:
        return wording.permission_denied(reason, identity, where)
    if status in (595, 596):
        node_match = _NODE_IN_PATH.match(path)
        node = node_match.group(1) if node_match else None
        subject = f"node '{node}'" if node else "the node"
        return errors.NodeOffline(f"{subject} is offline or unreachable from the API ({reason})", node=node)
    if status in (502, 503, 504):
        return errors.ConnectError(f"the Proxmox API is unavailable ({status} {reason}) for {where}")
    if status == 400 and errs:
        return wording.invalid_parameter(errs)
    named = wording.by_reason(reason)
    if named is not None:
        return named
    if status == 501:
        return errors.ApiError(f"this Proxmox VE does not implement {where} ({reason})", status=status)
    return errors.ApiError(f"Proxmox API error {status} on {where}: {reason}", status=status)


def from_requests_exception(exc: requests.RequestException, endpoint: str) -> errors.PveociError:
    """A transport failure (TLS, refused, reset, timed out) as a typed error."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r'Fingerprints did not match\. Expected "([0-9a-f]+)", got "([0-9a-f]+)"', text)
        if found:
            return errors.TlsError(
                f"TLS certificate of {endpoint} does not match the pinned fingerprint "
                f"(pinned {colon_hex(found.group(1))}, server has {colon_hex(found.group(2))}); refusing to connect",
                detail=text,
            )
        why = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "TLS handshake failed"
        detail = re.search(r"certificate verify failed: ([^(\)]+)", text)
        if detail:
            why += ": " + detail.group(1).strip()
        return errors.TlsError(
            f"TLS certificate of {endpoint} is not trusted ({why}); set ca_file to the cluster's CA "
            "or pin the certificate with fingerprint", detail=text
        )
    if isinstance(exc, requests.Timeout):
        return errors.ConnectError(f"the Proxmox API at {endpoint} did not answer in time", detail=text)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return errors.AuthError(f"login to {endpoint} failed: wrong user or password")
        return errors.AuthError(f"login to {endpoint} failed: {wording.oneline(str(exc))}")
    reason = "connection refused" if "Connection refused" in text else (
        "connection reset" if "reset" in text.lower() or "aborted" in text.lower() else
        "no route to host" if "No route" in text else
        "name or service not known" if "Name or service not known" in text or "resolve" in text.lower() else
        "connection failed")
    return errors.ConnectError(f"cannot reach the Proxmox API at {endpoint}: {reason}", detail=text)


def colon_hex(hexstr: str) -> str:
    """ab12... -> AB:12:..."""
    up = hexstr.upper()
    return ":".join(up[i : i + 2] for i in range(0, len(up), 2))
