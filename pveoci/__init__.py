"""pveoci: run OCI runtime bundles as LXC containers on a remote Proxmox VE cluster.

The Python API, which the `pveoci` command line is a front end to:

    import pveoci

    rt = pveoci.connect("lab")                 # a profile of config.toml
    state = rt.run("web1", "./bundles/web")    # create + start; a typed State
    print(state.status, state.node, state.vmid)
    rt.kill("web1", "TERM")
    status = rt.wait("web1")                   # its process's exit status (143: TERM ended it)
    rt.delete("web1")

Errors are subclasses of `pveoci.PveociError` (see `pveoci.errors`), each with a stable exit code.
See docs/python-api.md.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Public name -> the module that defines it; imported on first use, so `import pveoci` stays cheap.
_EXPORTS = {
    "connect": "pveoci.connect", "features": "pveoci.implemented",
    "Runtime": "pveoci.runtime", "Templates": "pveoci.runtime", "FindingsMode": "pveoci.runtime",
    "State": "pveoci.models", "Node": "pveoci.models", "Storage": "pveoci.models", "Template": "pveoci.models",
    "PushResult": "pveoci.models", "Check": "pveoci.models", "GcReport": "pveoci.models",
    "ProcessTable": "pveoci.models", "Guest": "pveoci.models", "Placement": "pveoci.models",
    "NodeScore": "pveoci.models", "Migration": "pveoci.models", "MoveReport": "pveoci.models",
    "MigrationCheck": "pveoci.models", "Stats": "pveoci.models", "StandIn": "pveoci.models",
    "Plan": "pveoci.lxc.mapping", "Finding": "pveoci.lxc.mapping", "ResourceUpdate": "pveoci.lxc.resource_update",
    "Progress": "pveoci.progress",
    "Settings": "pveoci.settings", "Profile": "pveoci.settings",
    "PveociError": "pveoci.errors", "ConfigError": "pveoci.errors", "ConnectError": "pveoci.errors",
    "TlsError": "pveoci.errors", "AuthError": "pveoci.errors", "PermissionDenied": "pveoci.errors",
    "NotFound": "pveoci.errors", "AlreadyExists": "pveoci.errors", "Locked": "pveoci.errors",
    "NoQuorum": "pveoci.errors", "NodeOffline": "pveoci.errors", "InvalidParameter": "pveoci.errors",
    "TaskFailed": "pveoci.errors", "OperationTimeout": "pveoci.errors", "SshError": "pveoci.errors",
    "HostKeyError": "pveoci.errors", "BundleError": "pveoci.errors", "MappingError": "pveoci.errors",
    "UnsupportedByStrictMapping": "pveoci.errors", "ContainerStateError": "pveoci.errors",
    "NotRunning": "pveoci.errors", "NotCreated": "pveoci.errors", "Paused": "pveoci.errors",
    "NotPaused": "pveoci.errors", "NotStopped": "pveoci.errors", "HookFailed": "pveoci.errors",
    "Unsupported": "pveoci.errors", "InUse": "pveoci.errors", "ChecksFailed": "pveoci.errors",
    "ApiError": "pveoci.errors", "NoSuitableNode": "pveoci.errors", "MoveRefused": "pveoci.errors",
    "MarkerUnreadable": "pveoci.errors",
}

__all__ = [
    "AlreadyExists",
    "ApiError",
    "AuthError",
    "BundleError",
    "Check",
    "ChecksFailed",
    "ConfigError",
    "ConnectError",
    "ContainerStateError",
    "Finding",
    "FindingsMode",
    "GcReport",
    "Guest",
    "HookFailed",
    "HostKeyError",
    "InUse",
    "InvalidParameter",
    "Locked",
    "MappingError",
    "MarkerUnreadable",
    "Migration",
    "MigrationCheck",
    "MoveRefused",
    "MoveReport",
    "NoQuorum",
    "NoSuitableNode",
    "Node",
    "NodeOffline",
    "NodeScore",
    "NotCreated",
    "NotFound",
    "NotPaused",
    "NotRunning",
    "NotStopped",
    "OperationTimeout",
    "Paused",
    "PermissionDenied",
    "Placement",
    "Plan",
    "ProcessTable",
    "Profile",
    "Progress",
    "PushResult",
    "PveociError",
    "ResourceUpdate",
    "Runtime",
    "Settings",
    "SshError",
    "StandIn",
    "State",
    "Stats",
    "Storage",
    "TaskFailed",
    "Template",
    "Templates",
    "TlsError",
    "Unsupported",
    "UnsupportedByStrictMapping",
    "__version__",
    "connect",
    "features",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pveoci' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """`pveoci.connect` stays the function once the module of the same name is imported
    (`from pveoci.connect import ...`, or the command line): the import system sets the package's attribute to the
    module, and `pveoci.connect()` would then fail with "'module' object is not callable"."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "connect" and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from pveoci.connect import connect
    from pveoci.errors import (
        AlreadyExists,
        ApiError,
        AuthError,
        BundleError,
        ChecksFailed,
        ConfigError,
        ConnectError,
        ContainerStateError,
        HookFailed,
        HostKeyError,
        InUse,
        InvalidParameter,
        Locked,
        MappingError,
        MarkerUnreadable,
        MoveRefused,
        NodeOffline,
        NoQuorum,
        NoSuitableNode,
        NotCreated,
        NotFound,
        NotPaused,
        NotRunning,
        NotStopped,
        OperationTimeout,
        Paused,
        PermissionDenied,
        PveociError,
        SshError,
        TaskFailed,
        TlsError,
        Unsupported,
        UnsupportedByStrictMapping,
    )
    from pveoci.implemented import features
    from pveoci.lxc.mapping import Finding, Plan
    from pveoci.lxc.resource_update import ResourceUpdate
    from pveoci.models import (
        Check,
        GcReport,
        Guest,
        Migration,
        MigrationCheck,
        MoveReport,
        Node,
        NodeScore,
        Placement,
        ProcessTable,
        PushResult,
        StandIn,
        State,
        Stats,
        Storage,
        Template,
    )
    from pveoci.progress import Progress
    from pveoci.runtime import FindingsMode, Runtime, Templates
    from pveoci.settings import Profile, Settings
