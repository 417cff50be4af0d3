"""`pveoci features`: what pveoci implements, as runc's `features` prints it (the runtime-spec's Features JSON)."""

from __future__ import annotations

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli


def features(ctx: typer.Context, output: OutputOption = None) -> None:
    """Print what pveoci implements as the runtime-spec's Features JSON, as `runc features` does.

    Honest about Proxmox: the hooks, mount options, namespaces and capabilities a bundle may use and have
    applied, and false for what PVE does instead (its own seccomp and AppArmor profiles). JSON whatever -o
    says; needs no cluster and no settings.

    Examples:

    \b
      pveoci features
      pveoci features | jq -r '.linux.namespaces[]'
    """
    from pveoci.implemented import features as implemented

    cli(ctx, output)  # -o is taken as everywhere; the structure is JSON either way
    render.emit_json(implemented())
