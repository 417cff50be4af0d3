"""`pveoci update --image` on the bed (issue 20, item 4): a real LXC container moved to another image pulled from
the loopback registry, keeping its VMID, node, mount point and the data in it, MAC address, resources and
annotations; a new image that does not run is rolled back; a killed update is finished or undone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.image.registry import Registry, build_image, push
from tests.image.test_run_image import Runner
from tests.testbed import Testbed

pytestmark = pytest.mark.bed

ROLLED_BACK = 33
# Each version says which it is, appends to the volume's log, and runs on (a service).
SERVICE = "echo \"$VERSION $(cat /etc/version)\" >> /data/log; echo $VERSION >> /var/lib/app/log; exec sleep 1000"


@dataclass(frozen=True)
class Apps:
    v1: str
    v2: str
    broken: str


@pytest.fixture(scope="module")
def apps(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Apps:
    work = tmp_path_factory.mktemp("apps")

    def app(name: str, version: str, cmd: str) -> str:
        layout = build_image(work / name, layers=[{"etc/version": f"{version}\n".encode(),
                                                   f"opt/{name}": b"only in this version\n",
                                                   "var/lib/app/README": f"the app's state, {name}\n".encode()}],
                             config={"Entrypoint": ["/bin/sh", "-c"], "Cmd": [cmd], "Env": [f"VERSION={name}"],
                                     "StopSignal": "SIGTERM", "Volumes": {"/var/lib/app": {}}})
        push(registry, layout, "latest", f"app:{name}")
        return f"{registry.host}/app:{name}"

    return Apps(v1=app("v1", "1", SERVICE), v2=app("v2", "2", SERVICE), broken=app("broken", "3", "exit 3"))


@pytest.fixture
def run(lxc_bed: Testbed, registry: Registry, tmp_path: Path) -> Runner:
    return Runner(lxc_bed, registry, tmp_path)


def config_of(bed: Testbed, vmid: int) -> dict[str, Any]:
    return dict(bed.pve.ct(vmid).config)


def state(run: Runner, cid: str) -> dict[str, Any]:
    done = run("state", cid)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def in_ct(run: Runner, cid: str, script: str) -> str:
    done = run("exec", cid, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    return done.stdout


def with_volume(run: Runner, cid: str, volume: Path) -> int:
    """A container of app v1, stopped, then given a mount point (a directory of the node, as `pct set -mp0` does)
    holding data of its own."""
    made = run("run", "-d", "--image", run.images.v1, "--cert-dir", run.certs, "--node", "pve1", cid)
    assert made.returncode == 0, made.stderr
    vmid = state(run, cid)["pveoci"]["vmid"]
    assert run("kill", cid, "KILL").returncode == 0
    wait_status(run, cid, "stopped")
    volume.mkdir()
    (volume / "precious").write_text("the container's own data\n")
    run.bed.pve.ct(vmid).config["mp0"] = f"{volume},mp=/data"
    return int(vmid)


def wait_status(run: Runner, cid: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while state(run, cid)["status"] != status:
        assert time.monotonic() < deadline, f"{cid} never became {status}"
        time.sleep(0.2)


@pytest.fixture
def runner(run: Runner, apps: Apps) -> Runner:
    run.images = apps  # type: ignore[attr-defined]
    return run


def test_an_update_keeps_the_containers_own_and_a_failed_one_is_rolled_back(runner: Runner, tmp_path: Path) -> None:
    run = runner
    vmid = with_volume(run, "web", tmp_path / "volume")
    kept_before = {k: v for k, v in config_of(run.bed, vmid).items() if k not in ("description", "tags", "entrypoint")}
    assert kept_before["net0"].count("hwaddr=") == 1

    dry = run("update", "web", "--image", run.images.v2, "--cert-dir", run.certs, "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    shown = json.loads(dry.stdout)
    assert shown["dry_run"] is True
    assert shown["image"].endswith("app:v2")
    assert shown["size"] > 0
    assert shown["process"]["env"][-1] == "VERSION=v2"
    assert shown["kept"]["mp0"].endswith(",mp=/data")
    assert shown["keeps"] == ["/data", "/var/lib/app"]
    assert config_of(run.bed, vmid) == {**kept_before, **{k: config_of(run.bed, vmid)[k]
                                                          for k in ("description", "tags", "entrypoint")}}
    assert state(run, "web")["status"] == "stopped"
    said = run("update", "web", "--image", run.images.v2, "--cert-dir", run.certs, "--dry-run")
    assert said.returncode == 0, said.stderr
    assert said.stdout.splitlines()[0].startswith(f"would update web (CT {vmid} on pve1, stopped) to ")
    assert "  env          VERSION=v2" in said.stdout.splitlines()
    assert f"  keeps        mp0: {kept_before['mp0']}" in said.stdout.splitlines()

    updated = run("update", "web", "--image", run.images.v2, "--cert-dir", run.certs)
    assert updated.returncode == 0, updated.stderr
    assert "updated web (CT" in updated.stdout
    assert "now          running" in updated.stdout
    after = state(run, "web")
    assert after["status"] == "running"
    assert after["pveoci"]["vmid"] == vmid
    assert after["pveoci"]["node"] == "pve1"
    assert after["annotations"]["org.opencontainers.image.ref.name"].endswith("/app:v2")   # the image's own: new
    assert after["annotations"]["io.pveoci.image.digest"] == shown["digest"]
    kept_after = {k: v for k, v in config_of(run.bed, vmid).items() if k not in ("description", "tags", "entrypoint")}
    assert kept_after == kept_before      # MAC address, mount point, resources: the same
    assert in_ct(run, "web", "cat /etc/version; ls /opt; cat /data/precious; cat /data/log") == (
        "2\nv2\nthe container's own data\nv2 2\n")
    # The image's volume: what the old process wrote there stays (and the old image's files in it).
    assert in_ct(run, "web", "cat /var/lib/app/log /var/lib/app/README") == "v1\nv2\nthe app's state, v1\n"
    rootfs = run.bed.ct_dir("pve1", vmid) / "rootfs"
    assert not (rootfs / ".pveoci-update").exists()
    assert not (rootfs / "data" / "precious").exists()   # the volume's data stayed in the volume
    assert [p.name for p in run.bed.pve.template_dir("pve1").iterdir() if p.name.startswith(".")] == []

    # A new image whose process ends at once: back on v2, started again, the volume as it was.
    failed = run("update", "web", "--image", run.images.broken, "--cert-dir", run.certs, "--grace", "5")
    assert failed.returncode == ROLLED_BACK, failed
    assert "did not take" in failed.stderr
    assert "exited with status 3" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    wait_status(run, "web", "running")
    assert in_ct(run, "web", "cat /etc/version; ls /opt; cat /data/log") == "2\nv2\nv2 2\nv2 2\n"
    assert not (rootfs / ".pveoci-update").exists()
    kept_now = {k: v for k, v in config_of(run.bed, vmid).items() if k not in ("description", "tags", "entrypoint")}
    assert kept_now == kept_before
    assert state(run, "web")["pveoci"]["template"] == after["pveoci"]["template"]

    # The same image again: nothing to do, nothing restarted.
    pid = state(run, "web")["pid"]
    again = run("update", "web", "--image", run.images.v2, "--cert-dir", run.certs)
    assert again.returncode == 0, again
    assert "nothing changed" in again.stdout, again
    assert state(run, "web")["pid"] == pid
    assert run("delete", "-f", "web").returncode == 0


def test_a_killed_update_is_finished_or_undone_by_the_next_command(runner: Runner, tmp_path: Path) -> None:
    run = runner
    vmid = with_volume(run, "svc", tmp_path / "volume")
    rootfs = run.bed.ct_dir("pve1", vmid) / "rootfs"
    on = {state(run, "svc")["pveoci"]["template"]: "1"}
    assert run("update", "svc", "--image", run.images.v2, "--cert-dir", run.certs, "--grace", "0").returncode == 0
    on[state(run, "svc")["pveoci"]["template"]] = "2"
    env = run.bed.env(XDG_CACHE_HOME=str(run.tmp / "cache"), XDG_STATE_HOME=str(run.tmp / "state"),
                      XDG_RUNTIME_DIR=str(run.tmp / "run"), HOME=str(run.tmp / "home"),
                      REGISTRY_AUTH_FILE=str(run.authfile))
    outcomes = []
    for delay in (0.4, 0.9, 1.4, 2.0, 3.0):
        version = (rootfs / "etc" / "version").read_text().strip()
        target = run.images.v1 if version == "2" else run.images.v2
        proc = subprocess.Popen([sys.executable, "-m", "pveoci", "--root", str(run.tmp / "root"), "update", "svc",
                                 "--image", target, "--cert-dir", run.certs, "--grace", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # The next command for it settles the update: the container is whole, on one image or the other.
        seen = state(run, "svc")
        now = (rootfs / "etc" / "version").read_text().strip()
        outcomes.append((version, now))
        assert on[seen["pveoci"]["template"]] == now, (delay, seen)
        assert seen["status"] == "running", (delay, seen)
        assert in_ct(run, "svc", "cat /etc/version").strip() == now
        assert not (rootfs / ".pveoci-update").exists()
        assert (tmp_path / "volume" / "precious").read_text() == "the container's own data\n"
    # Some were killed before the config changed (undone), some after (finished).
    assert any(a == b for a, b in outcomes), outcomes
    assert any(a != b for a, b in outcomes), outcomes
    assert run("delete", "-f", "svc").returncode == 0


def test_an_update_over_the_pct_backend(runner: Runner) -> None:
    """Proxmox's own tools on the node over SSH: the same steps (pct stop, the swap, pct set, pct start)."""
    run = runner
    made = run("run", "-d", "--image", run.images.v1, "--cert-dir", run.certs, "--node", "pve1", "tool",
               backend="pct")
    assert made.returncode == 0, made.stderr
    created = run("update", "tool", "--image", run.images.v2, "--cert-dir", run.certs, "-o", "json", backend="pct")
    assert created.returncode == 0, created.stderr
    change = json.loads(created.stdout)
    assert change["status"] == "running"
    assert change["state"]["status"] == "running"
    assert in_ct(run, "tool", "cat /etc/version; ls /opt") == "2\nv2\n"
    calls = [c["argv"][:1] for c in run.bed.tool_calls("pve1")]
    assert ["mount"] in calls
    assert ["unmount"] in calls
    assert run("delete", "-f", "tool", backend="pct").returncode == 0
