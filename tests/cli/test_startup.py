"""Heavy libraries stay out of the start-up path: `pveoci --help` and the lifecycle commands import only what
they use (docs/performance.md). Measured as which modules get imported, not as time."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest


def imported_after(code: str) -> set[str]:
    # A fresh interpreter: what a start-up imports can only be seen in a process that has imported nothing yet.
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_imports_no_network_ssh_or_compression_library() -> None:
    loaded = imported_after("from pveoci.cli.main import app")
    for heavy in ("requests", "proxmoxer", "paramiko", "zstandard", "rich", "pveoci.oci.runtime_spec"):
        assert heavy not in loaded, heavy


def test_state_and_list_do_not_load_the_spec_models_or_ssh() -> None:
    loaded = imported_after("import pveoci.runtime, pveoci.backends.api, pveoci.backends.auto, pveoci.cache")
    for heavy in ("pveoci.oci.runtime_spec", "pveoci.lxc.mapping", "paramiko", "zstandard", "pveoci.template.pack",
                  "tarfile"):
        assert heavy not in loaded, heavy


def test_a_template_push_loads_neither_creates_machinery_nor_the_models_it_does_not_build() -> None:
    """What an unchanged `template push` imports (docs/performance.md): the runtime, the API backend, the push and
    the mapping, not create's placement, VMIDs, journal and stand-ins, nor the lifecycle's modules, nor the models
    of states and moves (each dataclass costs about a millisecond to build)."""
    loaded = imported_after("import pveoci.connect, pveoci.backends.api, pveoci.runtime.push, pveoci.runtime.plans, "
                            "pveoci.runtime.walking, pveoci.cli.template")
    for heavy in ("pveoci.runtime.create", "pveoci.runtime.survey", "pveoci.runtime.placement",
                  "pveoci.runtime.vmids", "pveoci.runtime.standins", "pveoci.runtime.listing",
                  "pveoci.runtime.processes", "pveoci.runtime.transitions", "pveoci.runtime.recovery",
                  "pveoci.models.state", "pveoci.models.placements"):
        assert heavy not in loaded, heavy
    import pveoci.models as models

    assert models.State.__name__ == "State"   # still there, when asked
    assert models.Placement.__name__ == "Placement"


def test_the_pct_backend_loads_no_http_client() -> None:
    loaded = imported_after("import pveoci.runtime, pveoci.backends.pct, pveoci.backends.auto, pveoci.cache")
    for heavy in ("requests", "proxmoxer", "pveoci.pve.client", "paramiko", "pveoci.oci.runtime_spec", "zstandard"):
        assert heavy not in loaded, heavy


def imported_by(*argv: str) -> tuple[str, set[str]]:
    """What a run of the interpreter printed, and every module it imported (-X importtime names them all)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done.stdout, modules


COMMAND_LINE = ("typer", "click", "rich", "pydantic", "requests", "proxmoxer", "paramiko", "pveoci.cli.main",
                "pveoci.settings", "pveoci.cache")


def test_version_answers_before_the_command_line_is_imported() -> None:
    import pveoci

    script = "from importlib.metadata import entry_points; " \
             "entry_points(group='console_scripts')['pveoci'].load()()"
    for argv in (["-m", "pveoci", "--version"], ["-c", script, "--version"]):  # python -m pveoci, and `pveoci`
        out, loaded = imported_by(*argv)
        assert out == f"pveoci version {pveoci.__version__}\n"
        for heavy in COMMAND_LINE:
            assert heavy not in loaded, (argv, heavy)


def test_a_command_builds_and_imports_only_its_own_module() -> None:
    out, loaded = imported_by("-m", "pveoci", "nodes", "--help")
    assert "List the nodes" in out
    for other in ("pveoci.cli.lifecycle", "pveoci.cli.moves", "pveoci.cli.template", "pveoci.cli.config"):
        assert other not in loaded, other


def test_the_help_lists_every_command_in_order_as_if_all_were_built() -> None:
    import typer.core
    import typer.main

    from pveoci.cli.main import COMMANDS, app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="pveoci")
    lazy = group.get_help(ctx)
    assert list(group.commands) == list(COMMANDS)
    for name in COMMANDS:  # every command built, then listed as typer lists them
        assert group.commands[name].name == name
    formatter = ctx.make_formatter()
    typer.core.TyperGroup.format_commands(group, ctx, formatter)
    built = formatter.getvalue().rstrip("\n")
    assert built.startswith("Commands:")
    assert lazy.endswith("\n\n" + built)


def test_an_ssh_login_loads_paramiko_without_its_task_runner(tmp_path: Path) -> None:
    """paramiko's config module imports invoke (for `Match exec`, which pveoci never has paramiko read): most of
    paramiko's import time, kept off every command that logs in to a node."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    code = f"""
from pathlib import Path
from pveoci import errors
from pveoci.settings import SshSettings
from pveoci.ssh import SshConnector
ssh = SshConnector(SshSettings(agent=False, port=1, known_hosts=Path({str(known)!r}), connect_timeout=5),
                   {{"pve1": "127.0.0.1"}})
try:
    ssh.connect("pve1")
except errors.SshError:
    pass   # nothing listens there: the login got as far as paramiko's transport
"""
    loaded = imported_after(code)
    assert "paramiko.transport" in loaded
    assert "invoke" not in loaded


def test_connect_loads_no_http_stack_until_the_first_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that asks the API nothing (an unchanged `template push`) never imports requests and proxmoxer;
    the first request does, and fails as it would have (nothing listens there)."""
    monkeypatch.setenv("PVEOCI_TOKEN_SECRET", "s3cret")   # the probe's interpreter inherits it
    connect = (f"import pveoci\nrt = pveoci.connect(config={str(tmp_path / 'none.toml')!r}, "
               f"root={str(tmp_path / 'cache')!r}, host='127.0.0.1', port=1, token_id='a@pve!t', retries=0)\n")
    loaded = imported_after(connect)
    for heavy in ("requests", "urllib3", "proxmoxer", "pveoci.pve.transport"):
        assert heavy not in loaded, heavy
    asked = imported_after(connect + "try:\n    rt.nodes()\nexcept pveoci.PveociError as exc:\n"
                           "    assert 'cannot reach' in str(exc), exc\n")
    assert {"requests", "proxmoxer"} <= asked


def test_reading_a_bundle_loads_no_spec_model(tmp_path: Path) -> None:
    """oci.bundle.read gives the rootfs (where a walk can start) before the spec's models are imported."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text('{"root": {"path": "rootfs"}, "process": {"args": ["sh"]}}')
    loaded = imported_after(f"from pveoci.oci import bundle\nassert bundle.read({str(tmp_path)!r}).rootfs")
    assert "pveoci.oci.runtime_spec" not in loaded
    assert "pydantic" not in loaded


def test_the_command_line_skips_pydantics_plugin_search_unless_told(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """pydantic reads every installed package's metadata for plugins when the first model is built (30 ms of every
    command); the command line turns that off, unless PYDANTIC_DISABLE_PLUGINS says otherwise."""
    from pveoci.__main__ import main

    for preset, after in ((None, "__all__"), ("logfire", "logfire")):
        if preset is None:
            monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
        else:
            monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", preset)
        with contextlib.suppress(SystemExit):
            main(["nodes", "--help"])
        assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == after
    capsys.readouterr()


def test_with_plugins_off_pydantics_plugin_loader_is_not_imported(tmp_path: Path) -> None:
    """pydantic's plugin loader imports importlib.metadata (20 to 30 ms) to find plugins the command line turned off:
    a command that builds pydantic models loads neither, unless the user's PYDANTIC_DISABLE_PLUGINS lets plugins
    in."""
    argv = ("-m", "pveoci", "--config", str(tmp_path / "pveoci.toml"), "--host", "127.0.0.1", "--token-id",
            "a@pve!t", "plan", "-b", str(tmp_path))
    (tmp_path / "pveoci.toml").write_text("")
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text('{"ociVersion": "1.2.0", "root": {"path": "rootfs"}, '
                                          '"process": {"args": ["/bin/app"], "cwd": "/"}}')
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    for preset, loaded_then in ((None, False), ("some-plugin", True)):
        if preset is not None:
            env["PYDANTIC_DISABLE_PLUGINS"] = preset
        done = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                              check=False, env={**env, "PVEOCI_TOKEN_SECRET": "s"})
        modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                   if line.startswith("import time:")}
        assert "pydantic.main" in modules, done.stderr[-500:]   # models were built
        assert ("importlib.metadata" in modules) is loaded_then, preset


def test_the_stand_in_plugin_loader_gives_no_plugins_and_the_real_loader_for_anything_else(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pveoci import __main__ as entry

    monkeypatch.delitem(sys.modules, entry.PLUGIN_LOADER, raising=False)
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")
    entry._no_plugin_loader()
    stand_in = sys.modules[entry.PLUGIN_LOADER]
    assert isinstance(stand_in, entry._NoPlugins)
    from pydantic.plugin._loader import get_plugins

    assert tuple(get_plugins()) == ()
    assert sys.modules[entry.PLUGIN_LOADER] is stand_in
    assert stand_in.PYDANTIC_ENTRY_POINT_GROUP == "pydantic"   # what pydantic's own loader has: loaded for it
    assert sys.modules[entry.PLUGIN_LOADER] is not stand_in


def test_a_command_as_a_process_ends_without_the_interpreters_teardown_and_loses_nothing(tmp_path: Path) -> None:
    """`pveoci` ends with os._exit once its output is flushed and the atexit handlers have run (the teardown of
    every module cost 0.1 s a command): the whole output arrives, the log file gets its last line, the exit
    code is the command's."""
    import json

    from pveoci.implemented import features

    shown = subprocess.run([sys.executable, "-m", "pveoci", "features"], capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout) == json.loads(json.dumps(features()))   # written in full, through a pipe
    log = tmp_path / "pveoci.log"
    failed = subprocess.run([sys.executable, "-m", "pveoci", "--log", str(log), "--config", str(tmp_path / "no.toml"),
                             "list"], capture_output=True, text=True, check=False)
    assert failed.returncode == 3
    assert failed.stderr.startswith("pveoci: error: --config ")
    assert "ERROR pveoci: --config " in log.read_text()     # the log handler's flush, at exit
    probe = ("import atexit, sys\natexit.register(lambda: print('atexit ran', flush=True))\n"
             "sys.argv = ['pveoci', 'features']\nfrom pveoci.__main__ import main\nmain()\n"
             "print('not reached')\n")
    ended = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert ended.returncode == 0
    assert ended.stdout.rstrip().endswith("atexit ran")
    assert "not reached" not in ended.stdout
