"""`pveoci nodes`: the cluster's nodes with their load and usable storages."""

from __future__ import annotations

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli
from pveoci.models import Storage


def nodes(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the nodes: status (online, offline, or maintenance: HA's maintenance mode), CPU load, free memory,
    and the storages usable for templates and root disks.

    Examples:

    \b
      pveoci nodes
      pveoci nodes -o json
    """
    c = cli(ctx, output)
    found = c.runtime().nodes()
    if c.json:
        render.emit_json([n.to_json() for n in found])
        return

    def names(items: list[Storage]) -> str:
        return ", ".join(f"{s.name} ({render.size(s.avail)} free)" for s in items) or "-"

    rows = []
    for n in found:
        if not n.online:
            rows.append([n.name, "offline", "-", "-", "-", "-"])
            continue
        rows.append([n.name, "maintenance" if n.maintenance else "online", f"{n.cpu:.0%} of {n.maxcpu}",
                     render.size(n.mem_free),
                     names(n.usable("vztmpl")), names(n.usable("rootdir"))])
    render.table(["NODE", "STATUS", "CPU", "MEM FREE", "TEMPLATE STORAGES", "ROOTFS STORAGES"], rows)
