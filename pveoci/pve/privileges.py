"""The Proxmox privileges pveoci needs, and checking them against GET /access/permissions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pveoci.settings import Profile


@dataclass(frozen=True)
class Requirement:
    path: str
    privilege: str
    why: str


def requirements(profile: Profile) -> list[Requirement]:
    """What a profile's work needs, on the paths its storages and bridge name (docs/permissions.md)."""
    tmpl = f"/storage/{profile.template_storage}"
    root = f"/storage/{profile.rootfs_storage}"
    return [
        Requirement("/", "Sys.Audit", "read cluster status, nodes and tasks"),
        Requirement("/vms", "VM.Allocate", "create and destroy containers"),
        Requirement("/vms", "VM.Audit", "read container config and status"),
        Requirement("/vms", "VM.Config.CPU", "set cores, cpulimit, cpuunits"),
        Requirement("/vms", "VM.Config.Memory", "set memory and swap"),
        Requirement("/vms", "VM.Config.Network", "attach network interfaces"),
        Requirement("/vms", "VM.Config.Options", "set hostname, tags, description, entrypoint, env"),
        Requirement("/vms", "VM.Config.Disk", "set the root disk and mount points"),
        Requirement("/vms", "VM.PowerMgmt", "start, stop, shut down, suspend, resume"),
        Requirement("/vms", "VM.Migrate", "migrate containers and drain nodes"),
        Requirement(tmpl, "Datastore.AllocateTemplate", "upload templates"),
        Requirement(tmpl, "Datastore.Audit", "list templates"),
        Requirement(tmpl, "Datastore.Allocate", "remove templates (template rm, template gc)"),
        Requirement(root, "Datastore.AllocateSpace", "allocate container root disks"),
        Requirement(f"/sdn/zones/localnetwork/{profile.bridge}", "SDN.Use", "use the bridge"),
    ]


def holds(permissions: Mapping[str, Mapping[str, object]], path: str, privilege: str) -> bool:
    """True if the privilege is granted on path or an ancestor of it (ACLs propagate down)."""
    for granted, privs in permissions.items():
        base = granted.rstrip("/") or "/"
        inherits = base == "/" or path == base or path.startswith(base + "/")
        if inherits and privs.get(privilege):
            return True
    return False


def missing(permissions: Mapping[str, Mapping[str, object]], wanted: list[Requirement]) -> list[Requirement]:
    return [req for req in wanted if not holds(permissions, req.path, req.privilege)]
