"""OCI runtime bundles: the config.json model (`Spec`), loading a bundle from disk (`Bundle`), runc's default spec.

Both load when first named: the spec's models (pydantic) are a good part of a command's start, and reading a
bundle's config.json (oci.bundle.read) needs none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pveoci.oci.bundle import Bundle
    from pveoci.oci.runtime_spec import Spec

__all__ = ["Bundle", "Spec"]


def __getattr__(name: str) -> Any:
    if name == "Bundle":
        from pveoci.oci.bundle import Bundle

        return Bundle
    if name == "Spec":
        from pveoci.oci.runtime_spec import Spec

        return Spec
    raise AttributeError(f"module 'pveoci.oci' has no attribute {name!r}")
