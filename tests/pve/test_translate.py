"""PVE's errors, as proxmoxer raises them, become typed one-line errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from proxmoxer import ResourceException

from pveoci import errors
from pveoci.pve.translate import from_resource_exception


def exc(status: int, reason: str, errs: dict[str, str] | None = None) -> ResourceException:
    return ResourceException(status, "", reason, errors=errs)


@pytest.mark.parametrize(("status", "reason", "kind", "words"), [
    (403, "Permission check failed (/vms/105, VM.Allocate)", errors.PermissionDenied,
     "u@pve!t lacks VM.Allocate on /vms/105"),
    (500, "cluster not ready - no quorum?", errors.NoQuorum, "no quorum"),
    (595, "No route to host", errors.NodeOffline, "node 'pve2' is offline"),
    (500, "CT 105 already exists on node 'pve1'", errors.AlreadyExists, "CT 105 already exists"),
    (500, "unable to create CT 105 - close (rename) atomic file '/etc/pve/nodes/pve1/lxc/105.conf' failed: "
          "File exists", errors.AlreadyExists, "File exists"),
    (500, "can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout", errors.Locked, "can't lock"),
    (500, "CT is locked (create)", errors.Locked, "locked (create)"),
    (500, "Configuration file 'nodes/pve2/lxc/105.conf' does not exist", errors.NotFound, "does not exist"),
    (501, "Method 'GET /x' not implemented", errors.ApiError, "does not implement"),
    (500, "something odd", errors.ApiError, "Proxmox API error 500"),
])
def test_pve_errors_become_typed_errors(status: int, reason: str, kind: type, words: str) -> None:
    err = from_resource_exception(exc(status, reason), "POST", "/nodes/pve2/lxc", "u@pve!t")
    assert type(err) is kind
    assert words in err.message


def test_permission_error_keeps_path_and_privilege() -> None:
    err = from_resource_exception(exc(403, "Permission check failed (/storage/local, Datastore.AllocateTemplate)"),
                                  "POST", "/nodes/pve1/storage/local/upload", "u@pve!t")
    assert isinstance(err, errors.PermissionDenied)
    assert (err.path, err.privilege) == ("/storage/local", "Datastore.AllocateTemplate")


def test_parameter_errors_are_listed_per_parameter() -> None:
    err = from_resource_exception(exc(400, "Parameter verification failed.",
                                      {"vmid": "VM 105 already exists", "hostname": "invalid format"}),
                                  "POST", "/nodes/pve1/lxc", "u")
    assert isinstance(err, errors.InvalidParameter)
    assert err.message == "Proxmox rejected the request: hostname: invalid format; vmid: VM 105 already exists"
    assert err.errors["vmid"] == "VM 105 already exists"


@given(st.integers(400, 599), st.text(), st.dictionaries(st.text(min_size=1), st.text()))
def test_any_pve_error_becomes_one_line(status: int, reason: str, errs: dict[str, str]) -> None:
    err = from_resource_exception(exc(status, reason, errs or None), "GET", "/nodes/x", "u")
    assert isinstance(err, errors.PveociError)
    assert "\n" not in err.message
    assert "\r" not in err.message
