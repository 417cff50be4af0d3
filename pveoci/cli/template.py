"""`pveoci template push|ls|rm|gc`: the content-addressed templates pveoci keeps on the cluster's storages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from pveoci.cli import render
from pveoci.cli.images import AuthfileOption, CertDirOption, ImageOption, PullOption, TlsVerifyOption
from pveoci.cli.images import request as image_request
from pveoci.cli.invocation import OutputOption, cli
from pveoci.cli.lifecycle import BundleOption, NodeOption, StrictOption

HELP = """Push, list and remove pveoci's templates.

A template is a bundle's rootfs (and pveoci's init), packed deterministically and named by its
content (pveoci-<sha256 prefix>-<likeness prefix>.tar.zst): a storage that has it is never sent it
again, and a tree alike to one packed before (a copy, an engine's overlay of the same image) is not
packed again.

Examples:

\b
  pveoci template push -b ./hello           # what `create -b ./hello` would upload
  pveoci template ls -o json                # every node's, with the containers made from each
  pveoci template rm pveoci-0123456789abcdef-fedcba9876543210.tar.zst --node pve1
  pveoci template gc --dry-run              # what no container uses
"""

app = typer.Typer(help=HELP, no_args_is_help=True)

StorageOption = Annotated[Optional[str],  # noqa: UP045 - typer reads the annotation at run time on 3.10
                          typer.Option("--storage", "-s", help="Template storage (default: the profile's "
                                       "template_storage).")]


@app.command("push")
def push(
    ctx: typer.Context,
    bundle: BundleOption = Path("."),
    image: ImageOption = None,
    authfile: AuthfileOption = None,
    cert_dir: CertDirOption = None,
    tls_verify: TlsVerifyOption = True,
    pull: PullOption = "auto",
    node: NodeOption = None,
    storage: StorageOption = None,
    transport: Annotated[str, typer.Option("--transport", help="sftp (over SSH, the default) or api (the "
                                           "Proxmox upload API).")] = "sftp",
    strict: StrictOption = False,
    output: OutputOption = None,
) -> None:
    """Pack a bundle's rootfs (or an image's layers) and upload it, unless the storage has it already.

    The template is the one `pveoci create` uses for the bundle, named by its content:
    pveoci-<sha256 prefix>-<likeness prefix>.tar.zst (an image's: by its manifest's digest).
    Shared storage gets one copy for all nodes.

    Examples:

    \b
      pveoci template push -b ./mybundle
      pveoci template push -b ./mybundle --node pve2 --transport api
      pveoci template push --image registry.example:5000/web:2 --node pve3   # before the first run there
      pveoci template push --image docker.io/library/nginx:1.27 --pull node   # the node pulls it itself
    """
    from pveoci.cli.display import display

    wanted = image_request(image, authfile=authfile, cert_dir=cert_dir, tls_verify=tls_verify,
                           bundle_given=bundle != Path("."), pull=pull)
    c = cli(ctx, output)
    with display() as shown:
        result = c.runtime().templates.push(bundle, node=node, storage=storage, transport=transport,
                                            strict=strict, progress=shown, image=wanted)
    if c.json:
        render.emit_json(result.to_json())
    elif result.made_on_node:
        typer.echo(f"{result.volid}: made on {result.node} from the image it pulled; nothing sent from here")
    elif result.uploaded:
        typer.echo(f"{result.volid}: uploaded {render.size(result.bytes_sent)} to {result.node} over {transport}")
    else:
        typer.echo(f"{result.volid}: already on {result.storage} ({result.node}); nothing sent")


@app.command("ls")
def ls(ctx: typer.Context, node: NodeOption = None, storage: StorageOption = None, output: OutputOption = None) -> None:
    """List pveoci's templates per node and storage, with their size and the containers made from them.

    Examples:

    \b
      pveoci template ls
      pveoci template ls --node pve2 -o json
    """
    c = cli(ctx, output)
    found = c.runtime().templates.list(node=node, storage=storage)
    if c.json:
        render.emit_json([t.to_json() for t in found])
        return
    rows = [[t.name, "(shared)" if t.shared else t.node, t.storage, render.size(t.size),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(t.ctime)), ",".join(t.used_by) or "-"]
            for t in found]
    render.table(["TEMPLATE", "NODE", "STORAGE", "SIZE", "CREATED", "USED BY"], rows)


@app.command("rm")
def rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template file name (pveoci-<digest>-<likeness>.tar.zst).")],
    node: NodeOption = None,
    storage: StorageOption = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Remove it even if containers use it.")] = False,
    output: OutputOption = None,
) -> None:
    """Remove a template from a storage (refused while a container made from it exists, unless --force).

    Examples:

    \b
      pveoci template rm pveoci-0123456789abcdef-fedcba9876543210.tar.zst --node pve1
    """
    c = cli(ctx, output)
    gone = c.runtime().templates.remove(name, node=node, storage=storage, force=force)
    if c.json:
        render.emit_json(gone.to_json())
    else:
        typer.echo(f"removed {gone.volid} from {'shared storage' if gone.shared else gone.node}")


@app.command("gc")
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    output: OutputOption = None,
) -> None:
    """Remove every pveoci template no container was made from, on every online node.

    Examples:

    \b
      pveoci template gc --dry-run
      pveoci template gc
    """
    c = cli(ctx, output)
    removed = c.runtime().templates.gc(dry_run=dry_run)
    if c.json:
        render.emit_json({"dry_run": dry_run, "removed": [t.to_json() for t in removed]})
        return
    verb = "would remove" if dry_run else "removed"
    for t in removed:
        typer.echo(f"{verb} {t.volid} ({'shared' if t.shared else t.node}, {render.size(t.size)})")
    if not removed:
        typer.echo("no unused templates")
