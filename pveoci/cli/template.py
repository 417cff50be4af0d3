"""`pveoci template push|ls|rm|gc`: the content-addressed templates pveoci keeps on the cluster's storages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from pveoci.cli import render
from pveoci.cli.plan import BundleOption, StrictOption
from pveoci.cli.state import Output, OutputOption, State, state

if TYPE_CHECKING:
    from pveoci.template.store import TemplateInfo

app = typer.Typer(help="Push, list and remove pveoci's templates.", no_args_is_help=True)

NodeOption = Annotated[Optional[str],  # noqa: UP045 - typer reads the annotation at run time on 3.10
                       typer.Option("--node", "-n", help="Node (default: the profile's node; auto picks "
                                    "the online node with most free memory).")]
StorageOption = Annotated[Optional[str],  # noqa: UP045
                          typer.Option("--storage", "-s", help="Template storage (default: the profile's "
                                       "template_storage).")]


@app.command("push")
def push(
    ctx: typer.Context,
    bundle: BundleOption = Path("."),
    node: NodeOption = None,
    storage: StorageOption = None,
    transport: Annotated[str, typer.Option("--transport", help="sftp (over SSH, the default) or api (the "
                                           "Proxmox upload API).")] = "sftp",
    container_id: Annotated[str, typer.Option("--id", help="Container id for the hostname fallback.")] = "container",
    strict: StrictOption = False,
    output: OutputOption = None,
) -> None:
    """Pack a bundle's rootfs (plus pveoci's init shim) and upload it, unless the storage has it already.

    The template is the one `pveoci create` uses for the bundle, named by its content:
    pveoci-<sha256 prefix>.tar.zst. Shared storage gets one copy for all nodes.

    Examples:

    \b
      pveoci template push -b ./mybundle
      pveoci template push -b ./mybundle --node pve2 --transport api
    """
    from pveoci import planning
    from pveoci.cli import progress
    from pveoci.oci.bundle import Bundle
    from pveoci.placement import choose_node
    from pveoci.template import push as pushing
    from pveoci.template.store import TemplateStore

    st = state(ctx, output)
    settings = st.settings()
    loaded = Bundle.load(bundle)
    client = st.client()
    version, _ = planning.cluster_version(client.version)
    plan = planning.plan_bundle(loaded, settings.profile, container_id=container_id, pve_version=version)
    plan.check(strict)
    target_node = choose_node(client, node or settings.profile.node)
    dest = TemplateStore(client).destination(target_node, storage or settings.profile.template_storage)
    started = time.monotonic()
    with progress.bar("packing", None) as on_pack, progress.bar("uploading", None) as on_upload:
        done = pushing.push(client, settings, loaded, plan, dest, transport=transport,
                            on_pack=on_pack, on_upload=on_upload)
    result = done.result
    data = {"volid": result.volid, "node": dest.node, "storage": dest.storage, "shared": dest.shared,
            "uploaded": result.uploaded, "bytes_sent": result.bytes_sent, "size": done.packed.size,
            "digest": done.packed.digest, "seconds": round(time.monotonic() - started, 3)}
    if st.output is Output.json:
        render.emit_json(data)
    elif result.uploaded:
        typer.echo(f"{result.volid}: uploaded {render.size(result.bytes_sent)} to {dest.node} over {transport}")
    else:
        typer.echo(f"{result.volid}: already on {dest.storage} ({dest.node}); nothing sent")


def _listing(st: State, node: str | None, storage: str | None) -> list[TemplateInfo]:
    """pveoci's templates on every online node (or one), shared storages listed once."""
    from pveoci import cluster
    from pveoci.template.store import TemplateStore

    client = st.client()
    wanted = storage or st.settings().profile.template_storage
    store = TemplateStore(client)
    out: list[TemplateInfo] = []
    seen_shared = False
    for info in cluster.nodes(client):
        if (node and info.name != node) or not info.online:
            continue
        usable = {s.name: s for s in info.usable("vztmpl")}
        if wanted not in usable:
            continue
        shared = usable[wanted].shared
        if shared and seen_shared:
            continue
        seen_shared = seen_shared or shared
        out.extend(store.list(info.name, wanted, shared=shared))
    return out


@app.command("ls")
def ls(ctx: typer.Context, node: NodeOption = None, storage: StorageOption = None, output: OutputOption = None) -> None:
    """List pveoci's templates per node and storage, with their size and the containers that use them.

    Examples:

    \b
      pveoci template ls
      pveoci template ls --node pve2 -o json
    """
    from pveoci.template.usage import in_use

    st = state(ctx, output)
    templates = _listing(st, node, storage)
    used = in_use(st.client())
    if st.output is Output.json:
        render.emit_json([{**t.to_json(), "used_by": sorted(used.get(t.name, []))} for t in templates])
        return
    rows = [[t.name, "(shared)" if t.shared else t.node, t.storage, render.size(t.size),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(t.ctime)), ",".join(sorted(used.get(t.name, []))) or "-"]
            for t in templates]
    render.table(["TEMPLATE", "NODE", "STORAGE", "SIZE", "CREATED", "USED BY"], rows)


@app.command("rm")
def rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template file name (pveoci-<digest>.tar.zst).")],
    node: NodeOption = None,
    storage: StorageOption = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Remove it even if containers use it.")] = False,
) -> None:
    """Remove a template from a node's storage (refused while a container uses it, unless --force).

    Examples:

    \b
      pveoci template rm pveoci-0123456789abcdef.tar.zst --node pve1
    """
    from pveoci import errors
    from pveoci.placement import choose_node
    from pveoci.template.store import TemplateStore
    from pveoci.template.usage import in_use

    st = state(ctx)
    client = st.client()
    users = in_use(client).get(name, [])
    if users and not force:
        raise errors.PveociError(f"template {name} is used by {', '.join(sorted(users))}; --force removes it anyway")
    store = TemplateStore(client)
    dest = store.destination(choose_node(client, node or st.settings().profile.node),
                             storage or st.settings().profile.template_storage)
    store.remove(dest, name)
    typer.echo(f"removed {dest.volid(name)} from {dest.node}")


@app.command("gc")
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    output: OutputOption = None,
) -> None:
    """Remove every pveoci template that no container uses, on every online node.

    Examples:

    \b
      pveoci template gc --dry-run
      pveoci template gc
    """
    from pveoci.template.store import Destination, TemplateStore
    from pveoci.template.usage import in_use

    st = state(ctx, output)
    client = st.client()
    used = in_use(client)
    store = TemplateStore(client)
    removed = []
    for t in _listing(st, None, None):
        if t.name in used:
            continue
        if not dry_run:
            store.remove(Destination(t.node, t.storage, t.shared, None), t.name)
        removed.append(t)
    if st.output is Output.json:
        render.emit_json({"dry_run": dry_run, "removed": [t.to_json() for t in removed]})
        return
    verb = "would remove" if dry_run else "removed"
    for t in removed:
        typer.echo(f"{verb} {t.volid} ({'shared' if t.shared else t.node}, {render.size(t.size)})")
    if not removed:
        typer.echo("no unused templates")
