"""The runtime: everything pveoci does, as typed methods over a backend it does not know.

`pveoci.connect()` builds one; the command line is a front end to it. Each method is one OCI
operation (create, start, state, kill, delete, ...) or one of pveoci's own (templates, nodes,
doctor, gc), implemented by the modules of this package over the protocols in
pveoci.backends.base, whatever backend is plugged in.
"""

from __future__ import annotations

import builtins
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from pveoci import errors
from pveoci.backends.base import Backend
from pveoci.cache import Cache
from pveoci.models import Check, Destination, Guest, Node, PushResult, Template
from pveoci.progress import SILENT, Progress
from pveoci.runtime.context import Context
from pveoci.runtime.ids import check_id
from pveoci.settings import Settings

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest
    from pveoci.image.store import Image
    from pveoci.lxc.mapping import Plan
    from pveoci.lxc.resource_update import ResourceUpdate
    from pveoci.models import GcReport, Migration, MoveReport, Placement, ProcessTable, StandIn, State, Stats
    from pveoci.oci.bundle import Bundle
    from pveoci.oci.runtime_spec import Resources
    from pveoci.process import ProcessSpec
    from pveoci.runtime.imageupdate import ImageUpdate
    from pveoci.template import manifest

log = logging.getLogger("pveoci.runtime")

#: Seconds a container made by pveoci 0.1 gets to shut down on TERM (runtime.transitions).
STOP_TIMEOUT = 10

#: What a create does with the bundle's findings (what Proxmox cannot honour, or only approximately): log them to
#: the `pveoci.findings` logger (unsupported fields as one warning, each approximation at info), or not at all.
FindingsMode = Literal["log", "quiet"]
FINDINGS: tuple[FindingsMode, ...] = ("log", "quiet")


def _image(value: str | ImageRequest | None) -> ImageRequest | None:
    """An image reference as the request create and pull take (the image's own process, default access)."""
    if value is None or not isinstance(value, str):
        return value
    from pveoci.image.source import ImageRequest

    return ImageRequest(value)


def _findings(value: str) -> FindingsMode:
    if value not in FINDINGS:
        raise errors.InvalidParameter(f"findings={value!r}: one of 'log', 'quiet'")
    return "log" if value == "log" else "quiet"


def _names(value: str | Iterable[str] | None) -> builtins.list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else builtins.list(value)


class Templates:
    """pveoci's content-addressed templates on the cluster's storages (`rt.templates`)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def push(self, bundle: Path | str = ".", *, node: str | None = None, storage: str | None = None,
             transport: str = "sftp", strict: bool = False, progress: Progress = SILENT,
             image: str | ImageRequest | None = None) -> PushResult:
        """Pack the bundle's rootfs (or the image's layers) into its template and upload it unless the storage
        has it already.

        The same code path as `create`: the template a create of this bundle would use, on the node
        it would go to (`node`, else the profile's node; `auto` picks one).
        """
        ctx = self._ctx
        from pveoci.runtime import push
        from pveoci.runtime.walking import walking

        push.check_transport(transport)
        wanted = node or ctx.profile.node
        request = _image(image)
        try:
            if request is not None:
                from pveoci.runtime import nodeimage

                found = None if wanted == "auto" else self._node_facts(wanted, storage)
                loaded, scanned = nodeimage.load(ctx, request, found[0] if found else push.likely_arch(ctx, None),
                                                 note=progress.note)
                return self._push(loaded, scanned, found, strict=strict, storage=storage, transport=transport,
                                  progress=progress)
            # The stat walk (the packer's scan, a process of its own) starts as soon as the rootfs is known, and
            # runs while the rest is checked (the spec and its mapping: the rootfs's size does not change what a
            # mapping refuses) and the node looked up and, on a workstation new to it, logged in to (its
            # architecture): they overlap instead of adding up. A check that fails stops the walk.
            with walking(bundle) as (loaded, walk):
                from pveoci.runtime import plans

                plans.check_mapping(ctx, loaded, "container", size=0)
                # A named node this cache knows: checked to be an online node of the cluster only when the push
                # has to ask it something (an unchanged rootfs whose template is known there asks nothing).
                found, check = None, None
                if wanted != "auto":
                    found = self._remembered(wanted, storage)
                    if found is None:
                        found = self._node_facts(wanted, storage)
                    else:
                        check = functools.partial(self._node_facts, wanted, storage)
                scanned = walk.result()
            return self._push(loaded, scanned, found, strict=strict, storage=storage, transport=transport,
                              progress=progress, check_node=check)
        except errors.NodeOffline:
            from pveoci.runtime import facts

            facts.nodes_changed(ctx)
            raise

    def _node_facts(self, node: str, storage: str | None, *, named: bool = True) -> tuple[str, Destination]:
        """A node's architecture and template storage (cache, else the cluster): what a push needs of it; `named`:
        the user's, checked to be an online node of the cluster (placement's choice is one)."""
        from pveoci.runtime import facts, push
        from pveoci.runtime.placement import choose_node

        ctx = self._ctx
        target = choose_node(facts.nodes(ctx), node) if named else node
        return push.node_arch(ctx, target), facts.destination(ctx, target, storage or ctx.profile.template_storage)

    def _remembered(self, node: str, storage: str | None) -> tuple[str, Destination] | None:
        """What _node_facts would give for a named node, from the cache alone; None if it lacks any of it."""
        from pveoci.runtime import facts, push

        ctx = self._ctx
        arch = push.remembered_arch(ctx, node)
        dest = facts.remembered_destination(ctx, node, storage or ctx.profile.template_storage)
        return (arch, dest) if arch is not None and dest is not None else None

    def _push(self, loaded: Bundle, scanned: manifest.Scan, found: tuple[str, Destination] | None, *, strict: bool,
              storage: str | None, transport: str, progress: Progress,
              check_node: Callable[[], object] | None = None) -> PushResult:
        from pveoci.runtime import plans, push

        ctx = self._ctx
        plan = plans.plan_for(ctx, loaded, "container", strict=strict, warn=False, size=scanned.size)
        if found is None:  # where a create of it would go: templates land only where containers do
            from pveoci.runtime import survey

            target = survey.place(ctx, survey.ask_for(ctx, plan), str(loaded.rootfs)).node
            found = self._node_facts(target, storage, named=False)
        arch, dest = found
        if loaded.image is not None and loaded.image.arch != arch:   # placed on a node unlike the one guessed
            from pveoci.image import source

            loaded, scanned = source.for_arch(loaded, scanned, arch, note=progress.note)
            plan = plans.plan_for(ctx, loaded, "container", strict=strict, warn=False, size=scanned.size)
        if loaded.image is not None and loaded.image.on_node:   # the node pulls it: the template is made there
            from pveoci.runtime import nodeimage

            loaded, scanned, made = nodeimage.ready(ctx, loaded, scanned, plan, dest.node, arch, progress,
                                                    dest.storage)
            plan = plans.plan_for(ctx, loaded, "container", strict=strict, warn=False, size=scanned.size)
            if made is not None:   # the node made it (or found it): what the push did
                return made
        return push.ensure(ctx, loaded, plan, dest, arch=arch, transport=transport, progress=progress,
                           scanned=scanned, before_asking=check_node)

    def list(self, *, node: str | None = None, storage: str | None = None) -> builtins.list[Template]:
        """pveoci's templates on every online node (or `node`), each with the ids of the containers made from it."""
        from pveoci.runtime import listing, templates

        found = templates.listing(self._ctx, node, storage)
        return templates.with_users(found, listing.list_containers(self._ctx))

    def remove(self, name: str, *, node: str | None = None, storage: str | None = None,
               force: bool = False) -> Template:
        """Remove a template (InUse while containers made from it exist, unless force); returns what went."""
        from pveoci.runtime import templates

        found = templates.select(self.list(node=node, storage=storage), name, node,
                                 storage or self._ctx.profile.template_storage)
        return templates.remove(self._ctx, found, force=force)

    def gc(self, *, dry_run: bool = False) -> builtins.list[Template]:
        """Remove every pveoci template no container was made from, on every online node; returns them."""
        from pveoci.runtime import templates

        unused = [t for t in self.list() if not t.used_by]
        if not dry_run:
            for t in unused:
                templates.remove(self._ctx, t, force=False)
            templates.sweep(self._ctx)
        return unused


class Runtime:
    """pveoci's Python API: OCI containers on a Proxmox VE cluster. Make one with `pveoci.connect()`.

    Methods raise subclasses of `pveoci.errors.PveociError` (each with its exit code); they
    return the typed values of `pveoci.models`. One Runtime may be shared by several threads.

    `findings`: what create and run do with what the bundle asks and Proxmox cannot honour ("log": to
    the `pveoci.findings` logger; "quiet": nothing); each call may say otherwise (`findings=`).
    """

    def __init__(self, backend: Backend, cache: Cache, settings: Settings, *, findings: FindingsMode = "log") -> None:
        self._ctx = Context(backend=backend, cache=cache, settings=settings)
        self._findings = _findings(findings)
        #: The templates on the cluster: push, list, remove, gc.
        self.templates = Templates(self._ctx)

    @property
    def findings(self) -> FindingsMode:
        """This runtime's default for create's and run's findings: "log" or "quiet" (settable)."""
        return self._findings

    @findings.setter
    def findings(self, value: FindingsMode) -> None:
        self._findings = _findings(value)

    def _warn(self, findings: FindingsMode | None) -> bool:
        return (self._findings if findings is None else _findings(findings)) == "log"

    @property
    def settings(self) -> Settings:
        """The effective settings (profile) this runtime was made with."""
        return self._ctx.settings

    @property
    def backend(self) -> Backend:
        """The backend that carries the runtime's requests to the cluster."""
        return self._ctx.backend

    def close(self) -> None:
        """Release the backend's connections and this thread's cache connection."""
        self._ctx.backend.close()
        self._ctx.cache.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ lifecycle

    def create(self, id: str, bundle: Path | str = ".", *, node: str | None = None, strict: bool = False,
               transport: str = "sftp", progress: Progress = SILENT, exclude: Iterable[str] = (),
               on_placement: Callable[[Placement], None] | None = None, findings: FindingsMode | None = None,
               stand_in: StandIn | None = None, image: str | ImageRequest | None = None) -> State:
        """Create a container from a bundle, or an image, without starting it (OCI `create`); its state (`created`).

        Packs the rootfs into a content-addressed template, uploads it unless the node has it,
        takes a VMID from the cluster and creates the container. `node` (default: the profile's) is a
        node's name or `auto`: the best scored node that can take it, never one in `exclude` (see
        `place`); `on_placement` is given every node's score. AlreadyExists if the id is taken,
        BundleError for a bad bundle, MappingError (strict) for what Proxmox cannot do, NoSuitableNode
        when no node can take it; on any failure nothing is left behind. What Proxmox cannot honour is
        logged to `pveoci.findings` unless `findings="quiet"` (default: the runtime's `findings`).
        `stand_in` (a StandIn): leave a stand-in for the process on this machine, as runc's create leaves its
        init (see stand_in()), before the prestart hooks run, so that every state shows its pid.
        `image`: an image reference (or an ImageRequest: with overrides of its process and registry access)
        instead of the bundle: pulled on this machine (`pull`), its layers packed into its template once.
        ImageError when it cannot be pulled or used.
        """
        from pveoci.runtime import create as creating
        from pveoci.runtime.locate import to_state

        made = creating.create(self._ctx, id, Path(bundle), node=node, strict=strict, transport=transport,
                               progress=progress, exclude=exclude, on_placement=on_placement,
                               warn=self._warn(findings), stand_in=stand_in, image=_image(image))
        return to_state(self._ctx, made)

    def start(self, id: str) -> State:
        """Start a created container (OCI `start`): its process runs. NotCreated unless it is `created`."""
        from pveoci.runtime import recovery, transitions

        recovery.recover(self._ctx, id)
        return transitions.start(self._ctx, id)

    def run(self, id: str, bundle: Path | str = ".", *, node: str | None = None, strict: bool = False,
            transport: str = "sftp", progress: Progress = SILENT, exclude: Iterable[str] = (),
            on_placement: Callable[[Placement], None] | None = None, findings: FindingsMode | None = None,
            stand_in: StandIn | None = None, image: str | ImageRequest | None = None) -> State:
        """Create and start (runc `run --detach`); a container that cannot start is deleted again. The arguments
        are create's."""
        from pveoci.runtime import create as creating
        from pveoci.runtime import transitions

        made = creating.create(self._ctx, id, Path(bundle), node=node, strict=strict, transport=transport,
                               progress=progress, exclude=exclude, on_placement=on_placement,
                               warn=self._warn(findings), stand_in=stand_in, image=_image(image))
        try:
            return transitions.start(self._ctx, id, made)  # what the create just learnt: not asked again
        except errors.PveociError:
            self.delete(id, force=True)
            raise

    def run_attached(self, id: str, bundle: Path | str = ".", *, stdout: IO[bytes] | None = None,
                     stderr: IO[bytes] | None = None, keep: bool = False, node: str | None = None,
                     strict: bool = False, transport: str = "sftp", progress: Progress = SILENT,
                     exclude: Iterable[str] = (), on_placement: Callable[[Placement], None] | None = None,
                     findings: FindingsMode | None = None, image: str | ImageRequest | None = None) -> int:
        """runc's `run` in the foreground: create, start once attached, stream the process's stdout and stderr
        to these binary streams until it ends, delete the container (unless `keep`); the process's exit status
        (128+N when a signal N ended it). The other arguments are create's."""
        self.create(id, bundle, node=node, strict=strict, transport=transport, progress=progress, exclude=exclude,
                    on_placement=on_placement, findings=findings, image=image)
        try:
            return self.attach(id, stdout=stdout, stderr=stderr, start=True)
        finally:
            if not keep:
                self.delete(id, force=True)

    def attach(self, id: str, *, stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None,
               start: bool = False) -> int:
        """Stream the running process's output (from its start) until it ends; its exit status. With `start`,
        a created container is started once the stream is attached, so nothing it writes is missed."""
        from pveoci.runtime import processes

        return processes.attach(self._ctx, id, stdout=stdout, stderr=stderr,
                             start=(lambda: self.start(id)) if start else None)

    def logs(self, id: str, *, stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None,
             follow: bool = False) -> int | None:
        """What the container's process wrote, to these binary streams, whether it runs or stopped; with
        `follow`, until it ends. Its exit status once it ended (None while it runs, or if none was kept)."""
        from pveoci.runtime import processes

        return processes.logs(self._ctx, id, stdout=stdout, stderr=stderr, follow=follow)

    def wait(self, id: str, *, timeout: float | None = None) -> int:
        """Wait until the container's process has ended; its exit status (128+N when a signal N ended it), as
        `run` in the foreground and `logs -f` exit with it.

        A created container is waited for too: until it is started and its process ends (or a signal ends its
        init). OperationTimeout after `timeout` seconds (None: as long as it takes); NotFound for an unknown
        id; Unsupported for a container made by pveoci 0.1 (it kept no status); PveociError for one stopped
        from outside pveoci (`pct stop`), which ends it with no status. `state(id)` then gives its final state.
        """
        from pveoci.retry import Backoff, poll
        from pveoci.runtime import processes

        check_id(id)

        def ended() -> State | None:
            current = self.state(id)
            # The cache's answer (the cluster unreachable) cannot tell that the process ended: ask again.
            return current if current.status == "stopped" and not current.cached else None

        final = poll(ended, timeout=float("inf") if timeout is None else timeout, what=f"container {id}",
                     backoff=Backoff(first=0.2, factor=1.5, cap=2.0))
        return processes.exit_status(self._ctx, final)

    def state(self, id: str, *, cached: bool = False) -> State:
        """The container's OCI state. NotFound ("container does not exist") for an unknown id.

        With `cached`, or when the cluster cannot be reached, the local cache answers (State.cached).
        """
        from pveoci.runtime import recovery
        from pveoci.runtime.locate import require, to_state

        check_id(id)
        if cached:
            return self._cached_state(id)
        try:
            recovery.recover(self._ctx, id)
            return to_state(self._ctx, require(self._ctx, id))
        except (errors.ConnectError, errors.NodeOffline) as exc:
            if self._ctx.cache.get(id, self._ctx.cluster) is None:
                raise
            log.warning("the cluster cannot be reached (%s); answering from the cache", exc.message)
            return self._cached_state(id)

    def _cached_state(self, id: str) -> State:
        from pveoci.runtime.locate import Located, to_state

        record = self._ctx.cache.get(id, self._ctx.cluster)
        if record is None:
            raise errors.NotFound("container does not exist")
        return to_state(self._ctx, Located(Guest(record.vmid, record.node, "unknown"), record), cached=True)

    def list(self, *, node: str | Iterable[str] | None = None, status: str | Iterable[str] | None = None,
             annotations: Mapping[str, str | None] | None = None) -> builtins.list[State]:
        """Every pveoci container of the cluster, sorted by id (also reconciles the local cache); only those on
        `node` (a name, or any of several), in `status` (likewise), and carrying every one of `annotations`
        (key -> value, or None for any value), when given."""
        from pveoci.runtime import listing, recovery

        recovery.recover(self._ctx)
        keep = listing.Filters(nodes=frozenset(_names(node)), statuses=frozenset(_names(status)),
                               annotations=tuple((annotations or {}).items()))
        return [s for s in listing.list_containers(self._ctx) if keep.keep(s)]

    def kill(self, id: str, signal: str = "SIGTERM", *, all_processes: bool = False,
             timeout: int = STOP_TIMEOUT) -> None:
        """Send a signal (OCI `kill`): a name with or without SIG, any case, or a number; returns at once.

        To the process (TERM runs its handler, KILL ends it), or with `all_processes` to every process of
        the container; to a created container's init, which ends as the signal says. NotRunning for a
        stopped container. (`timeout`: containers made by pveoci 0.1 only, whose TERM is a shutdown.)
        """
        from pveoci.runtime import recovery, transitions

        recovery.recover(self._ctx, id)
        transitions.kill(self._ctx, id, signal, all_processes=all_processes, timeout=timeout)

    def delete(self, id: str, *, force: bool = False) -> None:
        """Delete a stopped container and what create made for it (OCI `delete`).

        NotStopped for one that is not stopped (created, running or paused: the runtime-spec's
        rule) unless `force`, which stops it first; with `force` an unknown id is not an error.
        """
        from pveoci.runtime import recovery, transitions
        from pveoci.runtime.locate import locate

        check_id(id)
        recovery.recover(self._ctx, id)
        transitions.delete(self._ctx, locate(self._ctx, id), id, force=force)

    def pause(self, id: str) -> None:
        """Freeze every process of a running container (runc `pause`)."""
        from pveoci.runtime import transitions

        transitions.pause(self._ctx, id)

    def resume(self, id: str) -> None:
        """Thaw a paused container (runc `resume`)."""
        from pveoci.runtime import transitions

        transitions.resume(self._ctx, id)

    def update(self, id: str, resources: Resources | Mapping[str, object], *,
               findings: FindingsMode | None = None) -> ResourceUpdate:
        """Change a container's resource limits where it runs (runc `update`); what was asked of Proxmox.

        `resources` is a runtime-spec `linux.resources` document (a dict, as `runc update --resources` reads it)
        or its model (`pveoci.oci.runtime_spec.Resources`). runc's rules: a value of 0 or none leaves that limit
        as it is. memory.limit and memory.swap (memory plus swap), cpu.quota/period, cpu.shares and cpu.cpus
        become the options a create would have made of them (memory, swap, cpulimit, cpuunits, cores), which
        Proxmox applies to the running container at once; a quota of -1 lifts the CPU limit. BundleError for a
        document that is not one; Unsupported for what Proxmox has no option for (pids, blockIO, ...), naming each;
        MappingError for a value it cannot take; NotFound for an unknown id; NotRunning for a stopped container:
        each before anything changes. Approximations, and what no update changes (devices, ...), are logged to
        `pveoci.findings` unless `findings="quiet"` (default: the runtime's `findings`).
        """
        from pveoci.oci.runtime_spec import Resources, parse_resources
        from pveoci.runtime import recovery
        from pveoci.runtime import resources as limits

        check_id(id)
        wanted = resources if isinstance(resources, Resources) else parse_resources(resources, where="resources")
        recovery.recover(self._ctx, id)
        return limits.update(self._ctx, id, wanted, warn=self._warn(findings))

    def update_image(self, id: str, image: str | ImageRequest, *, dry_run: bool = False, grace: float = 3.0,
                     keep: Iterable[str] = (), transport: str = "sftp", progress: Progress = SILENT,
                     findings: FindingsMode | None = None) -> ImageUpdate:
        """Move a container to another image in place (`pveoci update --image`), keeping what is its own: its id,
        VMID, node, mount points and their data, network (MAC address), resources and annotations.

        The image is pulled for the container's node and its template sent there (once); the process stops (its stop
        signal, 10 s), the root filesystem's content is swapped for the image's on the node (mount points stay), the
        container gets the image's process (with `image`'s overrides, as for create: give again what create was
        given) and starts again: a created container stays created, a running or stopped one is started and watched
        for `grace` seconds. If it does not start, or its process ends within them, the old image and config come
        back and it starts as it was: RolledBack. Killed at any moment, the next command for this id here, or
        another update from anywhere, finishes or undoes it. What the old tree has at the image's volumes (VOLUME)
        and at the absolute paths of `keep` stays, as mount points do. `dry_run`: what would change (process, size),
        and nothing done. Paused for a paused container; Unsupported for one made by pveoci 0.1; ImageError when the
        image cannot be pulled or used. Returns what changed (ImageUpdate, its `state` the container's after).
        """
        from pveoci.runtime import imageupdate, push, recovery

        check_id(id)
        push.check_transport(transport)
        if grace < 0:
            raise errors.InvalidParameter(f"grace={grace!r}: seconds, 0 or more")
        request = _image(image)
        assert request is not None
        recovery.recover(self._ctx, id)
        return imageupdate.update_image(self._ctx, id, request, dry_run=dry_run, grace=grace, keep=list(keep),
                                        transport=transport, progress=progress, warn=self._warn(findings))

    def stand_in(self, id: str, *, stdin: bool = False, console_socket: str | None = None) -> int | None:
        """Leave a stand-in for the container's process on this machine, as runc's `create` leaves its init
        (docs/engines.md): a process of its own, holding this process's stdin, stdout and stderr, that writes the
        process's output to them as it comes (across dropped connections), relays its stdin to it with `stdin`
        (for a container made with `stdin`), and exits with its status; killing it leaves the container
        running. With `console_socket` (a container made with `pty`), its streams are instead a new pty's
        slave, whose master goes to that socket as runc sends it. Its pid, which `state` then reports; None
        when no command of this machine reaches the backend's cluster (the in-memory one)."""
        from pveoci.models import StandIn
        from pveoci.runtime import standins

        return standins.leave_for(self._ctx, id, StandIn(stdin=stdin, console_socket=console_socket))

    def exec_stand_in(self, id: str, argv: builtins.list[str], *, tty: bool = False, console_socket: str | None = None,
                      env: builtins.list[str] | None = None, cwd: str | None = None, user: str | None = None,
                      process: ProcessSpec | None = None) -> int | None:
        """runc's `exec --detach` as engines use it: a stand-in on this machine runs argv in the container (as
        `exec` does, with these options) with this process's streams, or with a terminal whose master goes to
        the engine's `console_socket`, and exits with its status. Its pid; None as for stand_in."""
        from pveoci.runtime import processes, standins

        options = processes.ExecOptions(env=tuple(env or ()), cwd=cwd, user=user, process=process)
        if console_socket is None:
            return standins.for_exec(self._ctx, id, list(argv), options, tty=tty)
        from pveoci.standin.console import open_console

        slave = open_console(console_socket)
        try:
            return standins.for_exec(self._ctx, id, list(argv), options, tty=True, streams=(slave, slave, slave))
        finally:
            os.close(slave)

    def exec(self, id: str, argv: builtins.list[str], *, tty: bool = False, stdin: IO[bytes] | None = None,
             stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None, env: builtins.list[str] | None = None,
             cwd: str | None = None, user: str | None = None, process: ProcessSpec | None = None) -> int:
        """Run a program in a container (created or running) as runc does; returns its exit status.

        It gets the bundle's environment, user, groups, working directory and limits, changed by `env`
        (KEY=VALUE, added or replacing), `cwd`, `user` ("UID[:GID]") or a whole `process` (runc's exec -p;
        its args are ignored). Its output goes to the binary streams given (io.BytesIO() captures it;
        None drops it); `stdin` is read to its end and sent (None: no input). `tty` gives it a terminal.
        """
        from pveoci.runtime import processes

        options = processes.ExecOptions(env=tuple(env or ()), cwd=cwd, user=user, process=process)
        return processes.exec_in(self._ctx, id, list(argv), options, tty=tty, stdin=stdin, stdout=stdout,
                              stderr=stderr)

    def exec_detached(self, id: str, argv: builtins.list[str], *, env: builtins.list[str] | None = None,
                      cwd: str | None = None, user: str | None = None, process: ProcessSpec | None = None) -> int:
        """Start a program in the container and return at once (runc's exec --detach): its PID in the container."""
        from pveoci.runtime import processes

        options = processes.ExecOptions(env=tuple(env or ()), cwd=cwd, user=user, process=process)
        return processes.exec_detached(self._ctx, id, list(argv), options)

    def stats(self, id: str) -> Stats:
        """The container's use of resources now, as Proxmox reports it (runc's `events --stats`): `.guest` holds the
        figures, `.to_json()` is runc's event. NotRunning unless it is created, running or paused."""
        from pveoci.runtime import figures

        return figures.stats(self._ctx, id)

    def events(self, id: str, *, interval: float = 5.0) -> Iterator[Stats]:
        """The container's figures every `interval` seconds, the first after one interval, until it stops or is
        deleted (runc's `events`); a round the cluster cannot answer is skipped with a warning. NotRunning at the
        first `next()` unless it is created, running or paused; leave the loop whenever you like."""
        from pveoci.runtime import figures

        check_id(id)
        return figures.events(self._ctx, id, interval)

    def ps(self, id: str, args: builtins.list[str] | None = None) -> ProcessTable:
        """`ps` run in the container (with `args`): its output and the PIDs it lists."""
        from pveoci.runtime import processes

        text, pids = processes.ps(self._ctx, id, list(args or []))
        from pveoci.models import ProcessTable

        return ProcessTable(output=text, pids=tuple(pids))

    # ---------------------------------------------------------------- cluster

    def nodes(self) -> builtins.list[Node]:
        """The cluster's nodes, with load and storages."""
        return self._ctx.backend.nodes()

    def checks(self) -> Iterator[Check]:
        """`doctor`'s checks of this profile against the cluster, one at a time as they finish."""
        return self._ctx.backend.checks()

    def doctor(self) -> builtins.list[Check]:
        """All of `doctor`'s checks; ChecksFailed is not raised here (look for status "fail")."""
        return list(self.checks())

    def place(self, bundle: Path | str = ".", *, id: str = "container", exclude: Iterable[str] = (),
              strict: bool = False) -> Placement:
        """Where `create` would put a container of this bundle now, and why: every node's score (or why it was
        rejected). Changes nothing. NoSuitableNode (with .placement) when no node can take it."""
        from pveoci.runtime import create as creating
        from pveoci.runtime import plans, survey
        from pveoci.runtime.walking import walking

        with walking(bundle) as (loaded, walk):
            scanned = walk.result()
        plan = plans.plan_for(self._ctx, loaded, id, strict=strict, warn=False, size=scanned.size)
        hint = creating.template_hint(self._ctx, loaded, scanned, plan)
        return survey.place(self._ctx, survey.ask_for(self._ctx, plan, exclude), id, hint)

    def plan(self, bundle: Path | str = ".", *, id: str = "container", strict: bool = False,
             image: str | ImageRequest | None = None) -> Plan:
        """What the bundle (or the image, pulled) would become on this cluster (PVE options, a finding per field);
        changes nothing on the cluster."""
        from pveoci.oci.bundle import Bundle
        from pveoci.runtime import plans

        request = _image(image)
        if request is None:
            return plans.plan_for(self._ctx, Bundle.load(bundle), id, strict=strict)
        from pveoci.image import source
        from pveoci.runtime import push

        loaded, scanned = source.load(request, push.likely_arch(self._ctx, None))
        return plans.plan_for(self._ctx, loaded, id, strict=strict, size=scanned.size)

    def pull(self, image: str | ImageRequest, *, node: str | None = None) -> Image:
        """Pull an image into this machine's image store for the architecture of `node` (default: the profile's;
        known here, or asked), as `create --image` would; the image (its digest, config, layers). ImageError when
        it cannot be pulled."""
        from pveoci.image.store import Store
        from pveoci.runtime import push

        request = _image(image)
        assert request is not None
        wanted = node or self._ctx.profile.node
        arch = push.node_arch(self._ctx, wanted) if wanted not in (None, "auto") else push.likely_arch(self._ctx, None)
        return Store(access=request.access).pull(request.parsed, arch)

    def gc(self, *, images_unused_for: float | None = None) -> GcReport:
        """Finish what killed commands left: roll back half-made creates, finish moves (a moved container's
        process started again), drop cache entries of vanished containers and the packs of rootfs paths that are
        gone, remove what killed uploads left on the nodes' template storage (and what killed node pulls left: a
        temporary container or an image archive, after an hour); forget the images of this machine's image store
        no create used for `images_unused_for` seconds (default 30 days), with what only they had."""
        from pveoci.image.store import UNUSED_MAX, Store
        from pveoci.runtime import listing, nodeimage, push, recovery, templates
        from pveoci.runtime import migrate as moving

        undone = recovery.recover(self._ctx)
        moving.finish_all(self._ctx)
        before = {r.id for r in self._ctx.cache.all(self._ctx.cluster)}
        after = {s.id for s in listing.list_containers(self._ctx)}
        swept = templates.sweep(self._ctx) + nodeimage.sweep(self._ctx)
        forgotten = push.forget_gone(self._ctx)   # before the images: a pruned image's packs are forgotten next time
        bundles = {r.bundle for r in self._ctx.cache.all(self._ctx.cluster)}
        images, freed = Store().prune(UNUSED_MAX if images_unused_for is None else images_unused_for, bundles)
        from pveoci.models import GcReport

        return GcReport(rolled_back=tuple(undone), dropped=tuple(sorted(before - after)), swept=tuple(swept),
                        forgotten_packs=forgotten, images=tuple(images), image_bytes=freed)

    # ------------------------------------------------------------------ moves

    def migrate(self, id: str, node: str = "auto", *, restart: bool = True, dry_run: bool = False,
                exclude: Iterable[str] = (), progress: Progress = SILENT) -> Migration:
        """Move a container to another node (`auto`: where placement puts it, never its own or an excluded one).

        A preflight through the API comes first (the target online, not in maintenance, allowed by Proxmox
        and HA, the storages there, no local mounts); a failing one raises MoveRefused (NodeOffline for an
        offline target, NotFound for no such node) before anything changes. A running container moves in
        restart mode (its process starts again there; `restart=False` refuses to stop it), a stopped one
        offline, an HA-managed one through HA. The task's log goes to `progress`. With dry_run, only the
        preflight: the Migration says what would happen ("would move").
        """
        from pveoci.runtime import migrate as moving

        check_id(id)
        return moving.migrate(self._ctx, id, node, restart=restart, dry_run=dry_run, exclude=exclude,
                              progress=progress)

    def drain(self, node: str, *, to: str = "auto", parallel: int = 1, dry_run: bool = False,
              exclude: Iterable[str] = (), on_move: Callable[[Migration], None] | None = None) -> MoveReport:
        """Move every pveoci container off `node`: to `to`, or each where placement puts it (`auto`), `parallel`
        at a time. One Migration per container (a refused or failed one does not stop the others), each also
        given to `on_move` as it ends. Run again after an interruption, it finishes what was left."""
        from pveoci.runtime import drain

        return drain.drain(self._ctx, node, to=to, parallel=parallel, dry_run=dry_run, exclude=exclude,
                           on_move=on_move)

    def rebalance(self, *, max_moves: int = 10, dry_run: bool = False, exclude: Iterable[str] = (),
                  parallel: int = 1, on_move: Callable[[Migration], None] | None = None) -> MoveReport:
        """Move containers so that the nodes' placement scores even out; never more than max_moves. The report
        has the spread (best minus worst node score) before and after."""
        from pveoci.runtime import rebalance

        return rebalance.rebalance(self._ctx, max_moves=max_moves, dry_run=dry_run, exclude=exclude,
                                   parallel=parallel, on_move=on_move)
