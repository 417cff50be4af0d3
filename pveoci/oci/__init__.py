"""OCI runtime bundles: the config.json model (`Spec`), loading a bundle from disk (`Bundle`), runc's default spec."""

from pveoci.oci.bundle import Bundle
from pveoci.oci.runtime_spec import Spec

__all__ = ["Bundle", "Spec"]
