"""Image references: every form skopeo and podman take, and nothing else reaching skopeo's command line."""

from __future__ import annotations

import pytest

from pveoci import errors
from pveoci.image.reference import parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "name", "tag", "digest", "skopeo"), [
    ("busybox", "busybox", "", "", "docker://busybox:latest"),
    ("team/app:1.2", "team/app", "1.2", "", "docker://team/app:1.2"),
    ("registry.example:5000/team/app:1.2", "registry.example:5000/team/app", "1.2", "",
     "docker://registry.example:5000/team/app:1.2"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app", "", "", "docker://127.0.0.1:5000/app:latest"),
    ("localhost/app:v1", "localhost/app", "v1", "", "docker://localhost/app:v1"),
    (f"app@{DIGEST}", "app", "", DIGEST, f"docker://app@{DIGEST}"),
    (f"docker://reg.example/app:1@{DIGEST}", "reg.example/app", "1", DIGEST, f"docker://reg.example/app:1@{DIGEST}"),
])
def test_registry_references(text: str, name: str, tag: str, digest: str, skopeo: str) -> None:
    ref = parse(text)
    assert (ref.transport, ref.name, ref.tag, ref.digest) == ("docker", name, tag, digest)
    assert ref.skopeo() == skopeo
    assert ref.skopeo(DIGEST) == f"docker://{name}@{DIGEST}"


def test_a_registry_is_told_from_a_path() -> None:
    assert parse("team/app").domain == ""
    assert parse("reg.example/app").domain == "reg.example"
    assert parse("127.0.0.1:5000/app").domain == "127.0.0.1:5000"


@pytest.mark.parametrize(("text", "transport", "path", "inner"), [
    ("oci-archive:/tmp/app.tar", "oci-archive", "/tmp/app.tar", ""),
    ("oci-archive:/tmp/app.tar:v1", "oci-archive", "/tmp/app.tar", "v1"),
    ("docker-archive:/tmp/a b.tar", "docker-archive", "/tmp/a b.tar", ""),
    ("oci:/srv/layout:app", "oci", "/srv/layout", "app"),
])
def test_local_references(text: str, transport: str, path: str, inner: str) -> None:
    ref = parse(text)
    assert (ref.transport, ref.path, ref.inner) == (transport, path, inner)
    assert ref.skopeo() == f"{transport}:{path}" + (f":{inner}" if inner else "")


def test_a_relative_archive_path_is_made_absolute(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/tmp")
    assert parse("oci-archive:app.tar").path == "/tmp/app.tar"


@pytest.mark.parametrize("text", [
    "", "-v", "--override-arch=x", "Upper/Case", "app:", "app@sha256:short", "app@md5:" + "a" * 32,
    "app:tag with space", "app\n", "a\x00b", "http://reg/app", "ftp://x", "app::1", "/abs/path",
    "reg.example/" + "a" * 300, "x" * 5000, "oci-archive:", "app:" + "t" * 200,
])
def test_what_is_no_reference_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(errors.ImageError) as caught:
        parse(text)
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 32
