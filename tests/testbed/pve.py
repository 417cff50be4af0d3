"""fakepve, made to behave like a multi-node PVE where the bed needs it.

- `local` is a directory storage whose template list, on each node, is that node's real
  directory (what SFTP uploaded there), and a create from a template the node does not
  have fails as on PVE (fakepve accepts it);
- `/cluster/status` reports each node's own loopback address, so SSH goes where PVE says;
- `/nodes` reports the API certificate's real SHA-256 fingerprint;
- with `lxc_enabled` on, containers run for real (tests/testbed/lxc.py): a create unpacks the template,
  start/stop/shutdown/suspend/resume/reboot/migrate/destroy drive lxc-* commands, and every status read
  (status/current, the node's CT list, /cluster/resources) says what LXC says;
- an HA migration of a real container (`hamigrate`) ends once requested, as PVE's does, and the move
  happens afterwards (`ha_move_delay` seconds later), with the CT's `hastate` `migrate` meanwhile;
- PVE 9.1's OCI support (tests/testbed/oci.py): `oci-registry-pull` runs the real skopeo into the node's template
  directory (an `ociregistrypull` task), `query-oci-repo-tags` lists tags with it, and a create from an OCI archive
  (with the LXC mode on) makes the rootfs from the image's layers and its config into CT options;
- each node reports the load a test gives it (`node_load`: mem, maxmem, cpu, maxcpu in /nodes and
  /cluster/resources; fakepve reports the same for every node), and the nodes in `maintenance` carry
  `hastate: maintenance` in /cluster/resources, as PVE's HA manager reports a node in maintenance mode.

It overrides a few of fakepve 0.5.0's private hooks, which is why that version is pinned.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from fakepve import FakePve
from fakepve.lxc import FakeCt
from fakepve.model import PveError, TaskError

from tests.testbed import oci
from tests.testbed.lxc import RUNNING_STATES, LxcError, LxcHost

# The node a request is for (the {node} of its path). Tasks started by the request copy it.
_node: contextvars.ContextVar[str | None] = contextvars.ContextVar("bed_node", default=None)
# The parameters of the container request being answered, for the task it starts.
_params: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("bed_params", default=None)

# What runs a real container's task: (ct, fakepve's own body, the request's parameters, the task log).
_Action = Callable[[Any, Callable[[], Awaitable[Any]], dict[str, Any], list[str]], Awaitable[Any]]

NODE_STATUS = re.compile(r"^/api2/json/nodes/[^/]+/status$")
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
        # Real containers (LXC) for what vzcreate makes while this is on; see tests/testbed/lxc.py.
        self.lxc_enabled = False
        self.node_load: dict[str, dict[str, Any]] = {}    # node -> its /nodes fields to report (mem, cpu, ...)
        self.maintenance: set[str] = set()                # nodes in HA maintenance mode
        self.ha_move_delay = 0.5                          # seconds from an HA migration's request to its move
        self.lxc = LxcHost(root)
        # The CA certificates (a directory of *.crt) the nodes' skopeo trusts: the bed's stand-in for a node's
        # system CA store, which a real node would have the registry's CA in. Set by tests; None: system CAs only.
        self.oci_cert_dir: Path | None = None
        self._lxc_tasks: set[asyncio.Task[Any]] = set()

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
            response = await super()._answer(request, handler, generic, path_node)
        finally:
            _node.reset(token)
        if request.method == "GET" and NODE_STATUS.match(request.path) and getattr(response, "status", 0) == 200:
            response = self._real_kernel(response)
        return response

    @staticmethod
    def _real_kernel(response: Any) -> Any:
        """A node's status names its kernel's machine as PVE's does (`uname -m`): the bed's nodes are this host."""
        data = json.loads(response.text)
        info = os.uname()
        data["data"]["current-kernel"] = {"machine": info.machine, "release": info.release,
                                          "sysname": info.sysname, "version": info.version}
        return web.json_response(data)

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

    # ------------------------------------------------------- OCI registries

    def _routes_oci(self) -> list[tuple[str, str, Any]]:
        """PVE 9.1's pull from a registry (pve-storage Status.pm oci_registry_pull) and tag list (pve-manager
        Nodes.pm query_oci_repo_tags); fakepve checks their parameters and privileges against PVE's schema."""
        return [("POST", "/nodes/{node}/storage/{storage}/oci-registry-pull", self._oci_registry_pull),
                ("GET", "/nodes/{node}/query-oci-repo-tags", self._query_oci_repo_tags)]

    def _skopeo_home(self, node: str) -> Path:
        return self.root / "nodes" / node / "home"

    async def _oci_registry_pull(self, v: dict[str, Any], user: str) -> str:
        """The checks before the worker, in PVE's order and words, then an `ociregistrypull` task that runs
        `skopeo copy docker://REF oci-archive:<template dir>/<name>.tar.tmp.<pid>` and renames the file."""
        if not Path(oci.SKOPEO).is_file():
            raise PveError(500, "Install 'skopeo' to pull OCI images from registries.")
        node, storage, reference = v["node"], v["storage"], v["reference"]
        store = self._check_enabled(storage, node)
        if store.get("path") is None:
            raise PveError(500, f"can't upload to storage type '{store.get('type')}', not a file based storage!")
        if "vztmpl" not in re.split(r"[\s,;]+", str(store.get("content") or "")):
            raise PveError(500, f"storage '{storage}' is not configured for content-type 'vztmpl'")
        filename = oci.normalize_content_filename(v.get("filename") or reference) + ".tar"
        temporary = f"{filename}.tmp.{os.getpid()}"  # PVE's $$: the API process, before it forks the worker
        folder = self._template_dir(storage, node)
        if folder is None:
            raise PveError(500, f"the test bed pulls OCI images into 'local' and 'shared' only, not '{storage}'")
        self._active_store(storage, node)
        if (folder / filename).is_file():
            raise PveError(500, f"refusing to override existing file '{filename}'")
        # The path as the node sees it (every node's `local` is mounted at storage_path) names the command in
        # the task's error; skopeo writes to that node's own directory.
        shown_dir = f"{store['path']}/template/cache"
        words = ["copy", f"docker://{reference}", f"oci-archive:{folder / temporary}"]
        shown = oci.cmd2string(["skopeo", "copy", f"docker://{reference}", f"oci-archive:{shown_dir}/{temporary}"])

        async def pull(log: list[str]) -> None:
            oci.refuse_remote(reference)
            folder.mkdir(parents=True, exist_ok=True)
            argv = oci.skopeo_argv(words, self.oci_cert_dir, "--src-cert-dir")
            await oci.run_logged(argv, shown, log, oci.skopeo_env(self._skopeo_home(node)))
            try:
                (folder / temporary).rename(folder / filename)
            except OSError as exc:
                raise TaskError(f"unable to rename temporary file: {exc.strerror}") from exc
        # PVE's worker id is encode_text(filename): the normalised name has nothing left to encode.
        return await self._in_background(node, "ociregistrypull", filename, user, pull)

    async def _query_oci_repo_tags(self, v: dict[str, Any], user: str) -> list[str]:
        if not Path(oci.SKOPEO).is_file():
            raise PveError(500, "Install 'skopeo' to list tags from OCI registries.")
        reference = v["reference"]
        try:
            oci.refuse_remote(reference)
            return await oci.list_tags(reference, self.oci_cert_dir, oci.skopeo_env(self._skopeo_home(v["node"])))
        except LxcError as exc:
            raise PveError(500, str(exc)) from exc

    # --------------------------------------------------- real containers

    @staticmethod
    def is_real(ct: Any) -> bool:
        """True for a container that runs in LXC (made by a vzcreate while lxc_enabled was on)."""
        return bool(getattr(ct, "bed_lxc", False))

    def _lxc_handler(self, fn: Any) -> Any:
        async def with_params(user: str, v: dict[str, Any]) -> Any:
            token = _params.set(v)
            try:
                return await fn(user, v)
            finally:
                _params.reset(token)
        return super()._lxc_handler(with_params)

    def _lxc_refresh(self, ct: Any) -> None:
        """A real container that PVE thinks running but whose process ended is stopped; its pid is real."""
        if not self.is_real(ct) or ct.status != "running":
            return
        state, pid = self.lxc.state(ct.node, ct.vmid)
        if state in RUNNING_STATES:
            ct.pid = pid or ct.pid
        elif state not in ("STARTING", "UNKNOWN"):
            ct.status, ct.pid = "stopped", None

    def _lxc_sync(self, ct: Any) -> None:
        """After a failed action: status and pid exactly as LXC has them."""
        state, pid = self.lxc.state(ct.node, ct.vmid, fresh=True)
        ct.status, ct.pid = ("running", pid) if state in RUNNING_STATES else ("stopped", None)

    def ct(self, vmid: Any) -> Any:
        found = super().ct(vmid)
        if found is not None:
            self._lxc_refresh(found)
        return found

    def _status(self, ct: Any) -> dict[str, Any]:
        self._lxc_refresh(ct)
        data: dict[str, Any] = super()._status(ct)
        return data

    def ct_resources(self, user: str, kind: Any = None) -> list[dict[str, Any]]:
        for ct in self.cts:
            self._lxc_refresh(ct)
        data: list[dict[str, Any]] = super().ct_resources(user, kind)
        return data

    async def task(self, node: str, ttype: str, tid: Any, user: str, body: Any, vm: Any = None, lock: bool = True,
                   log: Any = ()) -> str:
        """fakepve's task; for a real container, its body is followed by what LXC must do."""
        action = self._lxc_action(ttype, vm)
        if action is None:
            upid: str = await super().task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)
            return upid
        params = dict(_params.get() or {})

        async def real(task_log: list[str]) -> Any:
            return await action(vm, body, params, task_log)
        return await self._in_background(node, ttype, tid, user, real, vm=vm, lock=lock, log=log)

    async def _in_background(self, node: str, ttype: str, tid: Any, user: str,
                             work: Callable[[list[str]], Awaitable[Any]], *, vm: Any = None, lock: bool = True,
                             log: Any = ()) -> str:
        """fakepve's task with the body work(its task log), run in the background even at time_scale 0, as PVE's
        fork_worker does: the request answers with the UPID at once and the client polls (a shutdown may take its
        whole timeout, a pull as long as the registry). lxc_cleanup ends it."""
        record: dict[str, list[str]] = {}

        async def body() -> Any:
            me = asyncio.current_task()
            if me is not None:
                self._lxc_tasks.add(me)
            try:
                return await work(record["log"])
            except LxcError as exc:
                record["log"].extend(exc.log)
                raise TaskError(str(exc)) from exc
            except asyncio.CancelledError:
                raise TaskError("interrupted: the test bed was reset") from None
            except (TaskError, PveError):
                raise
            except Exception as exc:
                raise TaskError(f"test bed error: {exc!r}") from exc
            finally:
                if me is not None:
                    self._lxc_tasks.discard(me)

        scale = self.time_scale
        self.time_scale = scale or 1e-6  # fakepve runs a task in the background when time passes
        try:
            upid: str = await super().task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)
        finally:
            self.time_scale = scale
        record["log"] = self.tasks[upid]["log"]  # the body runs later: the log it appends to
        return upid

    def _lxc_action(self, ttype: str, vm: Any) -> _Action | None:
        if not isinstance(vm, FakeCt):
            return None
        if ttype == "vzcreate":
            return self._real_create if self.lxc_enabled else None
        if not self.is_real(vm):
            return None
        actions: dict[str, _Action] = {
            "vzstart": self._real_start, "vzstop": self._real_stop, "vzshutdown": self._real_shutdown,
            "vzsuspend": self._real_suspend, "vzreboot": self._real_reboot, "vzmigrate": self._real_migrate,
            "vzdestroy": self._real_destroy, "hamigrate": self._real_ha_migrate,
        }
        return actions.get(ttype)

    def _template_file(self, volid: str, node: str) -> Path:
        sid, colon, volname = volid.partition(":")
        if not colon:
            return Path(volid)  # a path on the node (root@pam only)
        folder = self._template_dir(sid, node)
        if folder is None or not volname.startswith("vztmpl/"):
            raise LxcError(f"the test bed cannot unpack '{volid}': only templates on 'local' and 'shared'")
        return folder / volname.split("/", 1)[1]

    async def _run_ct(self, ct: Any) -> None:
        ct.status, ct.pid = "stopped", None
        pid = await self.lxc.start(ct.node, ct.vmid, ct.config)
        ct.status, ct.pid, ct.started_at = "running", pid, time.time()

    async def _real_create(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        note = await original()  # fakepve's checks and the config; a failure already reads "unable to create CT"
        start = ct.status == "running"  # create with start=1
        ct.status, ct.pid = "stopped", None
        try:
            template = self._template_file(str(params.get("ostemplate", "")), ct.node)
            if await oci.is_oci_archive(template):
                await self._create_from_oci(ct, template, log)
            else:
                log.append(f"extracting archive '{template}'")
                await self.lxc.create(ct.node, ct.vmid, template)
        except (LxcError, OSError) as exc:
            await self.lxc.remove(ct.node, ct.vmid)
            self._drop(ct)
            raise TaskError(f"unable to create CT {ct.vmid} - {exc}") from exc
        ct.bed_lxc = True
        if start:
            await self._run_ct(ct)
        return note

    async def _create_from_oci(self, ct: Any, archive: Path, log: list[str]) -> None:
        """create_vm's OCI branch (tests/testbed/oci.py): the rootfs from the image's layers, then its config mapped
        onto the CT's."""
        log.append("Detected OCI archive")
        image = await self.lxc.create(ct.node, ct.vmid, archive, fill=oci.unpack_image)
        rootfs = self.lxc.rootfs(ct.node, ct.vmid)
        loop = asyncio.get_running_loop()
        config, said = await loop.run_in_executor(None, oci.ct_config, ct.config, image, rootfs)
        log.extend(said)
        ct.config = config

    async def _real_start(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        note = await original()
        await self._run_ct(ct)
        return note

    async def _real_stop(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        note = await original()
        try:
            await self.lxc.stop(ct.node, ct.vmid)
        finally:
            self._lxc_sync(ct)
        return note

    def _timeout(self, params: dict[str, Any], default: int) -> int:
        value = params.get("timeout")
        return int(value) if value not in (None, "") else default

    async def _real_shutdown(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        note = await original()
        force = str(params.get("forceStop", "")).lower() in ("1", "true", "yes", "on")
        try:
            await self.lxc.shutdown(ct.node, ct.vmid, self._timeout(params, self.shutdown_default_timeout), force)
        finally:
            self._lxc_sync(ct)
        return note

    async def _real_suspend(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        pid = ct.pid
        note = await original()  # fakepve's checks; it models PVE's lxc-checkpoint, which stops the CT
        ct.status, ct.pid, ct.checkpoint = "running", pid, False
        await self.lxc.freeze(ct.node, ct.vmid)
        return note

    async def _lxc_resume(self, user: str, v: dict[str, Any]) -> Any:
        ct = self._here(v)
        if ct is None or not self.is_real(ct) or self.lxc.state(ct.node, ct.vmid, fresh=True)[0] != "FROZEN":
            return await super()._lxc_resume(user, v)

        async def thaw() -> None:
            try:
                await self.lxc.thaw(ct.node, ct.vmid)
            except LxcError as exc:
                raise TaskError(str(exc)) from exc
        return await super().task(v["node"], "vzresume", v["vmid"], user, thaw)

    async def _real_reboot(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        running = ct.status == "running"
        note = await original()
        if running:
            ct.status, ct.pid = "stopped", None
            await self.lxc.shutdown(ct.node, ct.vmid, self._timeout(params, self.shutdown_default_timeout), True)
            await self._run_ct(ct)
        return note

    async def _real_migrate(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        source, running = ct.node, ct.status == "running"
        note = await original()  # fakepve moves the CT to the target node
        if ct.node != source:
            ct.status, ct.pid = "stopped", None
            if running:
                await self.lxc.shutdown(source, ct.vmid, self._timeout(params, 180), True)
            await self.lxc.move(source, ct.node, ct.vmid)
            if running:
                await self._run_ct(ct)
        return note

    async def _real_ha_migrate(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        """PVE's hamigrate task only hands the request to the HA manager; the move comes later."""
        state = ct.ha_state

        async def later() -> None:
            try:
                await asyncio.sleep(self.ha_move_delay)
                await self._real_migrate(ct, original, params, [])
            finally:
                ct.ha_state = state

        ct.ha_state = "migrate"
        moving = asyncio.ensure_future(later())
        self._lxc_tasks.add(moving)  # lxc_cleanup waits for it (or cancels it)
        moving.add_done_callback(self._lxc_tasks.discard)
        return None

    async def _real_destroy(self, ct: Any, original: Any, params: dict[str, Any], log: list[str]) -> Any:
        note = await original()  # refuses a running CT unless force
        await self.lxc.remove(ct.node, ct.vmid)  # with force: lxc-stop -k first
        return note

    async def lxc_cleanup(self) -> None:
        """Stop every real container (lxc-stop -k), end their tasks and remove their files."""
        busy = [t for t in self._lxc_tasks if not t.done()]
        for t in busy:
            t.cancel()
        if busy:
            await asyncio.wait(busy, timeout=30)
        await self.lxc.cleanup()

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
            if item.get("status") == "online":
                item.update(self.node_load.get(item["node"], {}))
        return web.json_response(data)

    async def _resources(self, request: Any) -> web.Response:
        response = await super()._resources(request)
        data = json.loads(response.text)
        for item in data["data"]:
            if item.get("type") != "node":
                continue
            if item.get("status") == "online":
                item.update(self.node_load.get(item["node"], {}))
            if item["node"] in self.maintenance:
                item["hastate"] = "maintenance"
        return web.json_response(data)


__all__ = ["BedPve", "PveError", "TaskError"]
