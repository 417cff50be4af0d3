"""Images on the command line: `pveoci pull`, and the `--image` flags create, run and plan share (podman's names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from pveoci.cli import render
from pveoci.cli.invocation import OutputOption, cli

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest
    from pveoci.image.store import Access, Image

# ruff's UP045: typer reads these annotations at run time, on Python 3.10 too.
ImageOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--image", help="Run an image instead of a bundle: registry/repo:tag, repo@sha256:..., oci-archive:FILE, "
    "docker-archive:FILE or oci:DIR (pulled by the node or by this machine: see --pull).")]
ArgsArgument = Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
    help="With --image: the command, replacing the image's Cmd (after -- when it has options).")]
EntrypointOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--entrypoint", help="With --image: the program (or a JSON array) replacing the image's Entrypoint and Cmd.")]
EnvOption = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    "--env", "-e", help="With --image: KEY=VALUE added to or replacing the image's environment (repeatable).")]
WorkdirOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--workdir", "-w", help="With --image: the working directory (default: the image's).")]
UserOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--user", "-u", help="With --image: USER[:GROUP], names or ids, looked up in the image (default: the "
    "image's).")]
AuthfileOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--authfile", envvar="REGISTRY_AUTH_FILE", help="The registry credentials file (default: podman's, then "
    "docker's config and its credential helpers).")]
CertDirOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--cert-dir", help="A directory of CA certificates (*.crt) to trust for the registry.")]
TlsVerifyOption = Annotated[bool, typer.Option(
    "--tls-verify/--no-tls-verify", help="Require HTTPS with a trusted certificate (--no-tls-verify: only for a "
    "registry you trust on a network you trust).")]

PullOption = Annotated[str, typer.Option(
    "--pull", envvar="PVEOCI_PULL", help="With --image, who pulls it: `node` (Proxmox VE 9.1's own pull, from "
    "a public registry by tag: this machine sends nothing of it), `workstation` (this machine pulls and sends "
    "the template: any registry, credentials, digests), or `auto`: the node when it can.")]


def access(authfile: str | None, cert_dir: str | None, tls_verify: bool) -> Access:
    from pveoci.image.store import Access

    return Access(authfile=authfile, cert_dir=cert_dir, tls_verify=tls_verify)


def request(image: str | None, *, args: list[str] | None = None, entrypoint: str | None = None,
            env: list[str] | None = None, workdir: str | None = None, user: str | None = None,
            authfile: str | None = None, cert_dir: str | None = None, tls_verify: bool = True,
            terminal: bool = False, bundle_given: bool = False, pull: str = "auto") -> ImageRequest | None:
    """The image the flags name, with what they change of its process; None without --image (then none of the
    image's flags may be given)."""
    from pveoci import errors

    if image is None:
        given = [flag for flag, value in (("--entrypoint", entrypoint), ("--env", env), ("--workdir", workdir),
                                          ("--user", user), ("a command", args)) if value]
        if given:
            raise errors.InvalidParameter(f"{', '.join(given)}: only with --image (a bundle's config.json says "
                                          "its process)")
        return None
    if bundle_given:
        raise errors.InvalidParameter("--image and --bundle: give one of them")
    from pveoci.image.imageconfig import Overrides, parse_entrypoint
    from pveoci.image.source import ImageRequest

    overrides = Overrides(entrypoint=parse_entrypoint(entrypoint) if entrypoint is not None else None,
                          args=list(args) if args else None, env=tuple(env or ()), cwd=workdir, user=user,
                          terminal=terminal)
    return ImageRequest(image, overrides, access(authfile, cert_dir, tls_verify), pull)


def _pulled(c: Any, made: ImageRequest, node: str | None) -> Image:
    """The image pulled for the node's architecture; with no cluster configured and no node named, for this
    machine's (as podman pulls: a cluster is not needed to fill the store)."""
    from pveoci import errors

    try:
        runtime = c.runtime()
    except errors.ConfigError:
        if node is not None:
            raise
        from pveoci.image.source import workstation_arch
        from pveoci.image.store import Store

        return Store(access=made.access).pull(made.parsed, workstation_arch())
    return runtime.pull(made, node=node)  # type: ignore[no-any-return]


def images(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the images of this machine's image store: what they were pulled as, digest, architecture, size, last use.

    The store holds what `pull` and `--image` fetched (their layers, to pack a template for another
    node); `pveoci gc` forgets what no create used for 30 days.

    Examples:

    \b
      pveoci images
      pveoci images -o json | jq '.[].digest'
    """
    import time

    from pveoci.image.store import Store

    c = cli(ctx, output)
    found = Store().images()
    if c.json:
        render.emit_json([s.to_json() for s in found])
        return
    render.table(["REFERENCE", "DIGEST", "ARCH", "SIZE", "LAST USED"],
                 [[s.reference, s.digest.removeprefix("sha256:")[:12], s.arch, render.size(s.size),
                   time.strftime("%Y-%m-%d %H:%M", time.localtime(s.used))] for s in found])


def pull(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="The image: registry/repo:tag, repo@sha256:..., "
                                             "oci-archive:FILE, docker-archive:FILE or oci:DIR.")],
    node: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--node", "-n", help="Pull for this node's architecture (default: the profile's node).")] = None,
    authfile: AuthfileOption = None,
    cert_dir: CertDirOption = None,
    tls_verify: TlsVerifyOption = True,
    output: OutputOption = None,
) -> None:
    """Pull an image into this machine's image store, for the architecture of the node it will run on.

    What `create --image` and `run --image` do first: a tag costs one request to the registry once the
    image is here (a digest none), and only the layers the store lacks are copied. Credentials come
    from the files podman and docker keep (`podman login`, `docker login`, credential helpers), or
    --authfile; never from the command line. Prints the image's digest, architecture and size.

    Examples:

    \b
      pveoci pull registry.example:5000/team/app:1.4
      pveoci pull --authfile ~/.config/containers/auth.json registry.example/private/app@sha256:4f1c...
      pveoci pull oci-archive:./app.tar -o json
    """
    from pveoci.image.source import ImageRequest

    c = cli(ctx, output)
    made = ImageRequest(reference, access=access(authfile, cert_dir, tls_verify))
    image = _pulled(c, made, node)
    config = image.process
    if c.json:
        render.emit_json({"reference": str(image.reference), "digest": image.digest, "architecture": image.arch,
                          "layers": len(image.layers), "size": image.compressed,
                          "entrypoint": config.get("Entrypoint"), "cmd": config.get("Cmd"),
                          "env": config.get("Env"), "workdir": config.get("WorkingDir"), "user": config.get("User")})
        return
    typer.echo(f"{image.reference}  {image.digest}  {image.arch}  {len(image.layers)} layer(s), "
               f"{image.compressed} bytes")
