"""The container as a whole: its hostname, domain name and root disk."""

from __future__ import annotations

import re
from functools import partial

from pveoci.lxc import properties
from pveoci.lxc.draft import Draft, profile_property


def dns_hostname(name: str) -> str:
    """A DNS-safe hostname from an OCI id or a spec hostname: lower case, labels of [a-z0-9-]."""
    labels = []
    for label in name.lower().replace("_", "-").replace("+", "-").split("."):
        label = re.sub(r"[^a-z0-9-]", "-", label).strip("-")[:63].strip("-")
        if label:
            labels.append(label)
    host = ".".join(labels)[:253].strip(".-")
    return host or "pveoci"


def hostname(d: Draft) -> None:
    wanted = d.spec.hostname
    if wanted:
        host = dns_hostname(wanted)
        if host == wanted:
            d.note("hostname", "applied", f"hostname={host}")
        else:
            d.note("hostname", "approximated", f"PVE takes DNS names only: '{host}'")
    else:
        host = dns_hostname(d.container_id)
        d.note("hostname", "applied", f"none in the spec: '{host}', from the container id")
    d.options["hostname"] = d.property_value("hostname", partial(properties.hostname, host))


def domainname(d: Draft) -> None:
    if d.spec.domainname:
        d.note("domainname", "unsupported", "no PVE option for the NIS domain name")


def root(d: Draft) -> None:
    """The root disk: a new volume of the profile's storage, the template unpacked into it."""
    readonly = bool(d.spec.root and d.spec.root.readonly)
    d.options["rootfs"] = profile_property(partial(properties.rootfs, d.target.rootfs_storage, d.target.disk_gib,
                                                   readonly=readonly))
    if readonly:
        d.note("root.readonly", "applied", "the root disk is mounted read-only")
