"""`pveoci plan`: what a bundle would become on the cluster (PVE options, findings), changing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli
from pveoci.cli.lifecycle import BundleOption, StrictOption

_ORDER = {"unsupported": 0, "approximated": 1, "applied": 2, "provided": 3}


def plan(
    ctx: typer.Context,
    bundle: BundleOption = Path("."),
    container_id: Annotated[str, typer.Option("--id", help="The container id the hostname falls back "
                                               "to.")] = "container",
    strict: StrictOption = False,
    all_findings: Annotated[bool, typer.Option("--all", help="Also list what is applied or provided.")] = False,
    output: OutputOption = None,
) -> None:
    """Show the Proxmox options and the findings for a bundle, without changing anything.

    Each field of config.json that matters is applied, approximated, provided by LXC itself,
    or unsupported; docs/mapping.md explains every one. The cluster's version is read if it can
    be (PVE 9.1 is assumed otherwise).

    Examples:

    \b
      pveoci plan -b ./mybundle
      pveoci plan -b ./mybundle --strict      # exit 19 if anything is unsupported
      pveoci plan -b ./mybundle -o json | jq .options
    """
    from pveoci import planning
    from pveoci.oci.bundle import Bundle
    from pveoci.template.pack import rootfs_size

    c = cli(ctx, output)
    loaded = Bundle.load(bundle)
    settings = c.settings()
    size = rootfs_size(loaded.rootfs)
    # A bundle that cannot run fails before the cluster is asked its version (a dead host costs seconds).
    planning.plan_bundle(loaded, settings.profile, container_id=container_id, pve_version=planning.ASSUMED_VERSION,
                         size=size)
    version, why_not = planning.cluster_version(lambda: c.runtime().backend.version())
    root_pam = None if why_not else c.runtime().backend.privileged()
    result = planning.plan_bundle(loaded, settings.profile, container_id=container_id, pve_version=version,
                                  size=size, root_pam=root_pam)
    findings = sorted(result.findings, key=lambda f: _ORDER[f.status])
    if c.json:
        process = result.process
        render.emit_json({
            "bundle": str(loaded.path), "pve_version": f"{version[0]}.{version[1]}", "assumed": why_not is not None,
            "options": result.options, "stop_signal": result.stop_signal,
            "process": {"path": process.path, "args": list(process.args), "cwd": process.cwd,
                        "uid": process.uid, "gid": process.gid},
            "findings": [f.to_json() for f in findings],
        })
    else:
        if why_not:
            typer.echo(f"(cluster not asked: {why_not}; assuming Proxmox VE {version[0]}.{version[1]})")
        typer.echo("Proxmox options:")
        for key, value in result.options.items():
            typer.echo(f"  {key}={value}")
        shown = [f for f in findings if all_findings or f.status in ("unsupported", "approximated")]
        if shown:
            typer.echo("Findings:")
            render.table(["STATUS", "FIELD", "DETAIL"], [[f.status, f.field, f.detail] for f in shown])
    result.check(strict)
