"""An OCI bundle on disk: its validated config.json, its rootfs, and the digest of the config it was loaded from."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pveoci.errors import BundleError
from pveoci.oci import jsonfile
from pveoci.oci.runtime_spec import Spec, parse_spec

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle. `spec.process` and `spec.root` are always set."""

    path: Path
    spec: Spec
    rootfs: Path
    config_digest: str

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @classmethod
    def load(cls, path: Path | str) -> Bundle:
        """Read and validate `<path>/config.json` and find the rootfs; a one-line BundleError if anything is wrong.

        The config is read once: the digest and the spec describe the same bytes, so later edits to
        config.json cannot slip in between (runtime.md: they must not affect a created container).
        """
        # abspath, not resolve(): messages and state keep the name the user gave, symlinks included.
        bundle = Path(os.path.abspath(path))
        problem = _not_a_directory(bundle)
        if problem is not None:
            raise BundleError(f"bundle {_named(bundle)} {problem}")
        config = bundle / CONFIG_NAME
        # Only a regular file: config.json as a FIFO would wait for a writer, as /dev/zero would never end.
        raw = jsonfile.read(config, missing=f"no {CONFIG_NAME} in {_named(bundle)}")
        return cls.parse(bundle, raw)

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
    where = f"{CONFIG_NAME} in {config.parent}"
    spec = parse_spec(jsonfile.decode(raw, config), where=where)
    if spec.process is None:
        raise BundleError(f"invalid {where}: process: required by pveoci (a bundle must say what to run)")
    if spec.root is None:
        raise BundleError(f"invalid {where}: root: required (config.md: REQUIRED on Linux)")
    return spec
