"""An image as a create's source: pulled (store.py), its layers merged (layers.py), its config made a bundle.

A create of an image takes the same path as a create of a bundle: the image becomes a Bundle whose config.json
(written beside the store, so `state`'s bundle is a real one) runs the image's process, whose `image` is this
Source (what a pack reads instead of a directory), and whose Scan's fingerprint is the image's manifest digest:
a template is packed once per image and architecture, and named by it, so another workstation finds it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pveoci import errors
from pveoci.image import reference
from pveoci.image.identity import FINGERPRINT
from pveoci.image.imageconfig import Overrides, process_of, spec_document
from pveoci.image.store import Access, Image, Store

if TYPE_CHECKING:
    from pveoci.image.layers import Merged
    from pveoci.image.nodetree import NodeTree
    from pveoci.lxc.draft import Finding
    from pveoci.oci.bundle import Bundle
    from pveoci.template.frames import Framer
    from pveoci.template.manifest import Scan
    from pveoci.template.pack import ExtraFile



#: Who pulls an image (`--pull`): "auto" (the node when it can: runtime/nodeimage.py), "node", "workstation".
PULL_WAYS = ("auto", "node", "workstation")


@dataclass(frozen=True)
class ImageRequest:
    """An image as the user names it, with what the flags change of its process, how to reach its registry, and
    who pulls it (`pull`: one of PULL_WAYS)."""

    ref: str
    overrides: Overrides = field(default_factory=Overrides)
    access: Access = field(default_factory=Access)
    pull: str = "auto"

    def __post_init__(self) -> None:
        if self.pull not in PULL_WAYS:
            raise errors.InvalidParameter(f"--pull {self.pull!r}: one of {', '.join(PULL_WAYS)}")
        _ = self.parsed   # a malformed reference is refused when the request is made, before anything runs

    @cached_property
    def parsed(self) -> reference.Reference:
        return reference.parse(self.ref)


class Source:
    """An image's layers as a template's content: merged once (their headers read), written when a pack needs it.

    One a node pulls (`on_node`: its layers never come here) is answered from what the node reported of the tree
    it unpacked (nodetree.py, kept at `node_tree`); until a node did, it is `provisional`: its process is planned
    with the user unresolved (uid 0) and its program taken as there, and planned again once the node's report is
    here (runtime/nodeimage.py)."""

    def __init__(self, image: Image, request: ImageRequest, known: Path, node_tree: Path | None = None,
                 store: Store | None = None) -> None:
        from pveoci.image.lookups import Lookups

        self.image = image
        self.store = store       # where it came from: a load of it again asks the registry nothing new
        self.request = request   # what named it: pulled again for a node of another architecture
        self.findings: list[Finding] = []
        self.node_tree = node_tree
        self.tree = Lookups(known, self._tree)   # what creates ask of the tree, kept for the next

    @property
    def on_node(self) -> bool:
        return self.node_tree is not None

    @cached_property
    def reported(self) -> NodeTree | None:
        from pveoci.image import nodetree

        return nodetree.load(self.node_tree) if self.node_tree is not None else None

    @property
    def provisional(self) -> bool:
        return self.on_node and self.reported is None

    def _tree(self) -> Merged | NodeTree:
        if not self.on_node:
            return self.merged
        if self.reported is None:
            raise errors.PveociError(f"image {self.image.reference}: no node has reported its tree yet")
        return self.reported

    @cached_property
    def merged(self) -> Merged:
        from pveoci.image.layers import merge

        return merge(self.image.layers)

    @property
    def size(self) -> int:
        """Bytes of the tree's regular files (each hard-linked file once); a provisional image's, a guess from its
        compressed layers (what most images unpack to)."""
        return self.image.compressed * 3 if self.provisional else self.tree.size

    @property
    def arch(self) -> str:
        return self.image.arch

    def write(self, sink: Framer, extras: Sequence[ExtraFile], progress: Callable[[int], None] | None) -> int:
        if self.on_node:
            raise errors.PveociError(f"image {self.image.reference}: its layers are on the node, not here")
        return self.merged.write(sink, extras, progress)

    def read_file(self, path: str) -> bytes | None:
        return self.tree.read_file(path)

    def find_executable(self, name: str, path_env: str | None, cwd: str) -> str | None:
        """What execvp would run for `name` in the image (as oci.rootfs.find_executable in a directory)."""
        from pveoci.oci.rootfs import DEFAULT_PATH

        candidates = ([name if name.startswith("/") else f"{cwd.rstrip('/')}/{name}"] if "/" in name else
                      [f"{(folder or cwd).rstrip('/')}/{name}" for folder in
                       dict.fromkeys((path_env if path_env is not None else DEFAULT_PATH).split(":"))])
        if self.provisional:   # the node's report will tell; planned again then
            return candidates[0] if candidates[0].startswith("/") else f"{cwd.rstrip('/')}/{candidates[0]}"
        for candidate in candidates:
            mode = self.tree.mode(candidate)
            if mode is not None and stat.S_ISREG(mode) and mode & 0o111:
                return candidate if candidate.startswith("/") else f"{cwd.rstrip('/')}/{candidate}"
        return None

    def sbin(self) -> str | None:
        """Where /sbin is in the image (symlinks followed inside it): "" for the root, None when there is none;
        BundleError when it is no directory (PVE before 9.1 cannot start pveoci's init as /sbin/init)."""
        kind = self.tree.kind("/sbin")
        if kind is None:
            return None
        if kind != "dir":
            raise errors.BundleError(f"image {self.image.reference}: /sbin is not a directory, so PVE before 9.1 "
                                     "cannot start pveoci's init as /sbin/init")
        return self.tree.resolve("/sbin")


def workstation_arch() -> str:
    """This machine's architecture as an image's (amd64, arm64): a first guess of the node's."""
    from pveoci import init

    try:
        return init.arch_for(platform.machine())
    except ValueError:
        return "amd64"


def load(request: ImageRequest, arch: str, store: Store | None = None,
         note: Callable[[str], None] | None = None, *, on_node: bool = False) -> tuple[Bundle, Scan]:
    """The image pulled for `arch` (from the store when it has it) as a bundle, and its Scan; `note` is told
    what is fetched. `on_node`: a node pulls it (Source.on_node): only its config is asked for here."""
    from pveoci.oci.bundle import Bundle, parse_config
    from pveoci.template.manifest import Scan

    ref = request.parsed
    store = store or Store(access=request.access)
    image = store.describe(ref, arch) if on_node else store.pull(ref, arch, note)
    source = Source(image, request, store.lookups(image.name), store.tree(image.name) if on_node else None, store)
    where = f"image {ref}"
    process = process_of(image.process, request.overrides, source.read_file, where, users=not source.provisional)
    source.findings = process.findings
    document = spec_document(process, terminal=request.overrides.terminal, name=str(ref), digest=image.digest)
    raw = json.dumps(document, indent=2).encode() + b"\n"
    digest = hashlib.sha256(raw).hexdigest()
    folder = store.root / "bundles" / digest[:32]
    _write_once(folder / "config.json", raw)
    spec = parse_config(raw, folder / "config.json")
    # What the template is remembered under (forgotten once the image leaves the store): its manifest there.
    rootfs = image.stored or (store.description(image.name) if on_node else store.layout)
    bundle = Bundle(path=folder, spec=spec, rootfs=rootfs, config_digest=digest, image=source)
    scanned = Scan(fingerprint=f"{FINGERPRINT}{image.digest}:{arch}", size=source.size)
    return bundle, scanned


def for_arch(bundle: Bundle, scanned: Scan, arch: str, note: Callable[[str], None] | None = None
             ) -> tuple[Bundle, Scan]:
    """The bundle for a node of `arch`: itself, unless it is an image pulled for another architecture (the guess
    made before placement): then that image's manifest for `arch`."""
    if bundle.image is None or bundle.image.arch == arch:
        return bundle, scanned
    return load(bundle.image.request, arch, bundle.image.store, note, on_node=bundle.image.on_node)




def _write_once(path: Path, data: bytes) -> None:
    """The generated config.json (named by its digest: the same bytes whoever writes it), atomically."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)
