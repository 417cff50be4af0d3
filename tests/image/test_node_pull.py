"""`--pull node` on the bed (issue 20, item 3's second way): the node pulls a public image itself through Proxmox
VE 9.1's `oci-registry-pull` (the bed's model runs the real skopeo), Proxmox unpacks it into a temporary container,
and the node packs pveoci's template of it; the workstation asks the registry for the image's config only, and
sends nothing of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.image.registry import Registry
from tests.image.test_run_image import Runner
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


@pytest.fixture
def run(lxc_bed: Testbed, public: Registry, tmp_path: Path) -> Iterator[Runner]:
    """The command line, no credentials here; the nodes trust the registry and the token may pull there."""
    lxc_bed.pve.grant(lxc_bed.token_id.split("!")[0], "/nodes", "Sys.AccessNetwork")
    lxc_bed.pve.oci_cert_dir = public.certs_dir()
    yield Runner(lxc_bed, public, tmp_path)
    lxc_bed.pve.oci_cert_dir = None


def tasks(bed: Testbed, kind: str) -> int:
    return sum(1 for t in bed.pve.tasklog if t["type"] == kind)


def template_dir(bed: Testbed, node: str = "pve1") -> list[str]:
    return sorted(p.name for p in bed.pve.template_dir(node).iterdir())


def blobs(run: Runner) -> list[str]:
    """The layer and config blobs this machine fetched (its image store)."""
    folder = run.tmp / "cache" / "pveoci" / "images" / "oci" / "blobs" / "sha256"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def unpackers(bed: Testbed) -> list[Any]:
    return [ct for ct in bed.pve.cts if "pveoci-unpack" in str(ct.config.get("tags", ""))]


def test_the_node_pulls_a_public_image_and_the_workstation_sends_nothing_of_it(run: Runner, public_app: str) -> None:
    app = public_app
    pulls, creates = tasks(run.bed, "ociregistrypull"), tasks(run.bed, "vzcreate")
    done = run("run", "--image", app, "--cert-dir", run.certs, "--node", "pve1", "--pull", "node", "one", auth=False)
    assert (done.returncode, done.stdout) == (0, "from the node uid=1000 gid=1000 groups=1000 2000 /srv\n"), \
        done.stderr
    assert tasks(run.bed, "ociregistrypull") == pulls + 1
    assert tasks(run.bed, "vzcreate") == creates + 2   # the temporary container, then the container
    assert blobs(run) == []                              # no layer came here
    left = template_dir(run.bed)
    assert [n for n in left if n.endswith(".tar.zst")] == [n for n in left if n.startswith("pveoci-")]
    assert len(left) == 1, left                          # the template, and no archive, no hidden file
    assert unpackers(run.bed) == []
    # again, with another process: nothing pulled or unpacked, one request to the registry (the tag)
    seen = len(run.requests())
    again = run("run", "--image", app, "--cert-dir", run.certs, "--node", "pve1", "-u", "0", "two", "--", "id -u",
                auth=False)
    assert (again.returncode, again.stdout) == (0, "0\n"), again.stderr
    assert tasks(run.bed, "ociregistrypull") == pulls + 1
    assert tasks(run.bed, "vzcreate") == creates + 3
    asked = run.requests()[seen:]
    assert [r for r in asked if r != "GET /v2/ 200"] == ["GET /v2/node/app/manifests/1 200"], asked
    assert template_dir(run.bed) == left


def test_auto_pulls_on_the_node_when_it_can_and_here_when_it_cannot(run: Runner, public_app: str) -> None:
    app = public_app
    pulls = tasks(run.bed, "ociregistrypull")
    done = run("create", "--image", app, "--cert-dir", run.certs, "--node", "pve1", "one", auth=False)
    assert done.returncode == 0, done.stderr
    assert tasks(run.bed, "ociregistrypull") == pulls + 1
    assert blobs(run) == []
    # a digest reference: Proxmox pulls tags only, so this machine pulls it
    digest = json.loads(run("state", "one").stdout)["annotations"]["io.pveoci.image.digest"]
    name = app.rsplit(":", 1)[0]
    other = run("create", "--image", f"{name}@{digest}", "--cert-dir", run.certs, "--node", "pve2", "two",
                auth=False)
    assert other.returncode == 0, other.stderr
    assert tasks(run.bed, "ociregistrypull") == pulls + 1
    assert blobs(run) != []
    forced = run("create", "--image", f"{name}@{digest}", "--pull", "node", "--cert-dir", run.certs, "three",
                 auth=False)
    assert forced.returncode != 0
    assert forced.stderr.strip().splitlines()[-1].endswith(
        "--pull node: Proxmox pulls by tag only, and this reference names a digest; pull it here instead "
        "(--pull workstation)"), forced.stderr


def test_a_token_that_may_not_pull_on_the_node_gets_this_machines_pull(lxc_bed: Testbed, public: Registry,
                                                                        public_app: str, tmp_path: Path) -> None:
    lxc_bed.pve.oci_cert_dir = public.certs_dir()   # the bed's token: pveoci's privileges, no Sys.AccessNetwork
    try:
        run = Runner(lxc_bed, public, tmp_path)
        forced = run("create", "--image", public_app, "--cert-dir", run.certs, "--node", "pve1", "--pull", "node",
                     "one", auth=False)
        assert forced.returncode != 0
        said = forced.stderr.strip().splitlines()
        assert said[-1] == (f"pveoci: error: node pve1 could not pull {public_app}: permission denied: "
                            "pveoci@pve!bed lacks Sys.AccessNetwork on /nodes/pve1"), forced.stderr
        assert unpackers(lxc_bed) == []
        done = run("run", "--image", public_app, "--cert-dir", run.certs, "--node", "pve1", "two", auth=False)
        assert (done.returncode, done.stdout) == (0, "from the node uid=1000 gid=1000 groups=1000 2000 /srv\n"), \
            done.stderr
        assert blobs(run) != []     # pulled here: the node could not
        pulls = tasks(lxc_bed, "ociregistrypull")
        again = run("--debug", "run", "--image", public_app, "--cert-dir", run.certs, "--node", "pve1", "three",
                    auth=False)
        assert again.returncode == 0, again.stderr
        assert tasks(lxc_bed, "ociregistrypull") == pulls   # not asked again for an hour
        assert "lacks Sys.AccessNetwork on /nodes/pve1; pulling it here instead" in again.stderr
    finally:
        lxc_bed.pve.oci_cert_dir = None


def test_an_update_to_an_image_the_node_pulls(run: Runner, public: Registry, public_app: str,
                                              tmp_path: Path) -> None:
    from tests.conftest import need
    from tests.image.conftest import PUBLIC_APP
    from tests.image.registry import GROUP, PASSWD, build_image, missing_for_registry, push

    need(missing_for_registry())
    layout = build_image(tmp_path / "v2", layers=[{"etc/passwd": PASSWD.encode(), "etc/group": GROUP.encode(),
                                                   "srv/version": b"2\n"}],
                         config={**PUBLIC_APP, "Cmd": ["cat /srv/version; exec sleep 1000"]})
    push(public, layout, "latest", "node/app:2")
    made = run("run", "-d", "--image", public_app, "--cert-dir", run.certs, "--node", "pve1", "web", auth=False)
    assert made.returncode == 0, made.stderr
    pulls = tasks(run.bed, "ociregistrypull")
    moved = run("update", "--image", f"{public.host}/node/app:2", "--cert-dir", run.certs, "--grace", "1", "web",
                auth=False)
    assert moved.returncode == 0, moved.stderr
    assert tasks(run.bed, "ociregistrypull") == pulls + 1
    assert blobs(run) == []
    seen = run("exec", "web", "sh", "-c", "id -u; cat /srv/version")
    assert (seen.returncode, seen.stdout) == (0, "1000\n2\n"), seen.stderr
    assert unpackers(run.bed) == []
    assert not [n for n in template_dir(run.bed) if not n.endswith(".tar.zst")]


def test_the_pct_backend_has_the_node_pull_too(run: Runner, public_app: str) -> None:
    pulls = tasks(run.bed, "ociregistrypull")
    done = run("run", "--image", public_app, "--cert-dir", run.certs, "--node", "pve2", "--pull", "node", "p",
               backend="pct", auth=False)
    assert (done.returncode, done.stdout) == (0, "from the node uid=1000 gid=1000 groups=1000 2000 /srv\n"), \
        done.stderr
    assert tasks(run.bed, "ociregistrypull") == pulls + 1
    assert blobs(run) == []
    assert unpackers(run.bed) == []
    assert [n.startswith("pveoci-") and n.endswith(".tar.zst") for n in template_dir(run.bed, "pve2")] == [True]


def test_a_multi_arch_image_the_node_pulls_is_the_nodes_architectures(run: Runner, public: Registry,
                                                                      tmp_path: Path) -> None:
    import os

    from tests.image.registry import build_image, push_multiarch

    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "amd64")
    order = [a for a in ("arm64", "amd64") if a != host] + [host]   # the node's last: the first is not taken
    layouts = {arch: build_image(tmp_path / arch, layers=[{"arch": f"{arch}\n".encode()}], arch=arch,
                                 config={"Cmd": ["cat", "/arch"]}) for arch in order}
    push_multiarch(public, layouts, "node/multi:1")
    done = run("run", "--image", f"{public.host}/node/multi:1", "--cert-dir", run.certs, "--node", "pve1",
               "--pull", "node", "m", auth=False)
    assert (done.returncode, done.stdout) == (0, f"{host}\n"), done.stderr
    assert blobs(run) == []


def test_a_program_the_nodes_report_lacks_is_refused_in_one_line(run: Runner, public_app: str) -> None:
    creates = tasks(run.bed, "vzcreate")
    done = run("create", "--image", public_app, "--cert-dir", run.certs, "--node", "pve1", "--pull", "node",
               "--entrypoint", "/opt/nowhere", "x", auth=False)
    assert done.returncode != 0
    said = done.stderr.strip().splitlines()
    assert len(said) == 1, done.stderr
    assert said[0].startswith("pveoci: error: "), said
    assert "/opt/nowhere" in said[0]
    assert unpackers(run.bed) == []
    assert tasks(run.bed, "vzcreate") == creates + 1   # the temporary container only: no container was made


def test_template_push_says_the_node_made_it(run: Runner, public_app: str) -> None:
    first = run("template", "push", "--image", public_app, "--cert-dir", run.certs, "--node", "pve2", "--pull", "node",
                "-o", "json", auth=False)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert (made["made_on_node"], made["uploaded"], made["bytes_sent"], made["node"]) == (True, False, 0, "pve2")
    again = run("template", "push", "--image", public_app, "--cert-dir", run.certs, "--node", "pve2", "--pull", "node",
                auth=False)
    assert (again.returncode, again.stdout) == (0, f"{made['volid']}: already on local (pve2); nothing sent\n"), \
        again.stderr
    assert unpackers(run.bed) == []


def test_the_claim_beats_over_ssh_while_the_node_works(lxc_bed: Testbed, public: Registry, public_app: str,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat thread touches the claim on the node over the same SSH connection the make's own commands
    use, at once (BEAT made short so that it beats during a make of seconds)."""
    import pveoci
    from pveoci.image.source import ImageRequest
    from pveoci.image.store import Access
    from pveoci.runtime import nodeimage
    from pveoci.template.node_claim import RemoteClaim

    lxc_bed.pve.grant(lxc_bed.token_id.split("!")[0], "/nodes", "Sys.AccessNetwork")
    lxc_bed.pve.oci_cert_dir = public.certs_dir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setattr(nodeimage, "BEAT", 0.01)
    beats: list[str] = []
    touch = RemoteClaim.heartbeat

    def counted(self: RemoteClaim) -> None:
        self._touched = 0.0   # past the connector's own throttle: every beat goes to the node
        touch(self)
        beats.append(self.path)

    monkeypatch.setattr(RemoteClaim, "heartbeat", counted)
    try:
        with pveoci.connect(config=lxc_bed.config_path, root=tmp_path / "lib") as rt:
            made = rt.create("beat", image=ImageRequest(public_app, access=Access(cert_dir=str(public.certs_dir())),
                                                        pull="node"), node="pve1")
            assert made.status == "created"
    finally:
        lxc_bed.pve.oci_cert_dir = None
    assert len(beats) >= 10, beats
    assert unpackers(lxc_bed) == []
    assert [n for n in template_dir(lxc_bed) if not n.endswith(".tar.zst")] == []
