"""Making sure a bundle's template is on a storage: what create and `template push` share.

The rootfs's fingerprint (a stat walk) names what the last pack of it made; if that template is
on the storage, nothing is packed or sent. A rootfs at a path never packed before is looked for by
its likeness (template/manifest.py): a pack of an alike tree remembered here, or a template of its
likeness on the storage (another workstation's). Otherwise one create claims the work on the storage
(the others wait for it), packs, and sends: only the frames a previous version of the template
on the node lacks (a delta), or the whole template while it is still being packed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pveoci import errors
from pveoci.backends.base import Claim
from pveoci.models import Destination, PushResult, Template
from pveoci.progress import Progress
from pveoci.runtime import facts
from pveoci.runtime.context import Context
from pveoci.template import delta, manifest
from pveoci.template.pack import DIGEST_CHARS, ExtraFile, Packed, name_parts, pack, template_name

if TYPE_CHECKING:
    from pveoci.image.source import Source
    from pveoci.lxc.mapping import Plan
    from pveoci.oci.bundle import Bundle

log = logging.getLogger("pveoci.template")

TRANSPORTS = ("sftp", "api")
CLAIM_WAIT = 3600.0           # as long as another create's upload may take
MEMORY = "@templates"         # the cache's space for what packs made (not a cluster's)
ARCH_MAX_AGE = 24 * 3600.0    # a node's architecture, remembered for a day


def default_work_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("pveoci") / "templates"


def node_arch(ctx: Context, node: str) -> str:
    """The init architecture of a node (amd64, arm64); Unsupported for any other, before anything is sent."""
    from pveoci import init

    machine = _kept_machine(ctx, node)
    if machine is None:
        machine = ctx.backend.node_machine(node)
        ctx.cache.remember(ctx.facts_scope, f"machine:{node}", machine)
    try:
        return init.arch_for(machine)
    except ValueError as exc:
        raise errors.Unsupported(f"node '{node}' is {machine}: {exc}") from None


def remembered_arch(ctx: Context, node: str) -> str | None:
    """The node's init architecture as the cache has it, asking nothing (None: not kept, too old, or none)."""
    from pveoci import init

    machine = _kept_machine(ctx, node)
    try:
        return init.arch_for(machine) if machine is not None else None
    except ValueError:
        return None


def _kept_machine(ctx: Context, node: str) -> str | None:
    machine = ctx.cache.recall(ctx.facts_scope, f"machine:{node}", ARCH_MAX_AGE)
    return machine if isinstance(machine, str) else None


def likely_arch(ctx: Context, node: str | None) -> str:
    """The architecture a create will most likely need, before any node is asked: the named node's as known
    here, else any node's of this cluster known here, else this machine's (a cluster's nodes are alike)."""
    from pveoci import init
    from pveoci.image.source import workstation_arch

    known = [value for key, value in ctx.cache.facts(ctx.facts_scope)
             if key.startswith("machine:") and isinstance(value, str) and (node in (None, "auto")
                                                                          or key == f"machine:{node}")]
    for machine in known:
        try:
            return init.arch_for(machine)
        except ValueError:
            continue
    return workstation_arch()


def known_template(ctx: Context, rootfs: Path, scanned: manifest.Scan, arch: str, legacy_init: bool) -> str | None:
    """The name of the template the last pack of this rootfs (as scanned) for arch made, or of an alike tree's
    when this path was never packed; None if none is known here."""
    from pveoci import init

    key = manifest.key(scanned.fingerprint, arch, init.digest(arch), legacy_init)
    packed = manifest.from_json(ctx.cache.recall(MEMORY, f"pack:{key}", float("inf")))
    if packed is None and ctx.cache.recall(MEMORY, lineage(rootfs, arch, legacy_init), float("inf")) is None:
        packed = manifest.from_json(ctx.cache.recall(MEMORY, f"like:{like_key(rootfs, scanned, arch, legacy_init)}",
                                                     float("inf")))
    return packed.name if packed is not None else None


def lineage(rootfs: Path, arch: str, legacy_init: bool) -> str:
    """The cache's key for the last pack made of whatever is at this path."""
    return f"latest:{Path(rootfs).resolve()}:{arch}:{int(legacy_init)}"


def like_key(rootfs: Path, scanned: manifest.Scan, arch: str, legacy_init: bool) -> str:
    """The likeness of the tree, with what else goes into its template (as manifest.key); an image's is its
    manifest's digest, so any workstation that packs that image names its template alike."""
    from pveoci import init
    from pveoci.image.identity import is_image

    what = scanned.fingerprint if is_image(scanned) else manifest.likeness(rootfs, scanned)
    return manifest.key(f"like:{what}", arch, init.digest(arch), legacy_init)


def template_files(rootfs: Path, arch: str, legacy_init: bool, image: Source | None = None) -> list[ExtraFile]:
    """What pveoci adds to a rootfs in its template: its init for the node's architecture, the directory
    the init keeps its state in, and, for PVE before 9.1 (no entrypoint option), /sbin/init pointing at it.

    Nothing of the process: that travels with the container, so one template serves every bundle of a rootfs.
    """
    from pveoci import init

    files = [ExtraFile(init.INIT_PATH.lstrip("/"), init.binary(arch), 0o755),
             ExtraFile(init.RUN_DIR.lstrip("/"), mode=0o711, directory=True)]
    if legacy_init:
        files += _sbin_init(_sbin_of(rootfs) if image is None else image.sbin(), init.INIT_PATH)
    return files


def _sbin_of(rootfs: Path) -> str | None:
    """Where /sbin is in this rootfs, following /sbin -> usr/sbin as the container would ("" for the root), None
    when there is none."""
    from pveoci.oci.rootfs import resolve_in_root

    sbin = resolve_in_root(rootfs, "/sbin")
    if sbin is None:
        return None
    if not sbin.is_dir():
        raise errors.BundleError(f"rootfs {rootfs}: /sbin is not a directory, so PVE before 9.1 cannot start "
                                 "pveoci's init as /sbin/init")
    where = sbin.relative_to(rootfs).as_posix()
    return "" if where == "." else where


def _sbin_init(where: str | None, target: str) -> list[ExtraFile]:
    """LXC starts /sbin/init: replace what that path names (`where` /sbin is) by a link to pveoci's init, so the
    rootfs's own init never runs instead."""
    if where is None:
        return [ExtraFile("sbin", mode=0o755, directory=True), ExtraFile("sbin/init", link=target)]
    return [ExtraFile(f"{where}/init" if where else "init", link=target)]


class Job:
    """One rootfs for one storage: what it is called in the cache, what is known of it."""

    def __init__(self, ctx: Context, rootfs: Path, arch: str, legacy: bool, dest: Destination,
                 scanned: manifest.Scan, image: Source | None = None) -> None:
        from pveoci import init

        self.ctx, self.rootfs, self.arch, self.legacy, self.dest = ctx, rootfs, arch, legacy, dest
        self.image = image   # an image's layers, packed instead of the directory rootfs
        self.scanned = scanned
        self.size = scanned.size
        self.entries = scanned.entries or None   # the walk a pack reuses (none: it walks the tree itself)
        self.key = manifest.key(scanned.fingerprint, arch, init.digest(arch), legacy)
        self.lineage = lineage(rootfs, arch, legacy)
        self.like = ""   # the likeness key, once asked (alike())

    def remembered(self, key: str) -> Packed | None:
        return manifest.from_json(self.ctx.cache.recall(MEMORY, key, float("inf")))

    def remember(self, packed: Packed) -> None:
        data = manifest.to_json(packed)
        if packed.like:
            self.ctx.cache.remember(MEMORY, f"like:{packed.like}", data)
        data["path"] = str(Path(self.rootfs).resolve())   # what forget_gone() looks for
        self.ctx.cache.remember(MEMORY, f"pack:{self.key}", data)
        self.ctx.cache.remember(MEMORY, self.lineage, data)

    @property
    def content(self) -> Path | Source:
        """What a pack reads: the rootfs directory, or the image's layers."""
        return self.image if self.image is not None else self.rootfs

    @property
    def what(self) -> str:
        from pveoci.image.identity import described

        return described(self.rootfs, self.image)

    def like_key(self) -> str:
        if not self.like:
            self.like = like_key(self.rootfs, self.scanned, self.arch, self.legacy)
        return self.like

    def alike(self) -> PushResult | None:
        """The template of a tree alike to this one, for a path never packed before: a pack of one remembered
        here that is on the storage, or one of its likeness the storage lists (another workstation made it)."""
        if self.remembered(self.lineage) is not None:
            return None   # a path packed before: any change there packs again
        known = self.remembered(f"like:{self.like_key()}")
        if known is not None and facts.template_known(self.ctx, self.dest, known.name):
            self.remember(known)
            return self.result(known.name, uploaded=False, sent=0, packed=known)
        listed = self.ctx.backend.templates(self.dest)
        found = next((t for t in listed if known is not None and t.name == known.name), None) or next(
            (t for t in listed if name_parts(t.name)[1] == self.like[:DIGEST_CHARS]), None)
        if found is None:
            return None
        if known is None or found.name != known.name:  # another workstation's: its frames are not known here
            known = Packed(path=None, digest=name_parts(found.name)[0], file_sha256="", size=found.size or 0,
                           tar_size=0, entries=0, like=self.like)
        self.remember(known)   # this path is known from now on: any change to it packs again
        return self.result(found.name, uploaded=False, sent=0, packed=known, found=found)

    def on_storage(self, name: str) -> Template | None:
        found = next((t for t in self.ctx.backend.templates(self.dest) if t.name == name), None)
        if found is None:
            facts.template_gone(self.ctx, self.dest, name)
        return found

    def result(self, name: str, *, uploaded: bool, sent: int, packed: Packed | None, found: Template | None = None,
               via_delta: bool = False) -> PushResult:
        size = packed.size if packed is not None else (found.size if found is not None else 0)
        digest = packed.digest if packed is not None else name_parts(name)[0]
        return PushResult(volid=self.dest.volid(name), node=self.dest.node, storage=self.dest.storage,
                          shared=self.dest.shared, uploaded=uploaded, bytes_sent=sent, size=size, digest=digest,
                          delta=via_delta)


def forget_gone(ctx: Context) -> int:
    """Forget the packs of rootfs paths that are gone (an engine's container's overlay, once it is removed): what
    was packed there is still known by its likeness. The number of records dropped."""
    gone = [key for key, value in ctx.cache.facts(MEMORY)
            if key.startswith(("pack:", "latest:")) and isinstance(value, dict) and isinstance(value.get("path"), str)
            and not os.path.lexists(value["path"])]
    for key in gone:
        ctx.cache.forget(MEMORY, key)
    return len(gone)


def check_transport(transport: str) -> None:
    """Before anything is asked of the cluster: a transport that does not exist."""
    if transport not in TRANSPORTS:
        raise errors.ConfigError(f"unknown transport '{transport}' (one of: {', '.join(TRANSPORTS)})")


def ensure(ctx: Context, bundle: Bundle, plan: Plan, dest: Destination, *, arch: str, transport: str,
           progress: Progress, scanned: manifest.Scan | None = None,
           make: Callable[[Job, Claim], PushResult] | None = None,
           before_asking: Callable[[], object] | None = None) -> PushResult:
    """The bundle's template on dest: found there (nothing packed when the rootfs is unchanged), or packed and
    sent by this call (`make` instead, when given: an image the node pulls, runtime/nodeimage.py), or by another
    that held the claim meanwhile. `before_asking` runs before the node is asked anything (a named node's check,
    skipped when the template is known to be there)."""
    check_transport(transport)
    started = time.monotonic()
    from pveoci.image.identity import described

    progress.note(f"looking at {described(bundle.rootfs, bundle.image)}")
    if bundle.image is not None and bundle.image.arch != arch:
        raise errors.ImageError(f"image {bundle.image.image.reference} was pulled for {bundle.image.arch}; node "
                                f"{dest.node} is {arch}")
    job = Job(ctx, bundle.rootfs, arch, plan.legacy_init, dest, scanned or manifest.scan(bundle.rootfs),
               bundle.image)
    known = job.remembered(f"pack:{job.key}")
    seen = known is not None and facts.template_known(ctx, dest, known.name)   # seen or sent before: no request
    if not seen and before_asking is not None:
        before_asking()
    if known is not None and (seen or job.on_storage(known.name)):   # or listed there now
        progress.note(f"{known.name} is on {dest.storage} ({dest.node}) already")
        facts.template_seen(ctx, dest, known.name)
        return _timed(job.result(known.name, uploaded=False, sent=0, packed=known), started)
    if known is None and (alike := job.alike()) is not None:
        progress.note(f"{alike.volid} is on {dest.storage} ({dest.node}) already, packed from a tree alike to this")
        facts.template_seen(ctx, dest, alike.volid.split("/", 1)[1])
        return _timed(alike, started)
    job.dest = facts.fresh_destination(ctx, dest.node, dest.storage)  # its free space now
    _check_room(job)
    claim = ctx.backend.claim_template(job.dest, job.key)
    try:
        while not claim.ours:
            progress.note(f"another create is sending this template to {dest.node}; waiting for it")
            name = claim.wait(CLAIM_WAIT)
            if name and (found := job.on_storage(name)) is not None:
                pushed = job.result(name, uploaded=False, sent=0, packed=None, found=found)
                break
            claim.take_over()
        else:
            meanwhile = _packed_meanwhile(job) if known is None else None
            pushed = meanwhile or (make(job, claim) if make is not None else
                                   _pack_and_send(job, claim, transport, progress))
            claim.release(pushed.name)
    except BaseException:
        claim.release(None)
        raise
    facts.template_seen(ctx, job.dest, pushed.volid.split("/", 1)[1])
    return _timed(pushed, started)


def _packed_meanwhile(job: Job) -> PushResult | None:
    """What another create of this rootfs that shares this cache finished while this one got its claim: a claim
    goes once its waiters have read its result, so a create that comes to it later takes a new one, and learns
    the template from the pack remembered before that claim went."""
    known = job.remembered(f"pack:{job.key}")
    if known is None or job.on_storage(known.name) is None:
        return None
    return job.result(known.name, uploaded=False, sent=0, packed=known)


def _timed(result: PushResult, started: float) -> PushResult:
    from dataclasses import replace

    return replace(result, seconds=time.monotonic() - started)


def _check_room(job: Job) -> None:
    """A storage too full for the template is refused before anything is sent (its size: the last pack of this
    rootfs's, else half the rootfs)."""
    if job.dest.avail is None:
        return
    base = job.remembered(job.lineage)
    need = base.size if base is not None else job.size // 2
    if job.dest.avail < need:
        raise errors.PveociError(f"storage '{job.dest.storage}' on {job.dest.node} has {job.dest.avail} bytes "
                                 f"free: too little for this template (about {need})")


def _pack_and_send(job: Job, claim: Claim, transport: str, progress: Progress) -> PushResult:
    total = job.size
    base = job.remembered(job.lineage)
    extras = template_files(job.rootfs, job.arch, job.legacy, job.image)
    read = progress.transfer("packing", total)

    def packing(n: int) -> None:  # also a sign of life for the claim
        read(n)
        claim.heartbeat()

    try:
        if base is not None and base.frames and transport != "api" and job.on_storage(base.name) is not None:
            job.ctx.backend.sweep_templates(job.dest)  # what a killed push left here goes before this one starts
            return _as_delta(job, base, extras, packing, progress)
        return _streamed(job, claim, extras, packing, transport, progress)
    finally:
        progress.done("packing")


def _streamed(job: Job, claim: Claim, extras: list[ExtraFile], packing: Callable[[int], None], transport: str,
              progress: Progress) -> PushResult:
    """Pack and send at once: the compressed frames go to the node as they are made."""
    progress.note(f"packing {job.what} and sending it to {job.dest.node} over {transport}")
    # The upload starts (its file is opened while packing begins) before the sweep for what killed pushes left
    # here: the sweep removes only what dead processes made, never this live one's.
    upload = job.ctx.backend.begin_upload(job.dest, transport=transport, progress=progress.transfer("uploading", None))
    try:
        job.ctx.backend.sweep_templates(job.dest)
        # Proxmox's upload API checks the whole file's SHA-256; an upload over SSH is checked by its size.
        packed = pack(job.content, None, extras=extras, progress=packing, stream=upload.write,
                      file_sha=transport == "api", entries=job.entries, like=job.like_key())
        job.remember(packed)   # before the claim goes (finish may remove it): see _packed_meanwhile
        landed = upload.finish(packed, claim)
    except BaseException:
        upload.abort()
        raise
    finally:
        progress.done("uploading")
    if not landed:
        log.info("%s reached %s meanwhile from elsewhere; this copy was dropped", packed.name, job.dest.node)
    return job.result(packed.name, uploaded=landed, sent=upload.sent, packed=packed)


def _as_delta(job: Job, base: Packed, extras: list[ExtraFile], packing: Callable[[int], None],
              progress: Progress) -> PushResult:
    """Pack to a local file, then send only the frames the node's previous template of this rootfs lacks."""
    work = default_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="push-", dir=work))
    try:
        progress.note(f"packing {job.what}")
        packed = pack(job.content, workdir, extras=extras, progress=packing, entries=job.entries, like=job.like_key())
        job.remember(packed)
        if job.on_storage(packed.name) is not None:
            return job.result(packed.name, uploaded=False, sent=0, packed=packed)
        change = delta.plan(packed.frames, base.frames)
        sending = progress.transfer("uploading", change.new_bytes)
        try:
            if delta.worth_it(change, packed.size):
                progress.note(f"sending {packed.name} to {job.dest.node} as a delta against {base.name}")
                sent = job.ctx.backend.upload_delta(packed, base.name, change, job.dest, progress=sending)
                return job.result(packed.name, uploaded=True, sent=sent, packed=packed, via_delta=True)
            sent = job.ctx.backend.upload(packed, job.dest, transport="sftp", progress=sending)
            return job.result(packed.name, uploaded=True, sent=sent, packed=packed)
        finally:
            progress.done("uploading")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["TRANSPORTS", "Job", "default_work_dir", "ensure", "known_template", "node_arch",
           "template_files", "template_name"]
