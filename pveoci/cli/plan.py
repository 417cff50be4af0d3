"""`pveoci plan`: what a bundle would become on the cluster (PVE options, findings), changing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pveoci.cli import images as flags
from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli
from pveoci.cli.lifecycle import BundleOption, StrictOption

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest
    from pveoci.lxc.draft import Finding, Plan
    from pveoci.oci.bundle import Bundle

_ORDER = {"unsupported": 0, "approximated": 1, "applied": 2, "provided": 3}


def plan(
    ctx: typer.Context,
    args: flags.ArgsArgument = None,
    bundle: BundleOption = Path("."),
    image: flags.ImageOption = None, entrypoint: flags.EntrypointOption = None, env: flags.EnvOption = None,
    workdir: flags.WorkdirOption = None, user: flags.UserOption = None, authfile: flags.AuthfileOption = None,
    cert_dir: flags.CertDirOption = None, tls_verify: flags.TlsVerifyOption = True,
    container_id: Annotated[str, typer.Option("--id", help="The container id the hostname falls back "
                                               "to.")] = "container",
    strict: StrictOption = False,
    all_findings: Annotated[bool, typer.Option("--all", help="Also list what is applied or provided.")] = False,
    output: OutputOption = None,
) -> None:
    """Show the Proxmox options and the findings for a bundle or an image, without changing anything.

    Each field of config.json that matters is applied, approximated, provided by LXC itself,
    or unsupported; docs/mapping.md explains every one. The cluster's version is read if it can
    be (PVE 9.1 is assumed otherwise).

    Examples:

    \b
      pveoci plan -b ./mybundle
      pveoci plan -b ./mybundle --strict      # exit 19 if anything is unsupported
      pveoci plan -b ./mybundle -o json | jq .options
      pveoci plan --image registry.example:5000/web:2     # the image's process, volumes, ports

    An image is pulled to this machine for it (`pveoci pull`); the cluster is not changed.
    """
    from pveoci import planning

    wanted = flags.request(image, args=args, entrypoint=entrypoint, env=env, workdir=workdir, user=user,
                           authfile=authfile, cert_dir=cert_dir, tls_verify=tls_verify,
                           bundle_given=bundle != Path("."))
    c = cli(ctx, output)
    settings = c.settings()
    loaded, size = _loaded(bundle, wanted)
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
            "bundle": str(loaded.path), **({"image": wanted.ref} if wanted else {}),
            "pve_version": f"{version[0]}.{version[1]}", "assumed": why_not is not None,
            "options": result.options, "stop_signal": result.stop_signal,
            "process": {"path": process.path, "args": list(process.args), "cwd": process.cwd,
                        "uid": process.uid, "gid": process.gid},
            "findings": [f.to_json() for f in findings],
        })
    else:
        _show(result, findings, version, why_not, all_findings)
    result.check(strict)


def _loaded(bundle: Path, wanted: ImageRequest | None) -> tuple[Bundle, int]:
    """The bundle (or the image as one, pulled for this machine's architecture) and its rootfs's bytes."""
    if wanted is None:
        from pveoci.oci.bundle import Bundle
        from pveoci.template.pack import rootfs_size

        loaded = Bundle.load(bundle)
        return loaded, rootfs_size(loaded.rootfs)
    from pveoci.image import source

    image, scanned = source.load(wanted, source.workstation_arch())
    return image, scanned.size


def _show(result: Plan, findings: list[Finding], version: tuple[int, int], why_not: str | None,
          all_findings: bool) -> None:
    if why_not:
        typer.echo(f"(cluster not asked: {why_not}; assuming Proxmox VE {version[0]}.{version[1]})")
    typer.echo("Proxmox options:")
    for key, value in result.options.items():
        typer.echo(f"  {key}={value}")
    shown = [f for f in findings if all_findings or f.status in ("unsupported", "approximated")]
    if shown:
        typer.echo("Findings:")
        render.table(["STATUS", "FIELD", "DETAIL"], [[f.status, f.field, f.detail] for f in shown])
