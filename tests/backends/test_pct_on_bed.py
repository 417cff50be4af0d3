"""The pct backend on the bed: Proxmox's own tools over each node's real sshd, or on a node itself, with real
containers; nothing a user gives ever runs as a command on a node."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pveoci import settings
from pveoci.ssh import SshConnector, run
from tests.testbed import Testbed

pytestmark = pytest.mark.bed


def pveoci(bed: Testbed, root: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pveoci", "--backend", "pct", "--root", str(root), *args],
                          env=bed.env(), capture_output=True, text=True, check=False, timeout=timeout)


def hostile(canary: Path) -> list[str]:
    return [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"' ; touch {canary} '",
            f'" ; touch {canary} "', f"x\ntouch {canary}\n", "\\"]


def test_hostile_strings_through_the_pct_backend_execute_nothing_on_a_node(lxc_bed: Testbed, busybox_bundle: Path,
                                                                           tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    words = hostile(canary)
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["hostname"] = f"web;touch {canary}$(touch {canary})"
    config["process"]["env"] += [f"HOSTILE{i}={word}" for i, word in enumerate(words)]
    config["annotations"] = {f"org.example.{i}": word for i, word in enumerate(words)}
    mount = {"destination": f"/mnt/$(touch {canary})", "type": "bind", "source": f"/srv/a;touch {canary}`x`'\"",
             "options": ["rbind"]}
    config["mounts"].append(mount)
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "cache"

    made = pveoci(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "canary")
    assert made.returncode == 0, made.stderr
    state = json.loads(pveoci(lxc_bed, root, "state", "canary").stdout)
    assert state["annotations"] == config["annotations"]
    environ = pveoci(lxc_bed, root, "exec", "canary", "--", "sh", "-c", "cat /proc/$(cat /.pveoci/run/pid)/environ")
    assert environ.stdout == "\0".join(config["process"]["env"]) + "\0"  # exactly, newlines and quotes included
    echoed = pveoci(lxc_bed, root, "exec", "canary", "--", "echo", *words)
    assert echoed.stdout == " ".join(words) + "\n"
    ct = lxc_bed.pve.ct(state["pveoci"]["vmid"])
    assert ct.config["mp0"] == f"{mount['source']},mp={mount['destination']}"
    for cid in (f"x;touch {canary}", f"$(touch {canary})", f"`touch {canary}`", "a'b", "a\nb"):
        refused = pveoci(lxc_bed, root, "create", "-b", str(busybox_bundle), cid)
        assert (refused.returncode, refused.stderr) == (13, "pveoci: error: invalid container ID format\n")
    assert pveoci(lxc_bed, root, "delete", "-f", "canary").returncode == 0

    assert not canary.exists()
    for node in ("pve1", "pve2"):
        for line in lxc_bed.sshd(node).commands():
            assert shlex.join(shlex.split(line)) == line, line  # every word of every command line quoted
    calls = lxc_bed.tool_calls("pve1")
    created = next(c["argv"] for c in calls if c["argv"][:1] == ["create"])
    assert f"--mp0={mount['source']},mp={mount['destination']}" in created  # one word, as written
    execs = [c["argv"] for c in calls if c["argv"][:2] == ["exec", str(state["pveoci"]["vmid"])]]
    assert any(argv[-len(words) - 1:] == ["echo", *words] for argv in execs)  # each word as it was given


def test_what_a_command_line_cannot_carry_goes_through_stdin(lxc_bed: Testbed, busybox_bundle: Path,
                                                             tmp_path: Path) -> None:
    # A spec longer than an entrypoint option may be (pveoci.runtime.initfeed.ENTRYPOINT_MAX) is given to the
    # waiting init on its stdin through `pct exec ... set-spec`: bytes, NULs and all.
    config = json.loads((busybox_bundle / "config.json").read_text())
    config["process"]["env"] += ["BIG=" + "x" * 40_000, "LINES=a\nb\tc 'd' \"e\" $(f)"]
    (busybox_bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "cache"
    made = pveoci(lxc_bed, root, "run", "-d", "-b", str(busybox_bundle), "--node", "pve2", "long")
    assert made.returncode == 0, made.stderr
    environ = pveoci(lxc_bed, root, "exec", "long", "--", "sh", "-c", "cat /proc/$(cat /.pveoci/run/pid)/environ")
    assert environ.stdout == "\0".join(config["process"]["env"]) + "\0"
    argvs = [c["argv"] for c in lxc_bed.tool_calls("pve2")]
    created = next(a for a in argvs if a[:1] == ["create"])
    assert "--entrypoint=/.pveoci/init" in created  # no spec on the command line
    assert any(a[:1] == ["exec"] and a[-1] == "set-spec" for a in argvs)
    assert pveoci(lxc_bed, root, "delete", "-f", "long").returncode == 0


def test_a_container_on_another_node_is_changed_where_it_lives(cluster: Testbed, tmp_path: Path) -> None:
    from pveoci.backends.pct import PctBackend

    cluster.pve.add_ct(130, node="pve2", status="running")
    backend = PctBackend(settings.load(config_path=cluster.config_path, env={}, overrides={"backend": "pct"}))
    try:
        backend.stop("pve1", 130)  # pct on pve1 does not know it: it lives on pve2
    finally:
        backend.close()
    assert cluster.pve.ct(130).status == "stopped"
    on_pve1 = [c["argv"] for c in cluster.tool_calls("pve1")]
    assert on_pve1 == [["get", "/cluster/status", "--output-format=json"],  # where the nodes are
                       ["stop", "130"], ["get", "/cluster/resources", "--type=vm", "--output-format=json"]]
    assert [c["argv"] for c in cluster.tool_calls("pve2")] == [["stop", "130"]]


def test_pveoci_on_a_node_runs_pct_and_pvesh_right_there(lxc_bed: Testbed, busybox_bundle: Path,
                                                         tmp_path: Path) -> None:
    profile = settings.load(config_path=lxc_bed.config_path, env={}).profile
    client = SshConnector(profile.ssh, lxc_bed.addresses).connect("pve1")
    root = tmp_path / "cache"

    def on_pve1(*args: str) -> tuple[int, str, str]:
        """pveoci run inside pve1's own namespace (its storage, its pct and pvesh on PATH), as root."""
        # No stand-in: it would hold this session's stdout (run waits for its end) till the process ends.
        line = ["env", f"PVEOCI_CONFIG={lxc_bed.config_path}", f"XDG_CACHE_HOME={tmp_path / 'xdg'}",
                "PVEOCI_STAND_IN=0", sys.executable, "-m", "pveoci", "--backend", "pct", "--root", str(root), *args]
        done = run(client, line, timeout=180)
        return done.status, done.stdout.decode(), done.stderr.decode()

    try:
        before = len(lxc_bed.sshd("pve1").commands())
        assert on_pve1("run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "here")[0] == 0
        assert on_pve1("run", "-d", "-b", str(busybox_bundle), "--node", "pve2", "there")[0] == 0
        code, out, err = on_pve1("state", "here")
        assert code == 0, err
        assert json.loads(out)["status"] == "running"
        assert on_pve1("exec", "there", "--", "hostname")[1] == "busybox\n"
        code, out, _ = on_pve1("doctor")
        assert code == 0, out
        assert "this node: pct and pvesh found, run as root" in out
        reached_pve1 = lxc_bed.sshd("pve1").commands()[before:]
        # On pve1 itself pct and pvesh ran as programs: no SSH session for them (templates still go over SFTP).
        assert not [c for c in reached_pve1 if c.startswith(("pct ", "pvesh "))]
        assert any(c["argv"][:1] == ["create"] for c in lxc_bed.tool_calls("pve1"))
        assert any(c.startswith("pct create ") for c in lxc_bed.sshd("pve2").commands())  # pve2: over SSH
        assert on_pve1("delete", "-f", "here")[0] == 0
        assert on_pve1("delete", "-f", "there")[0] == 0
    finally:
        client.close()
    assert lxc_bed.pve.cts == []
