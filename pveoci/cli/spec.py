"""`pveoci spec`: write a starter config.json into a bundle, as `runc spec` does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pveoci.cli.invocation import OutputOption, cli


def spec(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Option("--bundle", "-b", metavar="DIR", help="Bundle directory to write "
                                         "config.json into.")] = Path("."),
    rootless: Annotated[bool, typer.Option("--rootless", help="A spec for a rootless container, as runc writes "
                                           "it: your user mapped to root, no network namespace, no cgroup "
                                           "limits.")] = False,
    args: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer reads this annotation at run time, also on Python 3.10
        typer.Argument(metavar="ARGS", help="The command to run in the container (default: sh)."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Write a starter config.json for the bundle: ARGS (default sh) in /, as root, with a terminal.

    It is runc's starter spec (namespaces, standard mounts, a few capabilities, RLIMIT_NOFILE, masked
    paths); edit it to suit. An existing config.json is never replaced. Put the root filesystem in
    the bundle's rootfs/ directory.

    Examples:

    \b
      pveoci spec                             # ./config.json running sh
      pveoci spec -b /srv/hello -- /hello     # another bundle, another command
      pveoci spec --rootless -- sleep 3600
    """
    import json

    from pveoci.errors import BundleError
    from pveoci.oci.defaults import default_spec
    from pveoci.oci.runtime_spec import parse_spec

    cli(ctx, output)  # -o is taken as everywhere; spec prints nothing either way
    document = default_spec(args, rootless=rootless)
    # A default that does not load would be a bug; better to say so than to write it.
    parse_spec(document, where="default config.json")
    if not bundle.is_dir():
        raise BundleError(f"bundle {bundle} {'is not a directory' if bundle.exists() else 'does not exist'}")
    config = bundle / "config.json"
    try:
        # "x": create only, so a config.json that appears meanwhile is not overwritten either.
        with config.open("x", encoding="utf-8") as fh:
            fh.write(json.dumps(document, indent="\t") + "\n")
    except FileExistsError:
        raise BundleError("File config.json exists. Remove it first") from None
    except OSError as exc:
        raise BundleError(f"cannot write {config}: {exc.strerror or exc}") from None
