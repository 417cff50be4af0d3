"""`pveoci update`: runc's flags and --resources document read as runc reads them, what Proxmox can change set on the
container's config, everything else one line and a stable exit code with nothing changed.

The command line runs in this process on the in-memory cluster (memory_cli); the bed's runs change a running
container's limits through the API backend and through pct, and look at its config on the fake cluster."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pveoci.cli.update import ram_in_bytes
from tests.guards import fifo_released_after, memory_cap
from tests.harness import MemoryCli, Result
from tests.inmemory import tiny_bundle
from tests.testbed import Testbed

MIB = 1024 * 1024


@pytest.fixture
def web(memory_cli: MemoryCli, tmp_path: Path) -> int:
    """A running container `web` on the in-memory cluster: its VMID."""
    assert memory_cli("run", "-d", "-b", str(tiny_bundle(tmp_path / "bundle")), "web").code == 0
    (vmid,) = memory_cli.backend.cts
    return vmid


def config(memory_cli: MemoryCli, vmid: int) -> dict[str, object]:
    return dict(memory_cli.backend.cts[vmid].config)


def fails(result: Result, code: int, message: str | None = None) -> str:
    """The command failed with one line, `pveoci: error: MESSAGE`, and this exit code; the message."""
    lines = result.err.splitlines()
    assert (result.code, len(lines), result.out) == (code, 1, ""), result
    assert lines[0].startswith("pveoci: error: ")
    if message is not None:
        assert lines[0] == f"pveoci: error: {message}"
    return lines[0].removeprefix("pveoci: error: ")


# --- what Proxmox can change, changed ---


def test_memory_and_cpus_of_a_running_container(memory_cli: MemoryCli, web: int) -> None:
    done = memory_cli("update", "--memory", "256m", "--memory-swap", "1g", "--cpuset-cpus", "0-1",
                      "--cpu-quota", "50000", "--cpu-period", "100000", "--cpu-share", "1024", "web")
    assert (done.code, done.out, done.err) == (0, "", "")  # as runc: nothing printed
    got = config(memory_cli, web)
    assert {k: got[k] for k in ("memory", "swap", "cores", "cpulimit", "cpuunits")} == {
        "memory": 256, "swap": 768, "cores": 2, "cpulimit": 0.5, "cpuunits": 39}
    assert memory_cli("state", "web").code == 0  # still running, still found


def test_a_quota_of_minus_1_lifts_the_cpu_limit(memory_cli: MemoryCli, web: int) -> None:
    assert memory_cli("update", "--cpu-quota", "20000", "web").code == 0
    assert config(memory_cli, web)["cpulimit"] == 0.2
    assert memory_cli("update", "--cpu-quota", "-1", "web").code == 0
    assert "cpulimit" not in config(memory_cli, web)


def test_from_a_resources_file(memory_cli: MemoryCli, web: int, tmp_path: Path) -> None:
    doc = tmp_path / "resources.json"
    doc.write_text(json.dumps({"memory": {"limit": 128 * MIB, "swap": 0}, "cpu": {"cpus": "0-3", "shares": 0}}))
    assert memory_cli("update", "--resources", str(doc), "web").code == 0
    got = config(memory_cli, web)
    assert (got["memory"], got["swap"], got["cores"], "cpuunits" in got) == (128, 512, 4, False)  # 0: as it was


def test_from_stdin_as_engines_send_it(memory_cli: MemoryCli, web: int) -> None:
    # podman and containerd's shim send the whole linux.resources: devices too, which no runc update changes.
    doc = {"devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 300 * MIB}, "pids": {"limit": 0},
           "cpu": {"shares": 2048, "quota": 150000, "period": 100000, "cpus": "", "mems": ""}}
    done = memory_cli("--log", str(memory_cli.root / "log"), "update", "-r", "-", "web",
                      stdin=json.dumps(doc).encode())
    assert (done.code, done.err) == (0, "")
    got = config(memory_cli, web)
    assert (got["memory"], got["cpuunits"], got["cpulimit"]) == (300, 79, 1.5)
    logged = (memory_cli.root / "log").read_text()
    assert "linux.resources.devices: not changed by an update (nor by runc's) (unsupported)" in logged


def test_json_output_says_what_was_asked_of_proxmox(memory_cli: MemoryCli, web: int) -> None:
    done = memory_cli("update", "--memory", "1.5g", "-o", "json", "web")
    assert done.code == 0
    assert json.loads(done.out) == {"options": {"memory": 1536}, "delete": [], "findings": [
        {"field": "linux.resources.memory.limit", "status": "applied", "detail": "memory=1536 MiB"}]}


def test_a_created_and_a_paused_container_are_updated(memory_cli: MemoryCli, web: int, tmp_path: Path) -> None:
    assert memory_cli("create", "-b", str(tiny_bundle(tmp_path / "b2")), "made").code == 0
    assert memory_cli("update", "--memory", "64m", "made").code == 0
    assert memory_cli("pause", "web").code == 0
    assert memory_cli("update", "--memory", "96m", "web").code == 0
    assert sorted(int(ct.config["memory"]) for ct in memory_cli.backend.cts.values()) == [64, 96]


def test_nothing_to_change_asks_for_no_change(memory_cli: MemoryCli, web: int) -> None:
    memory_cli.backend.calls.clear()
    assert memory_cli("update", "--memory", "0", "--pids-limit", "0", "web").code == 0
    assert "set_options" not in memory_cli.backend.calls


# --- refused: one line, its exit code, nothing changed ---


def refused(memory_cli: MemoryCli, args: list[str], code: int, message: str | None = None, *,
            stdin: bytes = b"") -> str:
    memory_cli.backend.calls.clear()
    said = fails(memory_cli("update", *args, stdin=stdin), code, message)
    assert "set_options" not in memory_cli.backend.calls
    return said


def test_an_unknown_id(memory_cli: MemoryCli) -> None:
    refused(memory_cli, ["--memory", "1g", "nosuch"], 8, "container does not exist")


def test_a_stopped_container_as_runc_refuses_it(memory_cli: MemoryCli, web: int) -> None:
    memory_cli.backend.exit(web, 0)
    refused(memory_cli, ["--memory", "1g", "web"], 21, "container not running")


@pytest.mark.parametrize(("args", "message"), [
    (["--pids-limit", "100"], "linux.resources.pids.limit (--pids-limit): Proxmox VE has no container option for "
                              "it; nothing was changed"),
    (["--memory", "1g", "--memory-reservation", "512m", "--cpuset-mems", "0"],
     "linux.resources.memory.reservation (--memory-reservation), linux.resources.cpu.mems (--cpuset-mems): "
     "Proxmox VE has no container option for them; nothing was changed"),
    (["--blkio-weight", "500"], None), (["--cpu-rt-runtime", "950000"], None), (["--cpu-rt-period", "1000"], None),
    (["--l3-cache-schema", "L3:0=ff"], "--l3-cache-schema: Intel RDT is not available to containers on Proxmox VE"),
    (["--mem-bw-schema", "MB:0=70"], None),
])
def test_what_proxmox_cannot_change_is_refused_by_name(memory_cli: MemoryCli, web: int, args: list[str],
                                                         message: str | None) -> None:
    refused(memory_cli, [*args, "web"], 27, message)


@pytest.mark.parametrize(("args", "message"), [
    (["--memory", "-1"], "linux.resources.memory.limit (--memory): -1 (unlimited) is not possible: Proxmox VE needs "
                         "a memory limit"),
    (["--memory-swap", "128m"], "linux.resources.memory.swap: must be at least memory.limit (it counts memory plus "
                                "swap)"),  # the container has 512 MiB
    (["--cpu-period", "50000"], "linux.resources.cpu.period (--cpu-period): Proxmox VE's cpulimit is quota/period at "
                                "a fixed period: give the quota with it"),
    (["--cpuset-cpus", "0-99999999999"], None),
])
def test_values_proxmox_cannot_take_are_refused_as_a_creates(memory_cli: MemoryCli, web: int, args: list[str],
                                                              message: str | None) -> None:
    refused(memory_cli, [*args, "web"], 19, message)


@pytest.mark.parametrize(("args", "words"), [
    (["--memory", "12x"], "Invalid value for '--memory': invalid size: '12x'"),
    (["--memory", "-2"], "invalid size: '-2'"),
    (["--memory", "1.2.3g"], "invalid size: '1.2.3g'"),
    (["--memory", "99999999999p"], "'99999999999p' is more bytes than a limit can hold"),
    (["--cpu-quota", "1_000"], "Invalid value for '--cpu-quota': '1_000' is not a whole number"),
    (["--cpu-share", "-5"], "'-5' is not a whole number of 0 or more"),
    (["--cpu-period", str(2**64)], "is out of range (0 to 18446744073709551615)"),
    (["--cpu-quota", str(2**63)], "is out of range"),
    (["--blkio-weight", "70000"], "Invalid value for '--blkio-weight': 70000 is out of range (0 to 65535)"),
    (["--pids-limit", "x"], "Invalid value for '--pids-limit'"),
    (["-r", "-", "--memory", "1g"], "Invalid value for '--memory': not with --resources"),
])
def test_a_flag_runc_would_not_read_is_a_usage_error(memory_cli: MemoryCli, web: int, args: list[str],
                                                     words: str) -> None:
    assert words in refused(memory_cli, [*args, "web"], 2)


@pytest.mark.parametrize(("text", "words"), [
    ('{"memory": {"limit": ', "stdin: not valid JSON at line 1 column 22"),
    ('{"memory": {"limit": "1g"}}', "invalid stdin: memory.limit"),
    ('{"pids": {"limit": 1e3}}', "invalid stdin: pids.limit"),
    ('{"cpu": {"shares": -1}}', "invalid stdin: cpu.shares"),
    ("[]", "invalid stdin"),
    ('{"memory": {"limit": ' + "9" * 5000 + "}}", "a number of 5000 digits"),
    ("\xff", "not valid JSON"),
])
def test_a_broken_document_is_a_bundle_error(memory_cli: MemoryCli, web: int, text: str, words: str) -> None:
    assert words in refused(memory_cli, ["--resources", "-", "web"], 18, stdin=text.encode("latin-1"))


def test_a_document_over_4_mib_is_refused(memory_cli: MemoryCli, web: int, tmp_path: Path) -> None:
    refused(memory_cli, ["-r", "-", "web"], 18, "cannot read stdin: it is larger than 4 MiB",
            stdin=b" " * (4 * MIB + 1))
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * (4 * MIB) + b"}")
    refused(memory_cli, ["-r", str(big), "web"], 18, f"cannot read {big}: it is larger than 4 MiB")


def test_a_device_a_directory_or_nothing_is_refused_without_reading_it(memory_cli: MemoryCli, web: int,
                                                                      tmp_path: Path) -> None:
    with memory_cap():
        refused(memory_cli, ["-r", "/dev/zero", "web"], 18,
                "cannot read /dev/zero: it is not a regular file (a character device)")
    refused(memory_cli, ["-r", str(tmp_path), "web"], 18, f"cannot read {tmp_path}: it is a directory")
    refused(memory_cli, ["-r", str(tmp_path / "none.json"), "web"], 18,
            f"cannot read {tmp_path / 'none.json'}: No such file or directory")


def test_a_fifo_nobody_writes_ends_at_once(memory_cli: MemoryCli, web: int, tmp_path: Path) -> None:
    fifo = tmp_path / "resources.json"
    os.mkfifo(fifo)
    began = time.monotonic()
    with fifo_released_after(fifo, 10.0):
        refused(memory_cli, ["-r", str(fifo), "web"], 18, f"{fifo}: not valid JSON at line 1 column 1: Expecting value")
    assert time.monotonic() - began < 10.0


# --- sizes, as runc reads them (docker's units.RAMInBytes) ---


@pytest.mark.parametrize(("text", "size"), [
    ("1024", 1024), ("512m", 512 * MIB), ("512M", 512 * MIB), ("1g", 1024 * MIB), ("1.5g", 1536 * MIB),
    ("2kb", 2048), ("1GiB", 1024 * MIB), ("10 MB", 10 * MIB), ("1t", 2**40), ("1p", 2**50), ("0", 0),
    ("-1", -1), ("1.5", 1), ("7b", 7),
])
def test_sizes_read_as_runc_reads_them(text: str, size: int) -> None:
    assert ram_in_bytes("--memory", text) == size


# ------------------------------------------------------------------ on the bed


@pytest.mark.bed
@pytest.mark.parametrize("backend", ["api", "pct"])
def test_a_running_containers_limits_change_on_the_cluster(lxc_bed: Testbed, cli, busybox_bundle: Path,  # type: ignore[no-untyped-def]
                                                           backend: str) -> None:
    made = cli("--backend", backend, "run", "-d", "-b", str(busybox_bundle), "--node", "pve1", "up1")
    assert made.code == 0, made.err
    vmid = json.loads(cli("state", "up1").out)["pveoci"]["vmid"]
    done = cli("--backend", backend, "update", "--memory", "200m", "--memory-swap", "264m", "--cpuset-cpus", "0-1",
               "--cpu-quota", "150000", "up1")
    assert (done.code, done.err) == (0, "")
    ct = lxc_bed.pve.ct(vmid)
    assert ct.status == "running"
    assert {k: ct.config.get(k) for k in ("memory", "swap", "cores", "cpulimit")} == {
        "memory": 200, "swap": 64, "cores": 2, "cpulimit": 1.5}
    assert ct.pending == {}  # applied to the running container, nothing waits for a restart
    lifted = cli("--backend", backend, "update", "--cpu-quota", "-1", "up1")
    assert lifted.code == 0, lifted.err
    assert "cpulimit" not in lxc_bed.pve.ct(vmid).config
    assert json.loads(cli("state", "up1").out)["status"] == "running"
