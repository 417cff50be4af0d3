"""The lifecycle use cases with OCI semantics: create, start, state, list, kill, delete, exec, pause, resume.

One code path whatever the backend. A container is found by its OCI id through the ownership
marker (a tag in /cluster/resources, the JSON block in its description), the cache only making
that faster. A create journals each step before doing it, so a failed or killed create is
rolled back, here or by the next command (or `pveoci gc`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pveoci import errors, hooks, marker, signals
from pveoci.backends.base import Backend, Guest
from pveoci.cache import Cache, Record

if TYPE_CHECKING:
    from pveoci.pve.client import PveClient
    from pveoci.settings import Settings

log = logging.getLogger("pveoci.runtime")

OCI_VERSION = "1.3.0"
ID_RE = re.compile(r"^[A-Za-z0-9_+.-]+$")
ID_MAX = 1024
TAG_STARTED = "pveoci-started"
TAG_PAUSED = "pveoci-paused"
VMID_ATTEMPTS = 12
STOP_TIMEOUT = 10

Progress = Callable[[str], None]


def id_tag(cid: str) -> str:
    """The short, tag-safe handle of an OCI id: ids may be long and have upper case, tags may not."""
    return "pveoci-id-" + hashlib.sha256(cid.encode()).hexdigest()[:12]


def check_id(cid: str) -> None:
    if not cid:
        raise errors.InvalidParameter("container id cannot be empty")
    if len(cid) > ID_MAX or not ID_RE.match(cid) or cid in (".", ".."):
        raise errors.InvalidParameter("invalid container ID format")


def rfc3339_now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond * 1000:09d}Z"


def oci_status(guest: Guest) -> str:
    if guest.lock == "create":
        return "creating"
    if guest.status == "running":
        return "paused" if TAG_PAUSED in guest.tags else "running"
    if guest.status == "unknown":
        return "unknown"
    return "stopped" if TAG_STARTED in guest.tags else "created"


@dataclass
class State:
    """The OCI state of a container, with pveoci's own fields under one key."""

    id: str
    status: str
    pid: int
    bundle: str
    created: str
    annotations: dict[str, str]
    cluster: str
    node: str
    vmid: int
    template: str
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ociVersion": OCI_VERSION, "id": self.id, "pid": self.pid if self.status in ("created", "running",
                                                                                      "paused") else 0,
            "status": self.status, "bundle": self.bundle, "rootfs": str(Path(self.bundle) / "rootfs"),
            "created": self.created, "owner": "",
        }
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        data["pveoci"] = {"cluster": self.cluster, "node": self.node, "vmid": self.vmid, "template": self.template}
        if self.cached:
            data["pveoci"]["cached"] = True
        return data


@dataclass(frozen=True)
class Located:
    guest: Guest
    record: Record


def is_vmid_race(exc: errors.PveociError) -> bool:
    """True for every form in which PVE says another client took the VMID first."""
    text = exc.message + " " + " ".join(getattr(exc, "errors", {}).values())
    if isinstance(exc, (errors.AlreadyExists, errors.Locked)):
        return True
    return any(s in text for s in ("already exists", "File exists", "got timeout", "CT is locked (create)"))


class Runtime:
    def __init__(self, backend: Backend, cache: Cache, *, settings: Settings, client: PveClient) -> None:
        self.backend = backend
        self.cache = cache
        self.settings = settings
        self.profile = settings.profile
        # The cache is kept per profile: a stable name for the cluster that works offline too.
        self.cluster = settings.profile.name
        self.client = client             # for templates (placement, storage, uploads)

    # --------------------------------------------------------------- finding

    def _locate(self, cid: str) -> Located | None:
        """The container with this OCI id: one status call when the cache knows it, else one cluster scan."""
        self.recover(cid)
        record = self.cache.get(cid, self.cluster)
        tag = id_tag(cid)
        if record is not None:
            try:
                guest = self.backend.status(record.node, record.vmid)
                if tag in guest.tags:
                    return Located(guest, record)
            except errors.NotFound:
                pass  # gone, or migrated: the cluster scan below says which
        for guest in self.backend.guests():
            if tag not in guest.tags:
                continue
            if guest.status == "unknown":
                raise errors.NodeOffline(f"node '{guest.node}' of container {cid} is offline", node=guest.node)
            found = self._adopt(guest, cid)
            if found is not None:
                status = self.backend.status(guest.node, guest.vmid)
                return Located(status, found)
        if record is not None:
            self.cache.drop(cid, self.cluster)  # its container is gone
        return None

    def _adopt(self, guest: Guest, cid: str | None = None) -> Record | None:
        """Read the marker of a pveoci container and mirror it into the cache."""
        config = self.backend.config(guest.node, guest.vmid)
        found = marker.parse(config.get("description"))
        if found is None or (cid is not None and found.id != cid):
            return None
        record = Record(id=found.id, cluster=self.cluster, node=guest.node, vmid=guest.vmid, bundle=found.bundle,
                        template=found.template, created=found.created, status=oci_status(guest),
                        annotations=dict(found.annotations), stop_signal=found.stop_signal)
        self.cache.put(record)
        return record

    def _require(self, cid: str) -> Located:
        check_id(cid)
        found = self._locate(cid)
        if found is None:
            raise errors.NotFound("container does not exist")
        return found

    def _state(self, found: Located, cached: bool = False) -> State:
        g, r = found.guest, found.record
        status = oci_status(g) if not cached else r.status
        pid = (g.pid or 0) if status in ("running", "paused") else 0
        if not cached and (r.status != status or r.pid != pid or r.node != g.node):
            r.status, r.pid, r.node = status, pid, g.node
            self.cache.put(r)
        return State(id=r.id, status=status, pid=pid, bundle=r.bundle, created=r.created,
                     annotations=r.annotations, cluster=self.cluster, node=g.node, vmid=g.vmid,
                     template=r.template, cached=cached)

    # ----------------------------------------------------------------- reads

    def state(self, cid: str, *, cached: bool = False) -> State:
        check_id(cid)
        if cached:
            record = self.cache.get(cid, self.cluster)
            if record is None:
                raise errors.NotFound("container does not exist")
            return self._state(Located(Guest(record.vmid, record.node, "unknown"), record), cached=True)
        try:
            return self._state(self._require(cid))
        except (errors.ConnectError, errors.NodeOffline) as exc:
            record = self.cache.get(cid, self.cluster)
            if record is None:
                raise
            log.warning("the cluster cannot be reached (%s); answering from the cache", exc.message)
            return self._state(Located(Guest(record.vmid, record.node, "unknown"), record), cached=True)

    def list_containers(self) -> list[State]:
        """Every pveoci container of the cluster: one cluster call when the cache knows them all."""
        self.recover()
        known = {(r.node, r.vmid): r for r in self.cache.all(self.cluster)}
        by_vmid = {r.vmid: r for r in known.values()}
        out = []
        seen: set[str] = set()
        for guest in self.backend.guests():
            if not marker.has_tag(" ".join(guest.tags)):
                continue
            record = by_vmid.get(guest.vmid)
            if record is None or id_tag(record.id) not in guest.tags:
                record = self._adopt(guest)
                if record is None:
                    continue
            seen.add(record.id)
            status = oci_status(guest)
            pid = 0
            if status in ("running", "paused"):
                pid = record.pid
                if not pid:
                    # /cluster/resources has no pid: ask once, then the cache knows it until the next start.
                    pid = self.backend.status(guest.node, guest.vmid).pid or 0
                    record.pid, record.status = pid, status
                    self.cache.put(record)
            out.append(State(id=record.id, status=status, pid=pid, bundle=record.bundle, created=record.created,
                             annotations=record.annotations, cluster=self.cluster, node=guest.node, vmid=guest.vmid,
                             template=record.template))
        for record in known.values():
            if record.id not in seen:
                self.cache.drop(record.id, self.cluster)
        return sorted(out, key=lambda s: s.id)

    # ---------------------------------------------------------------- create

    def create(self, cid: str, bundle_dir: Path, *, node: str | None = None, strict: bool = False,
               transport: str = "sftp", progress: Progress | None = None,
               on_pack: Callable[[int], None] | None = None,
               on_upload: Callable[[int], None] | None = None) -> State:
        from pveoci import planning
        from pveoci.oci.bundle import Bundle
        from pveoci.placement import choose_node
        from pveoci.template import push as pushing
        from pveoci.template.store import TemplateStore

        say = progress or (lambda _m: None)
        check_id(cid)
        if self._locate(cid) is not None:
            raise errors.AlreadyExists("container with given ID already exists")
        bundle = Bundle.load(bundle_dir)
        version = self.backend.version()
        plan = planning.plan_bundle(bundle, self.profile, container_id=cid, pve_version=version)
        plan.check(strict)
        unsupported = sorted({f.field for f in plan.unsupported})
        if unsupported:
            log.warning("%s: not supported by Proxmox, ignored (pveoci plan -b %s shows why)",
                        ", ".join(unsupported), bundle_dir)
        for finding in plan.warnings():
            log.info("%s: %s (%s)", finding.field, finding.detail, finding.status)
        target = choose_node(self.client, node or self.profile.node)
        op = self.cache.begin("create", cid, self.cluster, target)
        try:
            self.cache.step(op, "template")
            say(f"template for {bundle.path} on {target}")
            dest = TemplateStore(self.client).destination(target, self.profile.template_storage)
            pushed = pushing.push(self.client, self.settings, bundle, plan, dest, transport=transport,
                                  on_pack=on_pack, on_upload=on_upload)
            created = rfc3339_now()
            mark = marker.Marker(id=cid, bundle=str(bundle.path), template=pushed.result.volid,
                                 spec_digest=bundle.config_digest, created=created, host=socket.gethostname(),
                                 annotations=plan.annotations, stop_signal=plan.stop_signal)
            options = dict(plan.options)
            options.update(ostemplate=pushed.result.volid, description=marker.render(mark),
                           tags=";".join(sorted({marker.TAG, id_tag(cid)})))
            vmid = self._create_with_fresh_vmid(op, target, options, say)
            record = Record(id=cid, cluster=self.cluster, node=target, vmid=vmid, bundle=str(bundle.path),
                            template=pushed.result.volid, created=created, status="created",
                            annotations=plan.annotations, stop_signal=plan.stop_signal,
                            hooks=hooks.from_spec(bundle.spec.hooks))
            self.cache.put(record)
            made = self._state(Located(self.backend.status(target, vmid), record))
            hooks.run("prestart", record.hooks, made.to_json())
            hooks.run("createRuntime", record.hooks, made.to_json())
            self.cache.finish(op)
        except BaseException:
            self._rollback_quietly(op, cid)
            raise
        return made

    def _create_with_fresh_vmid(self, op: int, node: str, options: dict[str, Any], say: Progress) -> int:
        last: errors.PveociError | None = None
        for attempt in range(VMID_ATTEMPTS):
            vmid = self._pick_vmid()
            self.cache.step(op, "allocate", vmid=vmid)
            say(f"creating CT {vmid} on {node}")
            try:
                self.cache.step(op, "create", vmid=vmid)
                self.backend.create(node, vmid, options)
                return vmid
            except errors.PveociError as exc:
                if not is_vmid_race(exc):
                    raise
                log.info("VMID %s was taken meanwhile (%s); retrying (%d)", vmid, exc.message, attempt + 1)
                last = exc
        raise errors.AlreadyExists(f"could not get a free VMID after {VMID_ATTEMPTS} tries "
                                   f"({last.message if last else 'races lost'})")

    def _pick_vmid(self) -> int:
        rng = self.profile.vmid_range
        if not rng:
            return self.backend.next_vmid()
        low, _, high = str(rng).partition("-")
        used = self.backend.used_vmids()
        for vmid in range(int(low), int(high or low) + 1):
            if vmid not in used:
                return vmid
        raise errors.ConfigError(f"no free VMID left in vmid_range {rng}")

    # -------------------------------------------------------------- recovery

    def _rollback_quietly(self, op: int, cid: str) -> None:
        try:
            for step in self.cache.pending(self.cluster, cid):
                if step.op == op:
                    self._undo(step)
        except errors.PveociError as exc:
            log.warning("could not roll back the create of %s (%s); `pveoci gc` will retry", cid, exc.message)

    def _undo(self, step: Any) -> None:
        """Undo an unfinished create: remove its container (only if it is ours), its cache entry, its journal."""
        if step.vmid is not None and step.node:
            try:
                config = self.backend.config(step.node, step.vmid)
            except errors.NotFound:
                config = None
            found = marker.parse(config.get("description")) if config else None
            if found is not None and found.id == step.id:
                guest = self.backend.status(step.node, step.vmid)
                if guest.status == "running":
                    self.backend.stop(step.node, step.vmid)
                self.backend.destroy(step.node, step.vmid)
                log.info("rolled back the create of %s: removed CT %s on %s", step.id, step.vmid, step.node)
        self.cache.drop(step.id, self.cluster)
        self.cache.finish(step.op)

    def recover(self, cid: str | None = None) -> list[str]:
        """Roll back creates that were killed half-way (their process is gone); returns their ids."""
        undone = []
        for step in self.cache.pending(self.cluster, cid):
            if step.alive():
                continue
            self._undo(step)
            undone.append(step.id)
        return undone

    def gc(self) -> dict[str, list[str]]:
        """Finish what killed commands left behind: unfinished creates, cache entries of vanished containers."""
        undone = self.recover()
        self.list_containers()  # drops entries whose container is gone, adopts marked ones
        return {"rolled_back": undone}

    # ----------------------------------------------------------------- start

    def start(self, cid: str) -> State:
        found = self._require(cid)
        status = oci_status(found.guest)
        if status != "created":
            raise errors.PveociError(f"cannot start a container that is not created (it is {status})")
        g = found.guest
        self._set_tags(g, add=frozenset({TAG_STARTED}))
        self.backend.start(g.node, g.vmid)
        started = self._state(self._require(cid))
        hooks.run("poststart", found.record.hooks, started.to_json())
        return started

    def _set_tags(self, guest: Guest, add: frozenset[str] = frozenset(), remove: frozenset[str] = frozenset()) -> None:
        tags = (set(guest.tags) | set(add)) - set(remove)
        if tags != set(guest.tags):
            self.backend.set_options(guest.node, guest.vmid, {"tags": ";".join(sorted(tags))})

    # ------------------------------------------------------------------ kill

    def kill(self, cid: str, sig: str = "SIGTERM", *, timeout: int = STOP_TIMEOUT) -> None:
        name = normalise_signal(sig)
        found = self._require(cid)
        g = found.guest
        status = oci_status(g)
        if status == "created":
            # runc kills a created container's init; here there is none yet: it just becomes stopped.
            self._set_tags(g, add=frozenset({TAG_STARTED}))
            return
        if status not in ("running", "paused"):
            raise errors.PveociError("container not running")
        if status == "paused" and name != "SIGKILL":
            raise errors.PveociError("container is paused; resume it first (or send KILL)")
        if name == "SIGKILL":
            self.backend.stop(g.node, g.vmid)
        elif name in ("SIGTERM", found.record.stop_signal):
            self.backend.shutdown(g.node, g.vmid, timeout)
        else:
            if not g.pid:
                raise errors.PveociError(f"the cluster reports no pid for CT {g.vmid}; cannot send {name}")
            self.backend.signal(g.node, g.pid, name)
            return
        # It is stopped now: a pause does not outlive it.
        self._set_tags(self.backend.status(g.node, g.vmid), remove=frozenset({TAG_PAUSED}))

    # ---------------------------------------------------------------- delete

    def delete(self, cid: str, *, force: bool = False) -> None:
        check_id(cid)
        found = self._locate(cid)
        if found is None:
            if force:
                return
            raise errors.NotFound("container does not exist")
        g = found.guest
        status = oci_status(g)
        if status in ("running", "paused"):
            if not force:
                raise errors.PveociError(f"cannot delete container {cid} that is not stopped: {status}")
            self.backend.stop(g.node, g.vmid)
        self.backend.destroy(g.node, g.vmid)
        gone = self._state(found)
        gone.status, gone.pid = "stopped", 0
        self.cache.drop(cid, self.cluster)
        hooks.run("poststop", found.record.hooks, gone.to_json())

    # ------------------------------------------------------ pause and resume

    def pause(self, cid: str) -> None:
        found = self._require(cid)
        if oci_status(found.guest) != "running":
            raise errors.PveociError("container not running")
        self.backend.freeze(found.guest.node, found.guest.vmid)
        self._set_tags(found.guest, add=frozenset({TAG_PAUSED}))

    def resume(self, cid: str) -> None:
        found = self._require(cid)
        if oci_status(found.guest) != "paused":
            raise errors.PveociError("container not paused")
        self.backend.thaw(found.guest.node, found.guest.vmid)
        self._set_tags(found.guest, remove=frozenset({TAG_PAUSED}))

    # ------------------------------------------------------------------ exec

    def exec(self, cid: str, argv: list[str], *, tty: bool = False) -> int:
        if not argv:
            raise errors.InvalidParameter("exec needs a command")
        found = self._require(cid)
        if oci_status(found.guest) != "running":
            raise errors.PveociError("cannot exec in a stopped container")
        return self.backend.exec(found.guest.node, found.guest.vmid, argv, tty=tty)


    def ps(self, cid: str, ps_args: list[str]) -> tuple[str, list[int]]:
        """`ps` run in the container: its output, and the PIDs it lists (as the container sees them)."""
        found = self._require(cid)
        if oci_status(found.guest) not in ("running", "paused"):
            raise errors.PveociError("container not running")
        code, out, err = self.backend.capture(found.guest.node, found.guest.vmid, ["ps", *(ps_args or [])])
        if code != 0:
            raise errors.PveociError(f"ps in the container failed (exit {code}): "
                                     f"{err.decode(errors='replace').strip() or 'no ps in its rootfs?'}")
        text = out.decode(errors="replace")
        lines = text.splitlines()
        pids: list[int] = []
        if lines:
            header = lines[0].split()
            column = header.index("PID") if "PID" in header else 0
            for line in lines[1:]:
                words = line.split()
                if len(words) > column and words[column].isdigit():
                    pids.append(int(words[column]))
        return text, pids


def normalise_signal(value: str) -> str:
    name = signals.parse(value)
    if name is None:
        raise errors.InvalidParameter(f"unknown signal: {value}")
    return name


def write_pid_file(path: Path, pid: int) -> None:
    """Atomically, without a trailing newline, as runc writes it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(str(pid))
    tmp.replace(path)
