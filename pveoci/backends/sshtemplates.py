"""Templates on a node's storage, for every backend that reaches the nodes over SSH: listed through the API's
paths, sent over SFTP (from a file, or streamed while packing), deltas rebuilt on the node, claims, and the
sweep of what killed uploads left. Each backend adds how a template is removed (and the API's own upload)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pveoci import errors
from pveoci.backends.base import Claim, TemplateUpload
from pveoci.models import Destination, Template
from pveoci.pve import cluster
from pveoci.ssh import SshConnector

if TYPE_CHECKING:  # types only: a command that sends no template does not load the packer
    from pveoci.template.delta import Delta
    from pveoci.template.pack import Packed


class SshTemplates:
    """TemplateStorage (pveoci.backends.base) but remove_template, which each backend's own part adds."""

    def __init__(self, ssh: SshConnector, reader: cluster.Reader) -> None:
        """`ssh`: the connections to the nodes; `reader`: the API's paths (HTTP, or pvesh on a node)."""
        self.ssh = ssh
        self.reader = reader

    def template_destination(self, node: str, storage: str) -> Destination:
        return cluster.template_destination(self.reader, node, storage)

    def templates(self, dest: Destination) -> list[Template]:
        return cluster.templates(self.reader, dest)

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        from pveoci.template.sftp import upload as sftp_upload

        return sftp_upload(self.ssh, packed, dest, progress)

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        from pveoci.template.stream import SftpStream

        return SftpStream(self.ssh, dest, progress)

    def upload_delta(self, packed: Packed, base: str, delta: Delta, dest: Destination, *,
                     progress: Callable[[int], None]) -> int:
        if dest.directory is None:
            raise errors.Unsupported(f"deltas need SSH to the node's template directory ({dest.storage})")
        from pveoci.template.node_delta import send_delta

        return send_delta(self.ssh, dest, packed, base, delta, progress)

    def claim_template(self, dest: Destination, key: str) -> Claim:
        if dest.directory is None:  # no SSH way to the storage (API uploads): claims within this machine
            from pveoci.template.claims import LocalClaim

            return LocalClaim(dest, key)
        from pveoci.template.node_claim import RemoteClaim

        return RemoteClaim(self.ssh, dest, key)

    def sweep_templates(self, dest: Destination) -> list[str]:
        from pveoci.template.sweep import sweep

        return sweep(self.ssh, dest) if dest.directory is not None else []
