"""The Python API's promises: wait() gives the process's exit status; the mapping's findings can be silenced per
runtime, per call, or by their logger; every public method is documented in docs/python-api.md."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import pytest

import pveoci
from pveoci import errors
from pveoci.backends.memory import MemoryBackend
from pveoci.runtime import Runtime, Templates
from tests.runtime.conftest import MakeRuntime, tiny_bundle

DOCS = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def vmid(rt: Runtime, cid: str) -> int:
    return rt.state(cid).vmid


# ------------------------------------------------------------------ wait


def test_wait_gives_the_exit_status_of_a_failed_process(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("job", bundle)
    memory.exit(vmid(rt, "job"), 3)
    assert rt.wait("job", timeout=10) == 3
    assert rt.state("job").status == "stopped"


def test_wait_gives_zero_for_a_process_that_succeeded(rt: Runtime, memory: MemoryBackend, bundle: Path) -> None:
    rt.run("job", bundle)
    memory.exit(vmid(rt, "job"), 0)
    assert rt.wait("job") == 0


def test_wait_gives_128_plus_the_signal_that_ended_the_process(rt: Runtime, bundle: Path) -> None:
    rt.run("job", bundle)
    rt.kill("job", "KILL")
    assert rt.wait("job", timeout=10) == 128 + 9


def test_wait_on_a_created_container_ends_when_a_signal_ends_its_init(rt: Runtime, bundle: Path) -> None:
    rt.create("job", bundle)
    rt.kill("job", "TERM")
    assert rt.wait("job", timeout=10) == 128 + 15


def test_wait_runs_out_of_time_while_the_process_runs(rt: Runtime, bundle: Path) -> None:
    rt.run("job", bundle)
    with pytest.raises(errors.OperationTimeout, match="container job: still waiting after 0 s"):
        rt.wait("job", timeout=0)


def test_wait_says_so_when_a_container_stopped_without_a_status(rt: Runtime, memory: MemoryBackend,
                                                                 bundle: Path) -> None:
    rt.run("job", bundle)
    ct = memory.cts[vmid(rt, "job")]
    memory.exit(ct.vmid, 0)
    ct.exit_status = None  # `pct stop` kills the init before it can write the status
    with pytest.raises(errors.PveociError, match="stopped without an exit status"):
        rt.wait("job", timeout=10)


def test_wait_on_an_unknown_id_is_not_found(rt: Runtime) -> None:
    with pytest.raises(errors.NotFound, match="container does not exist"):
        rt.wait("nosuch", timeout=10)


# ------------------------------------------------------------------ findings


@pytest.fixture
def odd_bundle(tmp_path: Path) -> Path:
    """A bundle asking for what Proxmox cannot do: capabilities (unsupported)."""
    return tiny_bundle(tmp_path / "odd", capabilities={"bounding": ["CAP_SYS_MODULE"]})


def findings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pveoci.findings" and r.levelno >= logging.WARNING]


def test_findings_are_logged_by_default(rt: Runtime, odd_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pveoci")
    rt.create("a", odd_bundle)
    assert [m.split(":")[0] for m in findings(caplog)] == ["process.capabilities"]


def test_a_runtime_can_be_quiet_about_findings(make_runtime: MakeRuntime, odd_bundle: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pveoci")
    rt = make_runtime()
    rt.findings = "quiet"
    rt.create("a", odd_bundle)
    rt.run("b", odd_bundle)
    assert [r for r in caplog.records if r.name == "pveoci.findings"] == []
    rt.create("c", odd_bundle, findings="log")  # a call may still ask for them
    assert len(findings(caplog)) == 1


def test_one_call_can_be_quiet_about_findings(rt: Runtime, odd_bundle: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pveoci")
    rt.create("a", odd_bundle, findings="quiet")
    rt.run("b", odd_bundle, findings="quiet")
    assert [r for r in caplog.records if r.name == "pveoci.findings"] == []
    rt.create("c", odd_bundle)  # the runtime's default is untouched
    assert len(findings(caplog)) == 1


def test_connect_makes_a_quiet_runtime(tmp_path: Path, memory: MemoryBackend, odd_bundle: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pveoci")
    settings = pveoci.Settings(pveoci.Profile(name="mem", node="pve1"), tmp_path / "none.toml")
    with pveoci.connect(settings=settings, backend=memory, root=tmp_path / "cache", findings="quiet") as rt:
        assert rt.findings == "quiet"
        rt.create("a", odd_bundle)
    assert [r for r in caplog.records if r.name == "pveoci.findings"] == []


def test_the_findings_logger_can_be_silenced_alone(rt: Runtime, odd_bundle: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pveoci")
    logging.getLogger("pveoci.findings").setLevel(logging.ERROR)
    try:
        rt.create("a", odd_bundle)
    finally:
        logging.getLogger("pveoci.findings").setLevel(logging.NOTSET)
    assert findings(caplog) == []
    rt.create("b", odd_bundle)  # the logger's level back: the same bundle's findings are there
    assert len(findings(caplog)) == 1


def test_a_findings_mode_that_does_not_exist_is_refused(rt: Runtime, odd_bundle: Path) -> None:
    with pytest.raises(errors.InvalidParameter, match="findings='silent': one of 'log', 'quiet'"):
        rt.create("a", odd_bundle, findings="silent")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidParameter):
        rt.findings = "silent"  # type: ignore[assignment]
    assert rt.list() == []


# ------------------------------------------------------------------ the documentation


def documented_calls(text: str) -> dict[str, str]:
    """The methods table's first column: each `name(arguments)` in it, by name."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            for name, args in re.findall(r"`((?:templates\.)?\w+)\(([^`]*)\)`", line.split(" | ")[0]):
                rows[name] = args
    return rows


def test_every_public_method_is_documented_with_its_arguments() -> None:
    text = DOCS.read_text()
    rows = documented_calls(text)
    undocumented = []
    for cls, prefix in ((Runtime, ""), (Templates, "templates.")):
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            if isinstance(member, property):
                if f"`rt.{name}`" not in text:
                    undocumented.append(f"rt.{name}")
                continue
            if not inspect.isfunction(member):
                continue
            documented = rows.get(prefix + name)
            if documented is None:
                undocumented.append(prefix + name)
                continue
            # every argument is named in its row, unless the row refers to another's with `...`
            wanted = [p for p in inspect.signature(member).parameters if p != "self"]
            missing = [p for p in wanted if not re.search(rf"\b{p}\b", documented) and "..." not in documented]
            if missing:
                undocumented.append(f"{prefix}{name}: {', '.join(missing)}")
    assert undocumented == []
