"""A bundle for a command that walks its rootfs (create, place, template push): its config.json read once, and
the rootfs's stat walk under way from the moment config.json names the rootfs (or the walk the command's start
began, cli/prefetch.py), while the spec is validated and the caller does the rest of its checks in the block;
a check that fails stops the walk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pveoci.oci import bundle as bundles
from pveoci.oci.bundle import Bundle
from pveoci.template import manifest


@contextmanager
def walking(bundle_dir: Path | str) -> Iterator[tuple[Bundle, manifest.Scanning]]:
    """The bundle, validated, and its rootfs's walk (`.result()` waits for it); BundleError as Bundle.load."""
    config = bundles.read(bundle_dir)
    # A root.path that names no directory: parse() says why, before any walk.
    with manifest.scanning(config.rootfs or config.parse().rootfs) as walk:
        yield config.parse(), walk
