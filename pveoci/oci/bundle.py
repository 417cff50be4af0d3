"""An OCI bundle on disk: its validated config.json, its rootfs, and the digest of the config it was loaded from."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pveoci.errors import BundleError
from pveoci.oci import jsonfile

if TYPE_CHECKING:
    from pveoci.image.source import Source
    from pveoci.oci.runtime_spec import Spec

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle. `spec.process` and `spec.root` are always set.

    A bundle made of an image (pveoci.image.source) has its layers as `image`, what a pack reads instead of a
    directory; its `rootfs` then names the image in the local store."""

    path: Path
    spec: Spec
    rootfs: Path
    config_digest: str
    image: Source | None = None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @classmethod
    def load(cls, path: Path | str) -> Bundle:
        """Read and validate `<path>/config.json` and find the rootfs; a one-line BundleError if anything is wrong.

        The config is read once: the digest and the spec describe the same bytes, so later edits to
        config.json cannot slip in between (runtime.md: they must not affect a created container).
        """
        return read(path).parse()

    @classmethod
    def parse(cls, bundle: Path, raw: bytes) -> Bundle:
        """The bundle in directory `bundle` whose config.json holds `raw` (read once, by `load`)."""
        spec = parse_config(raw, bundle / CONFIG_NAME)
        assert spec.root is not None
        rootfs = Path(os.path.normpath(bundle / spec.root.path))
        problem = _not_a_directory(rootfs)
        if problem is not None:
            raise BundleError(f"rootfs {_named(rootfs)} (root.path) "
                              f"{'is not a directory' if problem == 'does not exist' else problem}")
        return cls(path=bundle, spec=spec, rootfs=rootfs, config_digest=hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class Unparsed:
    """A bundle's config.json as read, before it is validated (parse()): `rootfs` is the directory its
    root.path names when it names one, so a stat walk of it can start while the spec is checked."""

    path: Path
    raw: bytes
    rootfs: Path | None

    def parse(self) -> Bundle:
        return Bundle.parse(self.path, self.raw)


def read(path: Path | str) -> Unparsed:
    """`<path>/config.json`, read once (a one-line BundleError for a missing or unreadable one); not validated."""
    # abspath, not resolve(): messages and state keep the name the user gave, symlinks included.
    bundle = Path(os.path.abspath(path))
    problem = _not_a_directory(bundle)
    if problem is not None:
        raise BundleError(f"bundle {_named(bundle)} {problem}")
    config = bundle / CONFIG_NAME
    # Only a regular file: config.json as a FIFO would wait for a writer, as /dev/zero would never end.
    raw = jsonfile.read(config, missing=f"no {CONFIG_NAME} in {_named(bundle)}")
    return Unparsed(bundle, raw, _rootfs_named(bundle, raw))


def _rootfs_named(bundle: Path, raw: bytes) -> Path | None:
    """The directory root.path names, if the config is JSON that names one (parse() checks all of it later)."""
    try:
        document: Any = jsonfile.decode(raw, bundle / CONFIG_NAME)
    except BundleError:
        return None
    root = document.get("root") if isinstance(document, dict) else None
    where = root.get("path") if isinstance(root, dict) else None
    if not isinstance(where, str) or not where or "\0" in where:
        return None
    rootfs = Path(os.path.normpath(bundle / where))
    return rootfs if _not_a_directory(rootfs) is None else None


def _not_a_directory(path: Path) -> str | None:
    """None for a directory; else why not, for a message. A stat fails in many ways (a name too long, a loop of
    links, no permission): each is said, none is raised."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    except ValueError:  # a NUL in the name
        return "cannot be read: the name holds a NUL byte"
    return None if stat.S_ISDIR(mode) else "is not a directory"


def _named(path: Path) -> str:
    """A path in a message: as it is, unless it would not read as one line (a newline, a great length)."""
    text = str(path)
    return text if text.isprintable() and len(text) <= 300 else repr(text[:300] + ("..." if len(text) > 300 else ""))


def parse_config(raw: bytes, config: Path) -> Spec:
    """The bytes of a bundle's config.json (at `config`, which errors name) as a spec pveoci can run: valid, with
    `process` and `root`; a one-line BundleError if not."""
    from pveoci.oci.runtime_spec import parse_spec

    where = f"{CONFIG_NAME} in {config.parent}"
    spec = parse_spec(jsonfile.decode(raw, config), where=where)
    if spec.process is None:
        raise BundleError(f"invalid {where}: process: required by pveoci (a bundle must say what to run)")
    if spec.root is None:
        raise BundleError(f"invalid {where}: root: required (config.md: REQUIRED on Linux)")
    return spec
