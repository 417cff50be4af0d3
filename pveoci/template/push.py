"""Get a bundle's template onto a node: pack it (rootfs + init shim), then upload it unless it is there."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pveoci import cluster, errors
from pveoci.lxc.mapping import Plan
from pveoci.oci.bundle import Bundle
from pveoci.pve.client import PveClient
from pveoci.settings import Settings
from pveoci.template.pack import Packed, pack
from pveoci.template.store import Destination, PushResult, TemplateStore, Uploader

TRANSPORTS = ("sftp", "api")
Progress = Callable[[int], None]


def default_cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("pveoci") / "templates"


def uploader_for(name: str, client: PveClient, settings: Settings) -> Uploader:
    if name == "api":
        from pveoci.template.api_upload import ApiUploader

        return ApiUploader(client)
    if name == "sftp":
        from pveoci.ssh import SshConnector
        from pveoci.template.sftp import SftpUploader

        # Node addresses are asked of the cluster only if something is actually uploaded.
        return SftpUploader(SshConnector(settings.profile.ssh, lambda: cluster.quorum(client).addresses))
    raise errors.ConfigError(f"unknown transport '{name}' (one of: {', '.join(TRANSPORTS)})")


@dataclass(frozen=True)
class Pushed:
    packed: Packed
    result: PushResult


def push(
    client: PveClient,
    settings: Settings,
    bundle: Bundle,
    plan: Plan,
    dest: Destination,
    *,
    transport: str = "sftp",
    cache_dir: Path | None = None,
    on_pack: Progress | None = None,
    on_upload: Progress | None = None,
) -> Pushed:
    """Pack and upload; the local .tar.zst is removed afterwards, whatever happened.

    Each push packs into a directory of its own: concurrent pushes of the same bundle make files of
    the same name, and one must not remove another's while it is still being sent.
    """
    uploader = uploader_for(transport, client, settings)
    base = cache_dir or default_cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="push-", dir=base))
    try:
        packed = pack(bundle.rootfs, workdir, extras=plan.extras(), progress=on_pack)
        result = TemplateStore(client).ensure(packed, dest, uploader, on_upload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Pushed(packed, result)
