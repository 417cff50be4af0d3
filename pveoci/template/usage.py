"""Which pveoci containers use which template, read from their ownership markers on the cluster."""

from __future__ import annotations

from pveoci import errors, marker
from pveoci.pve.client import PveClient


def in_use(client: PveClient) -> dict[str, list[str]]:
    """{template file name: [OCI ids of the containers made from it]}, over the whole cluster."""
    used: dict[str, list[str]] = {}
    for item in client.get("cluster", "resources", type="vm"):
        if item.get("type") != "lxc" or not marker.has_tag(item.get("tags")):
            continue
        try:
            config = client.get("nodes", item["node"], "lxc", item["vmid"], "config")
        except (errors.NotFound, errors.NodeOffline):
            continue  # gone meanwhile, or unreadable now: it cannot vouch for a template either way
        found = marker.parse(config.get("description"))
        if found is not None:
            used.setdefault(found.template, []).append(found.id)
    return used
