"""An OCI bundle on disk: its validated config.json, its rootfs, and the digest of the config it was loaded from."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pveoci.errors import BundleError
from pveoci.oci.spec import Spec, parse_spec

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
        if not bundle.is_dir():
            what = "is not a directory" if bundle.exists() else "does not exist"
            raise BundleError(f"bundle {bundle} {what}")
        config = bundle / CONFIG_NAME
        try:
            raw = config.read_bytes()
        except FileNotFoundError:
            raise BundleError(f"no {CONFIG_NAME} in {bundle}") from None
        except OSError as exc:
            raise BundleError(f"cannot read {config}: {exc.strerror or exc}") from None
        try:
            # Go's encoding/json, which runc uses, reads UTF-8 only; json.loads(bytes) would guess UTF-16/32.
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BundleError(f"{config}: not valid JSON: not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise BundleError(f"{config}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise BundleError(f"{config}: not valid JSON: nested too deeply") from None
        where = f"{CONFIG_NAME} in {bundle}"
        spec = parse_spec(data, where=where)
        if spec.process is None:
            raise BundleError(f"invalid {where}: process: required by pveoci (a bundle must say what to run)")
        if spec.root is None:
            raise BundleError(f"invalid {where}: root: required (config.md: REQUIRED on Linux)")
        rootfs = Path(os.path.normpath(bundle / spec.root.path))
        if not rootfs.is_dir():
            raise BundleError(f"rootfs {rootfs} (root.path) is not a directory")
        return cls(path=bundle, spec=spec, rootfs=rootfs, config_digest=hashlib.sha256(raw).hexdigest())
