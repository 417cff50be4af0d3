"""The rootfs's stat walk, started before the command line is even parsed.

`pveoci create`, `run`, `place` and `template push` begin with a stat walk of the bundle's rootfs
(its fingerprint names the template: template/manifest.py); on a rootfs that was packed before,
that walk is most of what the command does. The entry point (pveoci.__main__) reads the command
line as those commands will (the bundle of `-b`/`--bundle`, else the current directory), reads
that bundle's config.json and starts the walk of the rootfs it names at once, in the packer's own
process: it runs while the interpreter imports the command line, the settings and the runtime.
The command's walk (manifest.scanning) is this one when it is of the same directory (the same
real path: manifest.ahead); one that no command takes is stopped at exit.

A wrong guess (another command, a value that only looked like the bundle, a bundle with no
rootfs) costs a walk's CPU and nothing else: nothing but config.json and the tree's metadata is
read, and what the command checks and reports is what it would have without it.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence

#: The commands that walk their bundle's rootfs first (tests/cli/test_prefetch.py keeps this list true).
WALKERS = (("create",), ("run",), ("place",), ("template", "push"))
#: The global options that take a value (pveoci.cli.main's; the test keeps this list true too).
VALUED = frozenset({"--profile", "-p", "--config", "--host", "--port", "--token-id", "--user", "--fingerprint",
                    "--ca-file", "--backend", "--output", "-o", "--log", "--log-format", "--root", "--rootless"})


def start(args: Sequence[str]) -> None:
    """The walk of the rootfs of the bundle this command line names, if it is a walker's; nothing otherwise."""
    bundle = bundle_named(args)
    if bundle is None:
        return
    from pveoci.template import native

    if native.scanner() is None:  # a walk in Python could not be stopped at exit: leave it to the command
        return
    try:
        from pveoci.oci import bundle as bundles
        from pveoci.template import manifest

        rootfs = bundles.read(bundle).rootfs
        if rootfs is not None:
            manifest.ahead(manifest.Scanning(rootfs))
            atexit.register(manifest.stop_ahead)
    except Exception:  # the command finds and reports whatever is wrong, as it would have
        return


def bundle_named(args: Sequence[str]) -> str | None:
    """The bundle a walker's command line names (`-b DIR`, `-bDIR`, `--bundle DIR`, `--bundle=DIR`; else `.`),
    or None when it names no walker. A guess: the command line is parsed for real later."""
    words = list(args[:args.index("--")] if "--" in args else args)
    at = _command_at(words)
    if at is None:
        return None
    bundle = "."
    rest = iter(words[at:])
    for word in rest:
        if word in ("-b", "--bundle"):
            bundle = next(rest, bundle)
        elif word.startswith("--bundle="):
            bundle = word.partition("=")[2]
        elif word.startswith("-b") and not word.startswith("--"):
            bundle = word[2:]
    return bundle or None


def _command_at(words: list[str]) -> int | None:
    """Where a walker's options begin: after its name (the first word that is no global option or its value)."""
    names: list[str] = []
    rest = iter(enumerate(words))
    for i, word in rest:
        if word.startswith("-"):
            if word in VALUED:
                next(rest, None)
            continue
        names.append(word)
        if tuple(names) in WALKERS:
            return i + 1
        if not any(command[:len(names)] == tuple(names) for command in WALKERS):
            return None
    return None
