"""The test registry serves the images the tests built, only to a client with the credentials, over verified TLS."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.image.conftest import LAYERED_LAYERS, PushedImages
from tests.image.registry import (
    OCI_INDEX,
    Registry,
    RegistryError,
    build_image,
    missing_for_registry,
    skopeo,
    tagged_manifest,
)

pytestmark = pytest.mark.bed


def inspect(registry: Registry, ref: str, *options: str) -> Any:
    return json.loads(skopeo("inspect", *registry.skopeo_options(), *options, f"docker://{ref}").stdout)


def blob(layout: Path, digest: str) -> Any:
    return json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text())


def test_pushed_image_has_its_config(registry: Registry, images: PushedImages) -> None:
    seen = inspect(registry, images.busybox, "--config")["config"]
    assert seen["Entrypoint"] == ["/bin/sh", "-c"]
    assert seen["Cmd"] == ["echo hello from the image"]
    assert "GREETING=hi" in seen["Env"]
    assert (seen["WorkingDir"], seen["User"], seen["StopSignal"]) == ("/srv", "app", "SIGINT")
    assert set(seen["ExposedPorts"]) == {"8080/tcp"}
    assert set(seen["Volumes"]) == {"/data"}


@pytest.mark.parametrize(("name", "layers"), [("busybox", 1), ("layered", 4)])
def test_inspect_with_credentials_gives_the_pushed_digest(registry: Registry, images: PushedImages, name: str,
                                                          layers: int) -> None:
    seen = inspect(registry, getattr(images, name))
    assert seen["Digest"] == getattr(images, f"{name}_digest")
    assert seen["Architecture"] == "amd64"
    assert len(seen["Layers"]) == layers


def test_registry_refuses_a_client_without_credentials(registry: Registry, images: PushedImages) -> None:
    with pytest.raises(RegistryError) as refused:
        skopeo("inspect", "--no-creds", "--cert-dir", str(registry.certs_dir()), f"docker://{images.busybox}")
    assert any(word in str(refused.value).lower() for word in ("unauthorized", "authentication required"))


def test_registry_certificate_is_verified(registry: Registry, images: PushedImages) -> None:
    """A client that trusts only the system's CAs refuses the registry: TLS is really checked, not skipped."""
    with pytest.raises(RegistryError, match="certificate"):
        skopeo("inspect", "--authfile", str(registry.authfile(registry.workdir / "auth.json")),
               f"docker://{images.busybox}")


def test_multiarch_index_lists_both_platforms(registry: Registry, images: PushedImages) -> None:
    index = json.loads(skopeo("inspect", "--raw", *registry.skopeo_options(), f"docker://{images.multi}").stdout)
    assert index["mediaType"] == OCI_INDEX
    assert sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]) == [
        ("linux", "amd64"), ("linux", "arm64")]


def test_pulling_for_arm64_gets_the_arm64_image(registry: Registry, images: PushedImages, tmp_path: Path) -> None:
    layout = tmp_path / "pulled"
    skopeo("--override-arch", "arm64", "copy", "--quiet", *registry.skopeo_options("src-"),
           f"docker://{images.multi}", f"oci:{layout}:pulled")
    manifest = blob(layout, tagged_manifest(layout, "pulled")["digest"])
    assert blob(layout, manifest["config"]["digest"])["architecture"] == "arm64"
    marker = layout / "blobs" / "sha256" / manifest["layers"][-1]["digest"].removeprefix("sha256:")
    listing = subprocess.run(["tar", "-xzOf", str(marker), "arch"], capture_output=True, check=True).stdout
    assert listing == b"arm64"


def layer_files(path: Path) -> dict[str, tarfile.TarInfo]:
    """A layer's entries by name; Python's tarfile, like GNU tar, refuses a tar without its end-of-archive blocks."""
    with tarfile.open(path) as tar:
        return {member.name: member for member in tar}


def layer_file(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        content = tar.extractfile(name)
        assert content is not None, f"{name} is no file in {path}"
        return content.read()


def test_layers_pulled_back_are_whole_tar_archives_with_the_changes(registry: Registry, images: PushedImages,
                                                                     tmp_path: Path) -> None:
    layout = tmp_path / "pulled"
    skopeo("copy", "--quiet", *registry.skopeo_options("src-"), f"docker://{images.layered}", f"oci:{layout}:pulled")
    manifest = blob(layout, tagged_manifest(layout, "pulled")["digest"])
    base, first, second, third = (layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
                                  for layer in manifest["layers"])
    entries = layer_files(base)
    assert entries["bin/sh"].linkname == "busybox"
    assert (entries["home/app"].uid, entries["home/app"].gid) == (1000, 1000)
    assert b"extra:x:2000:app" in layer_file(base, "etc/group")
    assert layer_file(first, "etc/motd") == b"first\n"
    assert layer_file(second, "etc/motd") == b"second\n"
    assert "opt/app/.wh.old.txt" in layer_files(second)
    assert layer_file(third, "usr/bin/hello") == LAYERED_LAYERS[2]["usr/bin/hello"]
    assert layer_files(third)["usr/bin/hello"].mode == 0o755


def test_same_inputs_build_the_same_image(tmp_path: Path) -> None:
    need(missing_for_registry())
    layouts = [build_image(tmp_path / str(n), layers=LAYERED_LAYERS[:1], arch="arm64") for n in range(2)]
    assert len({tagged_manifest(layout, "latest")["digest"] for layout in layouts}) == 1
