"""Fixtures: a real registry on loopback (auth + TLS) and the images pushed there (tests/image/registry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import need
from tests.image.registry import GROUP, PASSWD, Registry, build_image, missing_for_registry, push, push_multiarch

BUSYBOX_CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["echo hello from the image"],
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"],
    "WorkingDir": "/srv",
    "User": "app",
    "StopSignal": "SIGINT",
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/data": {}},
}

# Three layers over the base: one adds files, one replaces a file and deletes one (a whiteout), one adds a script.
LAYERED_LAYERS: list[dict[str, bytes | None]] = [
    {"etc/motd": b"first\n", "opt/app/old.txt": b"to be deleted\n", "opt/app/keep.txt": b"kept\n"},
    {"etc/motd": b"second\n", "opt/app/old.txt": None},
    {"usr/bin/hello": b"#!/bin/sh\necho hello from layer three\n"},
]


@dataclass(frozen=True)
class PushedImages:
    """What the `images` fixture pushed: each image's reference (HOST/repo:tag) and its manifest (or index) digest."""

    busybox: str
    busybox_digest: str
    layered: str
    layered_digest: str
    multi: str
    multi_digest: str  # the image index's


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry on 127.0.0.1, TLS (trust registry.cafile, or registry.certs_dir()) and basic auth
    (registry.authfile(path) writes the credentials for skopeo, podman and friends)."""
    need(missing_for_registry())
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> PushedImages:
    """busybox:1 (one layer, a full config), layered:1 (four layers: a replaced file and a whiteout) and multi:1 (an
    index over amd64 and arm64 images, each with /arch naming its architecture), built and pushed once a session."""
    work = tmp_path_factory.mktemp("images")
    busybox = build_image(work / "busybox", config=BUSYBOX_CONFIG)
    layered = build_image(work / "layered", layers=LAYERED_LAYERS, config={"Cmd": ["cat", "/etc/motd"]})
    multi = {arch: build_image(work / f"multi-{arch}", layers=[{"arch": arch.encode()}], arch=arch,
                               config={"Cmd": ["cat", "/arch"]})
             for arch in ("amd64", "arm64")}
    return PushedImages(
        busybox=f"{registry.host}/busybox:1", busybox_digest=push(registry, busybox, "latest", "busybox:1"),
        layered=f"{registry.host}/layered:1", layered_digest=push(registry, layered, "latest", "layered:1"),
        multi=f"{registry.host}/multi:1", multi_digest=push_multiarch(registry, multi, "multi:1"),
    )


# Says who and where it runs (the image's user is a name, resolved in its own /etc/passwd on the node's report).
PUBLIC_APP = {"Entrypoint": ["/bin/sh", "-c"],
              "Cmd": ["echo \"$GREETING uid=$(id -u) gid=$(id -g) groups=$(id -G) $(pwd)\""],
              "Env": ["PATH=/usr/bin:/bin", "GREETING=from the node"], "User": "app", "WorkingDir": "/srv",
              "Volumes": {"/data": {}}}


@pytest.fixture(scope="session")
def public(public_registry: Registry) -> Registry:
    """A registry anyone may pull from (TLS, no auth), as the public registries a node reaches; this package's
    images under `node/`."""
    return public_registry


@pytest.fixture(scope="session")
def public_app(public: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """node/app:1 on the public registry (PUBLIC_APP's config; its user `app` in its own /etc/passwd)."""
    layout = build_image(tmp_path_factory.mktemp("app"), layers=[
        {"etc/passwd": PASSWD.encode(), "etc/group": GROUP.encode(), "srv/.keep": b"", "etc/motd": b"node\n"}],
        config=PUBLIC_APP)
    push(public, layout, "latest", "node/app:1")
    return f"{public.host}/node/app:1"
