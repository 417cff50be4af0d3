"""Images the node pulls itself (`--pull node`): Proxmox VE 9.1's own pull, made into pveoci's template there.

Two ways take an image to a node (docs/images.md): the workstation pulls it (any registry, credentials, digests)
and sends the template it packs; or the node pulls it through Proxmox's `oci-registry-pull` and the workstation
sends nothing of it. `auto` (the default) takes the node's way when it can: Proxmox VE 9.1 or later, an image in a
registry named by tag, TLS verified, and no credentials for that registry here (Proxmox's pull takes none);
otherwise, or when the node's pull fails, the workstation's (and that node is not asked to pull from that
registry again for an hour: its token may lack the privilege, or the node the network).

The node's way, for an image whose template is on no storage of that node (the same content-addressed name
either way makes, so a template made by one way serves the other):

1. the workstation asks the registry for the image's digest for the node's architecture and its config
   (image/store.py `describe`: a tag is one request, the rest is kept here by digest); the process is planned
   from it, the user and program provisionally until the node reports the tree;
2. the node pulls it (`oci-registry-pull`, as `pveoci-oci-<digest>.tar`, the OCI archive Proxmox knows);
3. a stopped container of pveoci's own (`pveoci-unpack`, same privilege as the container to come) is created
   from the archive: Proxmox applies the layers (whiteouts, its user namespace) as it does for its own
   application containers;
4. a script on the node (backends/imagescript.py) checks the archive holds the image asked for (its config's
   digest), reports the tree (entries, /etc/passwd, /etc/group: image/nodetree.py, kept here) and packs it,
   with pveoci's init, into the template;
5. the temporary container and the archive are removed; the process is planned for real from the report.

A template another workstation made is used as it is; when its tree is not known here, a temporary container
of that template tells it (step 4 without the pack). All of it runs under the template's claim (one maker per
image and node); what a killed command left (a temporary container, an archive) the next one of the same image
removes, and `gc` after an hour.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pveoci import errors
from pveoci.backends.base import Claim
from pveoci.models import Destination, Guest, PushResult
from pveoci.progress import Progress
from pveoci.runtime import facts, push
from pveoci.runtime.context import Context
from pveoci.runtime.swap import target_of
from pveoci.runtime.vmids import create_with_fresh_vmid
from pveoci.template import manifest

if TYPE_CHECKING:
    from pveoci.image.source import ImageRequest, Source
    from pveoci.lxc.mapping import Plan
    from pveoci.oci.bundle import Bundle

log = logging.getLogger("pveoci.images")

ARCHIVE_PREFIX = "pveoci-oci-"
UNPACK_TAG = "pveoci-unpack"
UNPACK_MAX_AGE = 3600.0     # gc removes a temporary container or an archive this old (no make runs that long)
NODE_PULL = (9, 1)
BEAT = 10.0                 # seconds between a make's claim heartbeats (a claim quiet for 60 s is taken over)
FAILED_FOR = 3600.0         # a node that could not pull from a registry is not asked again for this long (auto)


class NodePullFailed(errors.ImageError):
    """The node could not pull the image (its network, the registry, the token's privileges)."""


def way(ctx: Context, request: ImageRequest) -> str:
    """"node" or "workstation": who pulls this image (request.pull, `auto` decided here); ImageError for `node`
    when the node cannot."""
    if request.pull == "workstation":
        return "workstation"
    why_not = _why_not(ctx, request)
    if request.pull == "node" and why_not:
        raise errors.ImageError(f"--pull node: {why_not}; pull it here instead (--pull workstation)")
    return "workstation" if why_not else "node"


def _why_not(ctx: Context, request: ImageRequest) -> str:
    ref = request.parsed
    if not ref.remote:
        return f"{ref} is no registry image: only this machine can read it"
    if ref.digest:
        return "Proxmox pulls by tag only, and this reference names a digest"
    version = ctx.backend.version()
    if version < NODE_PULL:
        return f"Proxmox VE {version[0]}.{version[1]} cannot pull images (9.1 and later can)"
    if not request.access.tls_verify:
        return "--tls-verify=false: Proxmox's pull always verifies TLS"
    if request.access.authfile or _logged_in(ref.domain, request):
        return f"{ref.domain} needs credentials here, and Proxmox's pull takes none"
    return ""


def _logged_in(registry: str, request: ImageRequest) -> bool:
    """Whether skopeo has credentials for the registry (auth files, credential helpers): then it is no public
    image, as far as this machine knows."""
    if shutil.which("skopeo") is None:
        return False
    done = subprocess.run(["skopeo", "login", "--get-login", *request.access.flags(), registry],
                          stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return done.returncode == 0 and bool(done.stdout.strip())


def load(ctx: Context, request: ImageRequest, arch: str,
         note: Callable[[str], None] | None = None) -> tuple[Bundle, manifest.Scan]:
    """The image as a create's bundle, by the way it goes to the node (only its config when the node pulls it)."""
    from pveoci.image import source

    return source.load(request, arch, note=note, on_node=way(ctx, request) == "node")


def ready(ctx: Context, bundle: Bundle, scanned: manifest.Scan, plan: Plan, node: str, arch: str,
          progress: Progress, storage: str | None = None) -> tuple[Bundle, manifest.Scan, PushResult | None]:
    """For an image the node pulls: its template on the node (made there unless a storage copy is there) and its
    tree known here, then the bundle loaded again, to be planned for real, and how the template got there. Any
    other bundle as it is. With `auto`, a pull the node could not make falls back to this machine's (the bundle
    then has the layers; no template yet)."""
    image = bundle.image
    if image is None or not image.on_node:
        return bundle, scanned, None
    from pveoci.image import source

    dest = facts.destination(ctx, node, storage or ctx.profile.template_storage)
    options = _unpack_options(plan, arch)
    failed = f"node-pull:{node}:{image.image.reference.domain}"
    try:
        known = ctx.cache.recall(ctx.facts_scope, failed, FAILED_FOR) if image.request.pull == "auto" else None
        if isinstance(known, str):   # this node could not pull from there a moment ago: not asked again
            raise NodePullFailed(known)
        pushed = push.ensure(ctx, bundle, plan, dest, arch=arch, transport="sftp", progress=progress,
                             scanned=scanned, make=lambda job, claim: _make(ctx, job, claim, options, progress))
    except NodePullFailed as exc:
        if image.request.pull != "auto":
            raise
        ctx.cache.remember(ctx.facts_scope, failed, exc.message)
        progress.note(f"{exc.message}; pulling it here instead")
        log.info("%s; pulling it here instead", exc.message)
        return (*source.load(image.request, arch, image.store, progress.note), None)
    if image.node_tree is not None and not image.node_tree.exists():
        _look(ctx, dest, pushed.volid, options, image, progress)
    return (*source.load(image.request, arch, image.store, progress.note, on_node=True), pushed)


def _unpack_options(plan: Plan, arch: str) -> dict[str, Any]:
    """A temporary container's options: the root disk's storage and privilege the container to come has."""
    storage = str(plan.options.get("rootfs", "")).split(":", 1)[0]
    return {"rootfs": storage, "unprivileged": plan.options.get("unprivileged", 0), "arch": arch}


def _make(ctx: Context, job: push.Job, claim: Claim, options: dict[str, Any], progress: Progress) -> PushResult:
    """Steps 2-5 for the image of `job`, under its claim on job.dest."""
    from pveoci import init
    from pveoci.image import nodetree
    from pveoci.template.pack import DIGEST_CHARS, Packed, name_parts

    source = _source(job)
    image, dest = source.image, job.dest
    if dest.directory is None:   # auto: this machine's way instead
        raise NodePullFailed(f"storage '{dest.storage}' on {dest.node} has no directory pveoci reaches over SSH: "
                             "the node cannot make the template there")
    with _beating(claim):   # minutes of waiting on the node: the claim must not look abandoned meanwhile
        archive = _archive(ctx, dest, source, progress)
        progress.note(f"{dest.node} unpacks {image.reference} and packs its template")
        try:
            with _temporary(ctx, dest, dest.volid(archive), options, source) as (vmid, owner, userns):
                made = ctx.backend.describe_image(
                    dest.node, vmid, archive=f"{dest.directory}/{archive}", digest=image.config_digest,
                    owner=owner, userns=userns, into=dest.directory, like=job.like_key()[:DIGEST_CHARS],
                    init=init.binary(job.arch))
        finally:   # made or not (another image under its name: a tag moved; a broken one), the archive goes
            _remove_archive(ctx, dest, archive)
    if source.node_tree is not None:
        nodetree.save(source.node_tree, made.listing, made.files)
    packed = Packed(path=None, digest=name_parts(made.template)[0], file_sha256="", size=made.size, tar_size=0,
                    entries=0, like=job.like_key())
    job.remember(packed)
    return replace(job.result(made.template, uploaded=False, sent=0, packed=packed), made_on_node=True)


@contextlib.contextmanager
def _beating(claim: Claim) -> Iterator[None]:
    """The claim's heartbeat every BEAT seconds while the block waits on the node (a pull, an unpack, a pack), so
    that another create of the image keeps waiting for it instead of taking it over (template/sweep.py QUIET)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT):
            try:
                claim.heartbeat()
            except errors.PveociError as exc:   # the next beat tries again; the make goes on regardless
                log.debug("the claim's heartbeat failed: %s", exc.message)

    beater = threading.Thread(target=beat, name="pveoci-claim-beat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join()


def _source(job: push.Job) -> Source:
    if job.image is None:
        raise errors.PveociError("a node makes templates of images only")
    return job.image


def _archive(ctx: Context, dest: Destination, source: Source, progress: Progress) -> str:
    """The image's OCI archive on the node's storage: pulled by the node unless it is there (a killed make's)."""
    image = source.image
    name = f"{ARCHIVE_PREFIX}{image.digest.removeprefix('sha256:')[:24]}"
    if any(t.name == f"{name}.tar" for t in ctx.backend.templates(dest)):
        return f"{name}.tar"
    ref = image.reference
    tagged = f"{ref.name}:{ref.tag or 'latest'}"
    progress.note(f"{dest.node} pulls {tagged}")
    try:
        ctx.backend.pull_image(dest, tagged, name)
    except errors.PveociError as exc:
        raise NodePullFailed(f"node {dest.node} could not pull {tagged}: {_said(exc)}") from None
    return f"{name}.tar"


def _said(exc: errors.PveociError) -> str:
    if isinstance(exc, errors.TaskFailed) and exc.exitstatus:
        return exc.exitstatus
    return exc.message


def _remove_archive(ctx: Context, dest: Destination, archive: str) -> None:
    """The archive goes once the template is made: the template is what serves the next create."""
    try:
        ctx.backend.remove_template(dest, archive)
    except errors.PveociError as exc:
        log.warning("could not remove %s from %s on %s: %s", archive, dest.storage, dest.node, exc.message)


class _temporary:
    """A stopped container of pveoci's own made from `volid` on dest's node, destroyed when the block ends (a
    leftover of the same image, from a killed make, destroyed first); yields its VMID and id map."""

    def __init__(self, ctx: Context, dest: Destination, volid: str, options: dict[str, Any], source: Source) -> None:
        self.ctx, self.dest, self.volid, self.source = ctx, dest, volid, source
        gib = max(1, -(-(source.image.compressed * 4 + (512 << 20)) // (1 << 30)))
        self.options = {"ostemplate": volid, "rootfs": f"{options['rootfs']}:{gib}", "ostype": "unmanaged",
                        "unprivileged": options["unprivileged"], "arch": options["arch"], "hostname": UNPACK_TAG,
                        "tags": UNPACK_TAG, "start": 0, "description": _description(volid)}
        self.vmid = 0

    def __enter__(self) -> tuple[int, str, tuple[str, ...]]:
        ctx, node = self.ctx, self.dest.node
        for guest in _leftovers(ctx, lambda config: _made_of(config) == self.volid, node):
            _destroy(ctx, node, guest.vmid)
        self.vmid = create_with_fresh_vmid(ctx, node, self.options, lambda vmid: None)
        config = ctx.backend.config(node, self.vmid)
        target = target_of(config, ctx.backend.status(node, self.vmid))
        return self.vmid, target.owner, target.userns

    def __exit__(self, *exc: object) -> None:
        if self.vmid:
            _destroy(self.ctx, self.dest.node, self.vmid)


def _description(volid: str) -> str:
    return f"pveoci: a temporary container, removed when done: unpacked from {volid} at {int(time.time())}"


def _made_of(config: dict[str, Any]) -> str:
    words = str(config.get("description", "")).split()
    return words[words.index("from") + 1] if "from" in words[:-1] else ""


def _made_at(config: dict[str, Any]) -> float:
    words = str(config.get("description", "")).split()
    return float(words[-1]) if words and words[-1].isdigit() else 0.0


def _leftovers(ctx: Context, wanted: Callable[[dict[str, Any]], bool], node: str | None = None) -> list[Guest]:
    """Temporary containers (by their tag) whose config `wanted` picks, on `node` or any."""
    out = []
    for guest in ctx.backend.guests():
        if UNPACK_TAG in guest.tags and (node is None or guest.node == node):
            try:
                config = ctx.backend.config(guest.node, guest.vmid)
            except errors.NotFound:
                continue
            if wanted(config):
                out.append(guest)
    return out


def _destroy(ctx: Context, node: str, vmid: int) -> None:
    try:
        ctx.backend.destroy(node, vmid)
    except errors.NotFound:
        pass
    except errors.PveociError as exc:
        log.warning("could not remove the temporary CT %s on %s: %s", vmid, node, exc.message)


def _look(ctx: Context, dest: Destination, volid: str, options: dict[str, Any], source: Source,
          progress: Progress) -> None:
    """The tree of a template that is on the node but not known here (another workstation made it): a temporary
    container of it tells."""
    from pveoci.image import nodetree

    progress.note(f"{dest.node} reports the tree of {volid}")
    with _temporary(ctx, dest, volid, options, source) as (vmid, _owner, _userns):
        seen = ctx.backend.describe_image(dest.node, vmid)
    if source.node_tree is not None:
        nodetree.save(source.node_tree, seen.listing, seen.files)


def sweep(ctx: Context, max_age: float = UNPACK_MAX_AGE) -> list[str]:
    """What killed makes left, older than max_age: temporary containers, OCI archives. What was removed."""
    from pveoci.runtime import templates

    now = time.time()
    gone = []
    for guest in _leftovers(ctx, lambda config: now - _made_at(config) > max_age):
        _destroy(ctx, guest.node, guest.vmid)
        gone.append(f"{guest.node}:CT {guest.vmid}")
    for place in templates.places(ctx, None, None):
        for found in ctx.backend.templates(place):
            if found.name.startswith(ARCHIVE_PREFIX) and found.name.endswith(".tar") and now - found.ctime > max_age:
                _remove_archive(ctx, place, found.name)
                gone.append(f"{place.node}:{found.name}")
    return gone

