"""Where templates live on the cluster: find them, upload what is missing (never twice), remove them.

Shared storage holds one copy for every node; node-local storage one per node. What is
on a storage is always asked of Proxmox (its content list), never assumed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pveoci import errors
from pveoci.pve.client import PveClient
from pveoci.template.pack import NAME_PREFIX, SUFFIX, Packed

log = logging.getLogger("pveoci.template")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Destination:
    """A template storage as seen from one node."""

    node: str
    storage: str
    shared: bool
    # Where the storage keeps templates on the node's filesystem (None: not a file storage we can reach).
    directory: str | None

    def volid(self, name: str) -> str:
        return f"{self.storage}:vztmpl/{name}"


@dataclass(frozen=True)
class TemplateInfo:
    node: str
    storage: str
    volid: str
    name: str
    size: int
    ctime: int
    shared: bool

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "storage": self.storage, "volid": self.volid, "name": self.name,
                "size": self.size, "ctime": self.ctime, "shared": self.shared}


@dataclass(frozen=True)
class PushResult:
    destination: Destination
    volid: str
    uploaded: bool
    bytes_sent: int


class Uploader(Protocol):
    """A way to get a packed template onto a node: SFTP (the default) or the Proxmox upload API."""

    name: str

    def upload(self, packed: Packed, dest: Destination, progress: Progress | None) -> int:
        """Put packed on dest atomically and verified; returns the bytes sent."""
        ...


def is_pveoci_template(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith(SUFFIX)


def _content_dir(config: dict[str, Any]) -> str:
    """The vztmpl directory below the storage path: `template/cache`, unless content-dirs moves it."""
    for item in str(config.get("content-dirs") or "").split(","):
        kind, _, where = item.partition("=")
        if kind.strip() == "vztmpl" and where.strip():
            return where.strip().strip("/")
    return "template/cache"


class TemplateStore:
    def __init__(self, client: PveClient) -> None:
        self.client = client

    def destination(self, node: str, storage: str) -> Destination:
        """The storage on that node, checked: it exists there, is active and takes templates."""
        found = {s["storage"]: s for s in self.client.node_storages(node)}
        item = found.get(storage)
        if item is None:
            raise errors.NotFound(f"storage '{storage}' is not available on node '{node}' "
                                  f"(there: {', '.join(sorted(found)) or 'none'})")
        if "vztmpl" not in str(item.get("content", "")).split(","):
            raise errors.ConfigError(f"storage '{storage}' does not hold container templates (content vztmpl)")
        if not item.get("active", 1):
            raise errors.ApiError(f"storage '{storage}' is not active on node '{node}'")
        config = self.client.get("storage", storage)
        path = config.get("path")
        directory = f"{str(path).rstrip('/')}/{_content_dir(config)}" if path else None
        return Destination(node=node, storage=storage, shared=bool(item.get("shared")), directory=directory)

    def list(self, node: str, storage: str, *, shared: bool = False) -> list[TemplateInfo]:
        """pveoci's templates on a storage, as that node's Proxmox lists them."""
        items = self.client.get("nodes", node, "storage", storage, "content", content="vztmpl")
        out = []
        for item in items:
            name = str(item["volid"]).split("/", 1)[-1]
            if is_pveoci_template(name):
                out.append(TemplateInfo(node=node, storage=storage, volid=str(item["volid"]), name=name,
                                        size=int(item.get("size") or 0), ctime=int(item.get("ctime") or 0),
                                        shared=shared))
        return sorted(out, key=lambda t: t.name)

    def find(self, dest: Destination, name: str) -> TemplateInfo | None:
        return next((t for t in self.list(dest.node, dest.storage, shared=dest.shared) if t.name == name), None)

    def ensure(self, packed: Packed, dest: Destination, uploader: Uploader,
               progress: Progress | None = None) -> PushResult:
        """Upload unless the storage has it already (content-addressed names make that safe)."""
        volid = dest.volid(packed.name)
        present = self.find(dest, packed.name)
        if present is not None:
            log.info("%s is on %s (%s) already; nothing to send", packed.name, dest.storage, dest.node)
            return PushResult(dest, volid, uploaded=False, bytes_sent=0)
        sent = uploader.upload(packed, dest, progress)
        landed = self.find(dest, packed.name)
        if landed is None:
            raise errors.ApiError(f"{volid} was uploaded but node '{dest.node}' does not list it")
        if landed.size != packed.size:
            raise errors.ApiError(f"{volid} on node '{dest.node}' has {landed.size} bytes, "
                                  f"{packed.size} were sent")
        return PushResult(dest, volid, uploaded=True, bytes_sent=sent)

    def remove(self, dest: Destination, name: str) -> None:
        if not is_pveoci_template(name):
            raise errors.NotFound(f"'{name}' is not a pveoci template name (pveoci-<digest>.tar.zst)")
        if self.find(dest, name) is None:
            raise errors.NotFound(f"template {name} does not exist on {dest.storage} ({dest.node})")
        self.client.wait(self.client.delete("nodes", dest.node, "storage", dest.storage, "content",
                                            dest.volid(name)))
