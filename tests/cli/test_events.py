"""`pveoci events`: runc's events from Proxmox's figures, on the in-memory cluster (the bed's are in
test_events_on_bed below): the lines' shape, the stream and how it ends, the refusals and their exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pveoci.cli.events import go_duration
from tests.harness import MemoryCli
from tests.inmemory import tiny_bundle
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def running(memory_cli: MemoryCli, tmp_path: Path, cid: str = "ev") -> int:
    """A container that runs: its VMID."""
    assert memory_cli("run", "-d", "-b", str(tiny_bundle(tmp_path / cid)), cid).code == 0
    return int(json.loads(memory_cli("state", cid).out)["pveoci"]["vmid"])


def lines(out: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in out.splitlines()]


def test_stats_prints_one_event_in_runcs_shape_from_proxmoxs_figures(memory_cli: MemoryCli, tmp_path: Path) -> None:
    vmid = running(memory_cli, tmp_path)
    memory_cli.backend.cts[vmid].config["swap"] = 128
    memory_cli.backend.cts[vmid].figures = {"mem": 40 * MIB, "swap": 2 * MIB, "netin": 1500, "netout": 700,
                                            "diskread": 4096, "diskwrite": 8192, "cpu": 0.25, "uptime": 42}
    result = memory_cli("events", "--stats", "ev")
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1
    assert '"type":"stats","id":"ev"' in result.out  # compact, as runc's JSON encoder writes it
    (event,) = lines(result.out)
    assert event == {"type": "stats", "id": "ev", "data": {
        "memory": {"usage": {"usage": 40 * MIB, "limit": 512 * MIB},
                   "swap": {"usage": 42 * MIB, "limit": 640 * MIB}},   # runc's: memory plus swap
        "blkio": {"ioServiceBytesRecursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 8192}]},
        "network_interfaces": [{"Name": "eth0", "RxBytes": 1500, "TxBytes": 700}],
        "pveoci": {"node": memory_cli.backend.cts[vmid].node, "vmid": vmid, "cpu": 0.25, "cpus": 1.0, "uptime": 42}}}
    assert "cpu" not in event["data"]   # Proxmox reports no CPU time
    assert "pids" not in event["data"]  # nor a count of processes


def test_a_created_and_a_paused_container_have_figures(memory_cli: MemoryCli, tmp_path: Path) -> None:
    assert memory_cli("create", "-b", str(tiny_bundle(tmp_path / "c")), "c").code == 0
    assert memory_cli("events", "--stats", "c").code == 0
    assert memory_cli("start", "c").code == 0
    assert memory_cli("pause", "c").code == 0
    assert lines(memory_cli("events", "--stats", "c").out)[0]["id"] == "c"


def test_a_stopped_container_is_refused_in_runcs_words(memory_cli: MemoryCli, tmp_path: Path) -> None:
    vmid = running(memory_cli, tmp_path)
    memory_cli.backend.exit(vmid, 0)
    for args in (["--stats"], ["--interval", "10ms"]):
        result = memory_cli("events", *args, "ev")
        assert (result.code, result.out, result.err) == (21, "", "pveoci: error: container with id ev is not "
                                                                 "running\n")
    assert memory_cli("events", "--stats", "nope").err == "pveoci: error: container does not exist\n"
    assert memory_cli("events", "--stats", "bad/id").code == 13


def test_the_stream_prints_a_line_every_interval_until_the_container_stops(memory_cli: MemoryCli,
                                                                          tmp_path: Path) -> None:
    vmid = running(memory_cli, tmp_path)
    stop = threading.Timer(0.5, memory_cli.backend.exit, (vmid, 0))
    stop.start()
    began = time.monotonic()
    result = memory_cli("events", "--interval", "50ms", "ev")
    took = time.monotonic() - began
    stop.join()
    assert (result.code, result.err) == (0, "")
    events = lines(result.out)
    assert 3 <= len(events) <= 11, len(events)  # one every 50 ms for about half a second
    assert {e["type"] for e in events} == {"stats"}
    assert took < 5


@pytest.mark.parametrize(("interval", "why"), [
    ("5", 'time: missing unit in duration "5"'),
    ("5d", 'time: unknown unit "d" in duration "5d"'),
    ("soon", 'time: invalid duration "soon"'),
    ("0", "duration interval must be greater than 0"),
    ("-1s", "duration interval must be greater than 0"),
    ("1\n2s", 'time: unknown unit "\\n" in duration "1\\n2s"'),
])
def test_a_bad_interval_is_a_usage_error_in_one_line(memory_cli: MemoryCli, interval: str, why: str) -> None:
    result = memory_cli("events", "--interval", interval, "ev")
    assert (result.code, result.out) == (2, "")
    assert result.err == f"pveoci: error: Invalid value for '--interval': {why} (see 'pveoci events --help')\n"
    assert memory_cli.backend.calls == []  # refused before the cluster is asked anything


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), ("1h30m", 5400.0), ("1.5s", 1.5), (".5s", 0.5), ("300us", 3e-4),
    ("2\u00b5s", 2e-6), ("10ns", 1e-8), ("+3s", 3.0), ("-2s", -2.0), ("0", 0.0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1", "1e3s", "1s5", "9223372036.854775808s", "--1s"])
def test_what_go_refuses_as_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"^time: "):
        go_duration(text)


# A process: what is tested is how it takes a real signal while the stream waits for its next round.
DRIVER = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    from tests.harness import MemoryCli, memory_runtime
    from tests.inmemory import tiny_bundle
    from unittest import mock
    root = Path(tempfile.mkdtemp())
    cli = MemoryCli(root)
    assert cli("run", "-d", "-b", str(tiny_bundle(root / "b")), "ev").code == 0
    import os
    os.environ.update(cli.env())
    with mock.patch("pveoci.cli.invocation.open_runtime", memory_runtime(cli.backend)):
        from pveoci.__main__ import main
        main(["events", "--interval", "100ms", "ev"])
""")


@pytest.mark.parametrize(("sig", "code", "err"), [(signal.SIGINT, 130, "pveoci: error: interrupted\n"),
                                                  (signal.SIGTERM, 143, "")])
def test_ctrl_c_and_sigterm_end_the_stream_cleanly(sig: signal.Signals, code: int, err: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the stream runs: a whole line has come
    proc.send_signal(sig)
    rest, stderr = proc.communicate(timeout=30)
    assert (proc.returncode, stderr) == (code, err)
    assert {json.loads(line)["id"] for line in (first + rest).splitlines()} == {"ev"}  # every line whole


@pytest.mark.bed
@pytest.mark.parametrize("backend", ["api", "pct"])
def test_events_on_bed(lxc_bed: Testbed, cli, tmp_path: Path, backend: str) -> None:  # type: ignore[no-untyped-def]
    bundle = make_busybox_bundle(tmp_path / "bundle", ["sh", "-c", "while true; do sleep 1; done"])
    assert cli("--backend", backend, "run", "-d", "-b", str(bundle), "ev").code == 0
    state = json.loads(cli("state", "ev").out)
    result = cli("--backend", backend, "events", "--stats", "ev")
    assert result.code == 0, result.err
    (event,) = lines(result.out)
    data = event["data"]
    vmid = state["pveoci"]["vmid"]
    memory = int(lxc_bed.pve.ct(vmid).config["memory"]) * MIB
    assert (event["id"], data["pveoci"]["vmid"], data["pveoci"]["node"]) == ("ev", vmid, state["pveoci"]["node"])
    assert data["memory"]["usage"]["limit"] == memory          # its memory option, as its status reports it
    assert 0 < data["memory"]["usage"]["usage"] <= memory
    assert data["network_interfaces"][0]["Name"] == "eth0"
    assert data["pveoci"]["uptime"] >= 0
    assert cli("delete", "-f", "ev").code == 0
