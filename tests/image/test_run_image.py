"""Images on the bed (issue 20): pulled from a real registry on loopback (TLS, basic auth), their layers packed into a
template once, their config the process of a real LXC container; bad references and refusals in one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.image.conftest import PushedImages
from tests.image.registry import Registry
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

IMAGE_ERROR = 32


class Runner:
    """pveoci's command line against the bed, with this test's own state, cache (so its own image store) and the
    registry's credentials in an auth file (REGISTRY_AUTH_FILE, as podman's users set it)."""

    def __init__(self, bed: Testbed, registry: Registry, tmp: Path) -> None:
        self.bed, self.registry, self.tmp = bed, registry, tmp
        self.authfile = registry.authfile(tmp / "auth.json")
        self.certs = str(registry.certs_dir())

    def __call__(self, *args: str, auth: bool = True, backend: str = "api",
                 timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = self.bed.env(XDG_CACHE_HOME=str(self.tmp / "cache"), XDG_STATE_HOME=str(self.tmp / "state"),
                           XDG_RUNTIME_DIR=str(self.tmp / "run"), HOME=str(self.tmp / "home"))
        env.pop("REGISTRY_AUTH_FILE", None)
        if auth:
            env["REGISTRY_AUTH_FILE"] = str(self.authfile)
        return subprocess.run([sys.executable, "-m", "pveoci", "--backend", backend, "--root", str(self.tmp / "root"),
                               *args], env=env, capture_output=True, text=True, check=False, timeout=timeout)

    def requests(self) -> list[str]:
        """The registry's access log so far: one "METHOD PATH STATUS" per request."""
        text = self.registry.log_file.read_text(errors="replace")
        return [f"{m[1]} {m[2]} {m[3]}" for m in re.finditer(r'"(GET|HEAD|POST|PUT|PATCH) (/v2/\S*) HTTP/[\d.]+" (\d+)',
                                                                  text)]


@pytest.fixture
def run(lxc_bed: Testbed, registry: Registry, tmp_path: Path) -> Runner:
    return Runner(lxc_bed, registry, tmp_path)


def templates(bed: Testbed, node: str = "pve1") -> list[str]:
    return sorted(p.name for p in bed.pve.template_dir(node).iterdir() if p.name.endswith(".tar.zst"))


def test_an_image_runs_as_its_config_says_and_is_packed_once(run: Runner, images: PushedImages) -> None:
    before = templates(run.bed)
    first = run("run", "--image", images.busybox, "--cert-dir", run.certs, "--node", "pve1", "one")
    assert (first.returncode, first.stdout) == (0, "hello from the image\n"), first.stderr
    made = sorted(set(templates(run.bed)) - set(before))
    assert len(made) == 1
    # the same image again, the process changed by the flags: one request for the tag's manifest, no blob, no pack
    seen = len(run.requests())
    again = run("run", "--image", images.busybox, "--cert-dir", run.certs, "--node", "pve1", "-e", "GREETING=hey",
                "-e", "EXTRA=1", "two", "--", "id -u; id -g; id -G; pwd; echo $GREETING $EXTRA; echo $PATH")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["1000", "1000", "1000 2000", "/srv", "hey 1", "/usr/local/sbin:"
                                         "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    asked = run.requests()[seen:]
    assert [r for r in asked if "/manifests/" in r and r.endswith(" 200")] == ["GET /v2/busybox/manifests/1 200"], asked
    assert not [r for r in asked if "/blobs/" in r], asked
    assert sorted(set(templates(run.bed)) - set(before)) == made
    assert "packing" not in again.stderr
    # by digest: not one request to the registry
    seen = len(run.requests())
    pinned = run("run", "--image", f"{images.busybox.rsplit(':', 1)[0]}@{images.busybox_digest}",
                 "--cert-dir", run.certs, "--node", "pve1", "-u", "root", "-w", "/tmp", "--entrypoint", "/bin/sh",
                 "three", "--", "-c", "id -u; pwd")
    assert (pinned.returncode, pinned.stdout.split()) == (0, ["0", "/tmp"]), pinned.stderr
    assert run.requests()[seen:] == []
    assert run("list", "-q").stdout == ""   # each foreground run deleted its container


def test_layers_whiteouts_and_a_multi_arch_index(run: Runner, images: PushedImages) -> None:
    # over the pct backend (Proxmox's tools on the node over SSH): the same code path whatever the backend
    layered = run("run", "--image", images.layered, "--cert-dir", run.certs, "--node", "pve1", "lay", "--",
                  "sh", "-c", "cat /etc/motd; ls /opt/app; hello", backend="pct")
    assert layered.returncode == 0, layered.stderr
    assert layered.stdout.splitlines() == ["second", "keep.txt", "hello from layer three"]
    multi = run("run", "--image", images.multi, "--cert-dir", run.certs, "--node", "pve1", "multi")
    assert (multi.returncode, multi.stdout.strip()) == (0, "amd64"), multi.stderr   # the bed's nodes are x86_64


def test_plan_shows_the_images_process_volumes_and_ports(run: Runner, images: PushedImages) -> None:
    shown = run("plan", "--image", images.busybox, "--cert-dir", run.certs, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    plan = json.loads(shown.stdout)
    assert plan["image"] == images.busybox
    assert plan["process"]["args"] == ["/bin/sh", "-c", "echo hello from the image"]
    assert (plan["process"]["cwd"], plan["process"]["uid"], plan["process"]["gid"]) == ("/srv", 1000, 1000)
    fields = {f["field"]: f["status"] for f in plan["findings"]}
    assert fields["image.Volumes[/data]"] == "approximated"
    assert fields["image.ExposedPorts[8080/tcp]"] == "provided"
    stop = plan["stop_signal"]
    assert stop == "SIGINT", stop


def test_a_created_image_container_is_an_oci_container_with_a_real_bundle(run: Runner, images: PushedImages) -> None:
    made = run("create", "--image", images.busybox, "--cert-dir", run.certs, "--node", "pve1", "-o", "json", "svc",
               "--", "trap 'echo got TERM; exit 3' TERM; echo up; while :; do sleep 1; done")
    assert made.returncode == 0, made.stderr
    state = json.loads(made.stdout)
    assert state["status"] == "created"
    config = json.loads(Path(state["bundle"], "config.json").read_text())   # what plan and state show
    assert config["annotations"]["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert config["process"]["args"][-1].startswith("trap ")
    assert run("start", "svc").returncode == 0
    inside = run("exec", "svc", "--", "sh", "-c", "id -u; id -G; pwd; echo $GREETING")   # as the image's process
    assert inside.stdout.split() == ["1000", "1000", "2000", "/srv", "hi"], inside
    assert run("kill", "svc").returncode == 0
    waited = run("logs", "--follow", "svc")
    assert (waited.returncode, waited.stdout) == (3, "up\ngot TERM\n"), waited
    assert run("delete", "svc").returncode == 0


@pytest.mark.parametrize(("args", "words"), [
    (["--image", "Not/A:Ref:"], "invalid image reference"),
    (["--image", "127.0.0.1:1/nothing:1"], "cannot reach the registry"),
])
def test_bad_references_fail_before_anything_is_made(run: Runner, args: list[str], words: str) -> None:
    before = (len(run.bed.pve.cts), templates(run.bed))
    failed = run("run", "-d", *args, "--node", "pve1", "bad")
    assert failed.returncode == IMAGE_ERROR, failed
    assert words in failed.stderr, failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert (len(run.bed.pve.cts), templates(run.bed)) == before


def test_registry_refusals_are_one_line_and_make_nothing(run: Runner, images: PushedImages) -> None:
    before = (len(run.bed.pve.cts), templates(run.bed))
    host = images.busybox.split("/", 1)[0]
    cases = [
        (dict(auth=False), [images.busybox, "--cert-dir", run.certs], "401"),
        ({}, [images.busybox], "certificate is not trusted"),
        ({}, [f"{host}/nothing:1", "--cert-dir", run.certs], "no such image"),
        ({}, [f"{host}/busybox@sha256:{'0' * 64}", "--cert-dir", run.certs], "no such image"),
    ]
    for options, args, words in cases:
        failed = run("run", "-d", "--image", *args, "--node", "pve1", "bad", **options)  # type: ignore[arg-type]
        assert failed.returncode == IMAGE_ERROR, (args, failed)
        assert words in failed.stderr, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert "Traceback" not in failed.stderr
    assert (len(run.bed.pve.cts), templates(run.bed)) == before
    assert [p.name for p in run.bed.pve.template_dir("pve1").iterdir() if p.name.startswith(".")] == []
    assert run("list", "-q").stdout == ""


def test_creates_of_one_new_image_at_once_pull_pack_and_send_it_once(run: Runner, images: PushedImages) -> None:
    """Four creates of an image neither this workstation nor the node has, at once: the store takes one pull at a
    time, the node's claim one upload; every container is made, and one template."""
    import concurrent.futures

    before = templates(run.bed)
    seen = len(run.requests())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda n: run("create", "--image", images.layered, "--cert-dir", run.certs,
                                           "--node", "pve1", f"many{n}"), range(4)))
    assert [m.returncode for m in made] == [0, 0, 0, 0], [m.stderr for m in made]
    assert len(set(templates(run.bed)) - set(before)) == 1
    blobs = [r for r in run.requests()[seen:] if "/blobs/" in r and r.startswith("GET") and r.endswith(" 200")]
    assert len(blobs) == len(set(blobs)), blobs   # each layer fetched once
    for n in range(4):
        assert run("delete", "-f", f"many{n}").returncode == 0
    hidden = [p.name for p in run.bed.pve.template_dir("pve1").iterdir() if p.name.startswith(".")]
    assert hidden == []   # no claim, no partial file left in the storage
