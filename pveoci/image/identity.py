"""What names an image's content outside the image package: its fingerprint, and how messages describe it.

Kept apart from source.py so that a bundle's create or push (which asks "is this an image?" and describes what
it packs) does not import the image store, layers and config modules it has no use for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pveoci.image.source import Source
    from pveoci.template.manifest import Scan

#: A Scan's fingerprint for an image: `image:<manifest digest>:<arch>` (a rootfs's is its tree's).
FINGERPRINT = "image:"


def described(rootfs: Path, image: Source | None) -> str:
    """A bundle's content in a message: its rootfs, or its image."""
    return str(rootfs) if image is None else f"image {image.image.reference}"


def is_image(scanned: Scan) -> bool:
    return scanned.fingerprint.startswith(FINGERPRINT)
