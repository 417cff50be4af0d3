"""fakepve, made to behave like a multi-node PVE where the bed needs it.

- `local` is a directory storage whose template list, on each node, is that node's real
  directory (what SFTP uploaded there), and a create from a template the node does not
  have fails as on PVE (fakepve accepts it);
- `/cluster/status` reports each node's own loopback address, so SSH goes where PVE says;
- `/nodes` reports the API certificate's real SHA-256 fingerprint.

It overrides a few of fakepve 0.5.0's private hooks, which is why that version is pinned.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from fakepve import FakePve
from fakepve.model import PveError, TaskError

# The node a request is for (the {node} of its path). Tasks started by the request copy it.
_node: contextvars.ContextVar[str | None] = contextvars.ContextVar("bed_node", default=None)

TEMPLATE_NAME = re.compile(r"^[^/.][^/]*\.tar(?:\.(gz|xz|zst|bz2))?$")
FORMATS = {"gz": "tgz", "xz": "txz", "zst": "tzst", "bz2": "tbz2", None: "tar"}


class BedPve(FakePve):
    def __init__(self, *, root: Path, addresses: dict[str, str], fingerprint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.node_addresses = dict(addresses)
        self.fingerprint = fingerprint
        # Every node's sshd bind-mounts its own directory here, so the path the API reports
        # for `local` holds different files on each node, as on real PVE.
        self.storage_path = str(root / "vz")
        self.storages["local"]["path"] = self.storage_path
        # A directory storage every node sees alike (NFS, CephFS in real life).
        self.shared_path = root / "shared"
        self.storages["shared"] = {"type": "dir", "active": 1, "content": "vztmpl,iso", "files": set(),
                                   "path": str(self.shared_path), "shared": 1}
        self.nodes = {name: {"online": True} for name in addresses}

    # --------------------------------------------------------------- per node

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node / "vz"

    def template_dir(self, node: str, storage: str = "local") -> Path:
        if storage == "shared":
            return self.shared_path / "template" / "cache"
        return self.node_dir(node) / "template" / "cache"

    def _template_dir(self, storage: str, node: str | None) -> Path | None:
        """The real directory behind a bed storage's templates, as `node` sees it; None if not a bed one."""
        if storage == "shared" or (storage == "local" and node):
            return self.template_dir(node or "", storage)
        return None

    async def _answer(self, request: Any, handler: Any, generic: Any, path_node: Any) -> Any:
        token = _node.set(path_node)
        try:
            return await super()._answer(request, handler, generic, path_node)
        finally:
            _node.reset(token)

    @staticmethod
    def _templates_in(folder: Path) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not folder.is_dir():
            return out
        for entry in sorted(folder.iterdir()):
            found = TEMPLATE_NAME.match(entry.name)
            if not found or not entry.is_file():
                continue
            info = entry.stat()
            out["vztmpl/" + entry.name] = {"content": "vztmpl", "format": FORMATS[found.group(1)],
                                           "size": info.st_size, "ctime": int(info.st_mtime)}
        return out

    def _volumes(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = super()._volumes(name)
        if name not in ("local", "shared"):
            return out
        out = {k: v for k, v in out.items() if not k.startswith("vztmpl/")}
        folder = self._template_dir(name, _node.get())
        if folder is not None:
            out.update(self._templates_in(folder))
        return out

    def volume_exists(self, volid: str) -> bool | None:
        sid, _, volname = str(volid).partition(":")
        if sid in ("local", "shared") and volname.startswith("vztmpl/"):
            return volname in self._volumes(sid)
        result: bool | None = super().volume_exists(volid)
        return result

    def store_file(self, storage: str, name: str, size: int, content: str = "iso") -> None:
        folder = self._template_dir(storage, _node.get())
        if folder is not None and content == "vztmpl" and self.uploaded:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".upload-{os.getpid()}-{time.monotonic_ns()}"
            partial.write_bytes(self.uploaded.get("data", b""))
            partial.replace(folder / name)
            return
        super().store_file(storage, name, size, content)

    async def _content_delete(self, v: dict[str, Any], user: str) -> Any:
        volume = str(v.get("volume", ""))
        volname = volume.split(":", 1)[1] if ":" in volume else volume
        sid = v.get("storage")
        folder = self._template_dir(sid, v["node"]) if sid and volname.startswith("vztmpl/") else None
        if folder is not None:
            self.require(user, f"/storage/{sid}", "Datastore.Allocate")
            path = folder / volname.split("/", 1)[1]

            async def body() -> str:
                try:
                    path.unlink()
                except FileNotFoundError:
                    raise TaskError(f"volume '{sid}:{volname}' does not exist") from None
                return f"Removed volume '{sid}:{volname}'"
            return await self.task(v["node"], "imgdel", sid, user, body, lock=False)
        return await super()._content_delete(v, user)

    # ------------------------------------------------------- cluster views

    async def _cluster_status(self, request: Any) -> web.Response:
        response = await super()._cluster_status(request)
        data = json.loads(response.text)
        for item in data["data"]:
            if item.get("type") == "node" and item.get("name") in self.node_addresses:
                item["ip"] = self.node_addresses[item["name"]]
        return web.json_response(data)

    async def _nodes(self, request: Any) -> web.Response:
        response = await super()._nodes(request)
        data = json.loads(response.text)
        for item in data["data"]:
            item["ssl_fingerprint"] = self.fingerprint
        return web.json_response(data)


__all__ = ["BedPve", "PveError", "TaskError"]
