"""What pveoci implements, as the runtime-spec's Features structure (features.md): what `pveoci features` prints,
as `runc features` does.

Read from the mapping's own tables (pveoci/lxc/fields_*.py), so it says what a bundle really becomes on Proxmox:
what is listed is applied, what PVE cannot do is left out or `false`. It asks nothing of the cluster and reads no
settings (the structure is the runtime's, not the host's: features.md).
"""

from __future__ import annotations

from typing import Any

from pveoci import __version__
from pveoci.lxc import (
    fields_lifecycle,
    fields_mounts,
    fields_namespaces,
    fields_process,
    fields_resources,
    fields_security,
)
from pveoci.oci.defaults import OCI_VERSION

#: The oldest runtime-spec version a config.json may say: pveoci reads any 1.x ("1.0.0", as runc says).
OCI_VERSION_MIN = "1.0.0"
#: pveoci's own annotations of the structure (runc's are org.opencontainers.runc.*).
ANNOTATION_VERSION = "org.proxmox.pveoci.version"


def features() -> dict[str, Any]:
    """The runtime-spec Features structure of this pveoci, as a JSON object (keys in runc's order)."""
    resources_v2 = fields_resources.CGROUP_VERSION == 2
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(fields_lifecycle.HOOKS_RUN),
        "mountOptions": sorted(fields_mounts.MOUNT_OPTIONS),
        "linux": {
            "namespaces": sorted(fields_namespaces.NAMESPACES),
            "capabilities": sorted(fields_process.CAPABILITIES),
            # PVE puts each container in its cgroup and writes its limits there: pveoci's values are cgroup v2's.
            # `--systemd-cgroup` asks for a cgroup manager pveoci does not have.
            "cgroup": {"v1": not resources_v2, "v2": resources_v2, "systemd": False, "systemdUser": False,
                       "rdma": "rdma" not in fields_resources.UNSUPPORTED},
            # runc leaves the lists out when seccomp is not built in: nothing of a profile is recognised.
            "seccomp": {"enabled": fields_security.SECCOMP},
            "apparmor": {"enabled": fields_process.APPARMOR},
            "selinux": {"enabled": fields_process.SELINUX},
            "intelRdt": {"enabled": "intelRdt" not in fields_security.UNSUPPORTED},
            "mountExtensions": {"idmap": {"enabled": fields_mounts.ID_MAPPED_MOUNTS}},
            "netDevices": {"enabled": "netDevices" not in fields_security.UNSUPPORTED},
        },
        "annotations": {ANNOTATION_VERSION: __version__},
    }
