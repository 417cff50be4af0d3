"""The pct backend over a scripted node: what it runs where, and how it reads what pct says."""

from __future__ import annotations

from pathlib import Path

import pytest

from pveoci import errors
from pveoci.backends.pct import PctBackend
from pveoci.backends.runner import ENTRY
from pveoci.settings import Profile, Settings
from tests.backends.fake_runner import FakeRunner, said

RESOURCES = '[{"type":"lxc","vmid":105,"node":"pve2","status":"running","id":"lxc/105"}]\n'


def backend(runner: FakeRunner, tmp_path: Path) -> PctBackend:
    return PctBackend(Settings(Profile(name="t", host="pve1.example", backend="pct"), tmp_path / "x.toml"),
                      runner=runner)


def test_create_runs_pct_create_on_the_node_with_one_word_per_option(tmp_path: Path) -> None:
    runner = FakeRunner().on("pct", "create", answer=said(0, "extracting archive\n"))
    backend(runner, tmp_path).create("pve2", 105, {"ostemplate": "local:vztmpl/t.tar.zst", "hostname": "web",
                                                   "description": "a\nb $(x)", "start": 1})
    assert runner.calls == [("pve2", ["pct", "create", "105", "local:vztmpl/t.tar.zst", "--hostname=web",
                                      "--description=a\nb $(x)", "--start=1"])]


def test_a_task_that_failed_exits_255_and_becomes_task_failed(tmp_path: Path) -> None:
    runner = FakeRunner().on("pct", "start", answer=said(255, "lxc.log: oops\n", "startup for container '105' "
                                                         "failed\n"))
    with pytest.raises(errors.TaskFailed) as err:
        backend(runner, tmp_path).start("pve1", 105)
    assert err.value.message == "Proxmox task vzstart 105 on pve1 failed: startup for container '105' failed"
    assert err.value.log_tail == ["lxc.log: oops"]


def test_races_are_worded_as_the_api_words_them(tmp_path: Path) -> None:
    runner = FakeRunner().on("pct", "create", answer=said(255, stderr="CT 105 already exists on node 'pve2'\n"))
    with pytest.raises(errors.AlreadyExists, match="CT 105 already exists on node 'pve2'"):
        backend(runner, tmp_path).create("pve1", 105, {"ostemplate": "local:vztmpl/t.tar.zst"})


def test_a_container_on_another_node_is_followed_there(tmp_path: Path) -> None:
    runner = (FakeRunner()
              .on("pct", answer=lambda node, argv, _in: said(0) if node == "pve2" else said(
                  255, stderr=f"Configuration file 'nodes/{node}/lxc/105.conf' does not exist\n"))
              .on("pvesh", "get", "/cluster/resources", answer=said(0, RESOURCES)))
    backend(runner, tmp_path).start("pve1", 105)
    assert [(node, argv[:2]) for node, argv in runner.calls] == [
        ("pve1", ["pct", "start"]), (ENTRY, ["pvesh", "get"]), ("pve2", ["pct", "start"])]


def test_stop_on_a_node_that_does_not_have_it_says_not_running_and_is_followed(tmp_path: Path) -> None:
    # pve-container's vm_stop checks "running" on its own node before it loads any config.
    runner = (FakeRunner()
              .on("pct", answer=lambda node, argv, _in: said(0) if node == "pve2" else said(
                  255, stderr="CT 105 not running\n"))
              .on("pvesh", "get", "/cluster/resources", answer=said(0, RESOURCES)))
    backend(runner, tmp_path).stop("pve1", 105)
    assert runner.calls[-1] == ("pve2", ["pct", "stop", "105"])


def test_a_container_that_is_nowhere_is_not_found(tmp_path: Path) -> None:
    runner = (FakeRunner()
              .on("pct", answer=said(255, stderr="Configuration file 'nodes/pve1/lxc/106.conf' does not exist\n"))
              .on("pvesh", "get", "/cluster/resources", answer=said(0, RESOURCES)))
    with pytest.raises(errors.NotFound):
        backend(runner, tmp_path).destroy("pve1", 106)


def test_stop_of_a_stopped_container_is_refused_in_pve_s_words(tmp_path: Path) -> None:
    runner = (FakeRunner().on("pct", "stop", answer=said(255, stderr="CT 105 not running\n"))
              .on("pvesh", "get", "/cluster/resources", answer=said(0, RESOURCES.replace("pve2", "pve1"))))
    with pytest.raises(errors.ApiError, match="refused pct stop on pve1: CT 105 not running"):
        backend(runner, tmp_path).stop("pve1", 105)


def test_shutdown_destroy_and_migrate_say_what_the_api_backend_asks(tmp_path: Path) -> None:
    runner = FakeRunner().on("pct", answer=said(0))
    pct = backend(runner, tmp_path)
    pct.shutdown("pve1", 105, 7)
    pct.destroy("pve1", 105)
    pct.migrate("pve1", 105, "pve2", restart=True)
    assert [argv for _node, argv in runner.calls] == [
        ["pct", "shutdown", "105", "--timeout=7", "--forceStop=1"],
        ["pct", "destroy", "105", "--purge=1", "--destroy-unreferenced-disks=1"],
        ["pct", "migrate", "105", "pve2", "--restart=1"]]


def test_what_would_read_as_an_option_is_refused(tmp_path: Path) -> None:
    runner = FakeRunner()
    pct = backend(runner, tmp_path)
    with pytest.raises(errors.InvalidParameter):
        pct.migrate("pve1", 105, "--force", restart=False)
    with pytest.raises(errors.InvalidParameter):
        pct.create("pve1", 105, {"ostemplate": "-x"})
    with pytest.raises(errors.Unsupported):
        pct.set_options("pve1", 105, {"env": "A=1\0B=2"})
    assert runner.calls == []


def test_pct_acts_as_root(tmp_path: Path) -> None:
    assert backend(FakeRunner(), tmp_path).privileged()


def test_templates_do_not_go_through_the_api(tmp_path: Path) -> None:
    from pveoci.models import Destination

    with pytest.raises(errors.Unsupported, match="--transport sftp"):
        backend(FakeRunner(), tmp_path).upload(None, Destination("pve1", "local", False), transport="api",  # type: ignore[arg-type]
                                               progress=lambda _n: None)


@pytest.mark.parametrize(("name", "kind"), [("pct", "PctBackend"), ("auto", "AutoBackend"), ("api", "ApiBackend")])
def test_connect_builds_the_backend_the_name_says_and_asks_nothing_yet(name: str, kind: str, tmp_path: Path) -> None:
    import pveoci

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.default]\nhost = "pve1.invalid"\ntoken_id = "u@pve!t"\n'
                      f'token_secret_file = "{secret}"\n')
    with pveoci.connect(config=config, root=tmp_path / "cache", backend=name) as rt:
        assert type(rt.backend).__name__ == kind
        assert rt.settings.profile.backend == name
