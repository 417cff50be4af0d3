"""The `pveoci` command (and `python -m pveoci`): `pveoci --version` answered before anything else is imported,
everything else by the command line (pveoci.cli.main)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # what scripts and package managers ask most: no typer, no settings, no cache
        from pveoci import __version__

        sys.stdout.write(f"pveoci version {__version__}\n")
        return
    # pydantic looks for plugins (observability hooks) in every installed package's metadata when the first model
    # is built: about 30 ms of every command's start, for plugins the command line has no use for. A value the
    # user set is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from pveoci.cli import prefetch

    prefetch.start(args)  # a rootfs's stat walk, while the command line below is imported and parsed
    from pveoci.cli.main import main as run

    run(args)


if __name__ == "__main__":
    main()
