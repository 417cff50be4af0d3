"""What docs/cli.md promises of the options, in-process: -o after every command, shell completion for the shell
named, a --config file that must exist, and `config init` adding a profile to an existing file."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pveoci import settings
from pveoci.backends.memory import MemoryBackend
from pveoci.cache import Cache
from pveoci.cli import invocation, main
from pveoci.cli.config import tomllib  # tomli on Python 3.10
from pveoci.runtime import Runtime
from pveoci.settings import Profile, Settings
from tests.runtime.conftest import tiny_bundle


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("PVEOCI_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield
    logging.getLogger("pveoci").handlers.clear()  # main() configured them for this test's stderr


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main.main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("pveoci: error: ")
    return err.removeprefix("pveoci: error: ").rstrip("\n")


# ------------------------------------------------------------------ -o after every command


@pytest.fixture
def memory_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Runtime:
    """The command line over a cluster in memory (the Runtime every command gets)."""
    rt = Runtime(MemoryBackend(nodes=("pve1",)), Cache(tmp_path / "rt-cache"),
                 Settings(Profile(name="mem", node="pve1"), tmp_path / "none.toml"))
    monkeypatch.setattr(invocation.Cli, "runtime", lambda self: rt)
    return rt


def test_state_takes_o_after_its_name(capsys: pytest.CaptureFixture[str], memory_cli: Runtime,
                                      tmp_path: Path) -> None:
    memory_cli.create("hello", tiny_bundle(tmp_path / "b"))
    code, out, err = run(capsys, "state", "-o", "json", "hello")
    assert code == 0, err
    assert json.loads(out)["status"] == "created"
    assert run(capsys, "state", "hello", "--output", "table")[1] == out  # the OCI document, whatever -o says


@pytest.mark.parametrize("where", ["before", "after"])
def test_create_prints_its_state_with_o_json_before_or_after_the_command(
        capsys: pytest.CaptureFixture[str], memory_cli: Runtime, tmp_path: Path, where: str) -> None:
    bundle = str(tiny_bundle(tmp_path / "b"))
    args = ["-o", "json", "create", "-b", bundle, "web"] if where == "before" else \
        ["create", "-b", bundle, "web", "-o", "json"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert (json.loads(out)["id"], json.loads(out)["status"]) == ("web", "created")


@pytest.mark.parametrize("args", [
    ["kill", "-o", "json", "web", "KILL"], ["pause", "web", "-o", "table"], ["delete", "-f", "web", "-o", "json"],
    ["logs", "-o", "json", "web"], ["exec", "-o", "json", "web", "--", "true"],
])
def test_commands_that_print_nothing_of_their_own_take_o_too(capsys: pytest.CaptureFixture[str],
                                                             memory_cli: Runtime, tmp_path: Path,
                                                             args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    memory_cli.run("web", tiny_bundle(tmp_path / "b"))
    code, _, err = run(capsys, *args)
    assert "No such option" not in err
    assert code in (0, 27), err  # the memory backend's logs/exec may be unsupported: not a usage error


# ------------------------------------------------------------------ completion


def test_show_completion_prints_the_script_of_the_shell_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, zsh, _ = run(capsys, "--show-completion", "zsh")
    assert code == 0
    assert zsh.startswith("#compdef pveoci")
    assert "compdef _pveoci_completion pveoci" in zsh
    assert "COMPREPLY" not in zsh  # bash's
    assert "complete --command pveoci" in run(capsys, "--show-completion=fish")[1]
    assert "complete -o default -F _pveoci_completion pveoci" in run(capsys, "-p", "x", "--show-completion",
                                                                      "bash")[1]


def test_show_completion_without_a_shell_takes_the_one_pveoci_runs_in(capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "_current_shell", lambda: "zsh")
    code, out, _ = run(capsys, "--show-completion")
    assert code == 0
    assert out.startswith("#compdef pveoci")


def test_install_completion_installs_the_shell_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "--install-completion", "zsh")
    assert code == 0, err
    script = tmp_path / "home" / ".zfunc" / "_pveoci"
    assert script.read_text().startswith("#compdef pveoci")
    assert "compinit" in (tmp_path / "home" / ".zshrc").read_text()
    assert out.startswith(f"zsh completion installed in {script}")
    assert not (tmp_path / "home" / ".bashrc").exists()


def test_a_shell_pveoci_has_no_completion_for_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--show-completion", "tcsh")
    assert (code, out) == (2, "")
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish', 'powershell', 'pwsh'" in one_line(err)


# ------------------------------------------------------------------ --config


def test_a_config_file_named_on_the_command_line_must_exist(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    missing = tmp_path / "typo.toml"
    code, out, err = run(capsys, "--config", str(missing), "--host", "pve1", "config", "show")
    assert (code, out) == (3, "")
    assert one_line(err) == f"--config {missing}: no such file (pveoci --config {missing} config init writes one)"


def test_the_default_config_file_may_be_missing(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVEOCI_HOST", "pve1.lab")
    code, out, err = run(capsys, "config", "show", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["profile"]["host"] == "pve1.lab"


# ------------------------------------------------------------------ config init


def test_init_writes_a_new_file_whose_secret_is_in_the_platform_config_dir(capsys: pytest.CaptureFixture[str],
                                                                           tmp_path: Path) -> None:
    code, out, err = run(capsys, "config", "init", "--name", "lab", "--host", "pve1.lab")
    assert code == 0, err
    path = tmp_path / "xdg" / "pveoci" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = settings.load(config_path=path, env={})
    secret = tmp_path / "xdg" / "pveoci" / "lab.token"  # XDG_CONFIG_HOME, not ~/.config
    assert (loaded.profile.name, loaded.profile.host, loaded.profile.token_secret_file) == ("lab", "pve1.lab", secret)
    assert f"put its token secret in {secret}" in out


def test_init_under_home_writes_the_secret_path_with_a_tilde(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".cfg"))
    assert run(capsys, "config", "init", "--name", "lab", "--host", "pve1.lab")[0] == 0
    text = (tmp_path / "home" / ".cfg" / "pveoci" / "config.toml").read_text()
    assert 'token_secret_file = "~/.cfg/pveoci/lab.token"' in text


MINE = '''# my clusters
default_profile = "home"

[profiles.home]   # the small one
host = "pve.home"
node = "pve"

# the next one is new
[profiles.home.ssh]
user = "admin"
'''


def test_init_adds_a_profile_to_an_existing_file_and_keeps_it_as_it_was(capsys: pytest.CaptureFixture[str],
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINE)
    path.chmod(0o640)
    code, out, err = run(capsys, "--config", str(path), "config", "init", "--name", "lab", "--host", "10.0.0.1")
    assert code == 0, err
    assert out.startswith(f"added profile lab to {path};")
    assert "then run: pveoci -p lab doctor" in out
    text = path.read_text()
    assert text.startswith(MINE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert settings.load(config_path=path, env={}).profile.host == "pve.home"  # still the default
    lab = settings.load(config_path=path, profile="lab", env={}).profile
    assert (lab.host, lab.token_id) == ("10.0.0.1", "pveoci@pve!cli")


def test_init_refuses_a_profile_the_file_has_unless_forced(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINE)
    code, out, err = run(capsys, "--config", str(path), "config", "init", "--name", "home", "--host", "pve2.home")
    assert (code, out) == (3, "")
    assert one_line(err) == f"{path} has a profile 'home' already; use --force to replace it"
    assert path.read_text() == MINE
    assert run(capsys, "--config", str(path), "config", "init", "--name", "lab", "--host", "pve1.lab")[0] == 0
    code, out, err = run(capsys, "--config", str(path), "config", "init", "--name", "home", "--host", "pve2.home",
                         "--force", "-o", "json")
    assert code == 0, err
    assert json.loads(out) == {"config_file": str(path), "profile": "home", "action": "replaced",
                               "token_secret_file": f"{tmp_path}/xdg/pveoci/home.token"}
    data = tomllib.loads(path.read_text())
    assert data["default_profile"] == "home"
    assert data["profiles"]["home"]["host"] == "pve2.home"
    assert data["profiles"]["home"]["node"] == "auto"  # replaced, not merged: its node = "pve" went
    assert data["profiles"]["home"]["ssh"]["user"] == "root"
    assert data["profiles"]["lab"]["host"] == "pve1.lab"
    assert path.read_text().startswith("# my clusters\ndefault_profile = \"home\"\n")


@pytest.mark.parametrize(("args", "words"), [
    (["--name", "lab]\nhost"], "Invalid value for '--name'"),
    (["--name", "../x"], "Invalid value for '--name'"),
    (["--host", 'pve1"\nverify_tls = false'], "Invalid value for '--host'"),
])
def test_init_refuses_what_would_not_be_a_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  args: list[str], words: str) -> None:
    path = tmp_path / "config.toml"
    code, out, err = run(capsys, "--config", str(path), "config", "init", *args)
    assert (code, out) == (2, "")
    assert words in one_line(err)
    assert not path.exists()


def test_init_says_so_when_the_file_is_not_toml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[profiles.lab\n")
    code, _, err = run(capsys, "--config", str(path), "config", "init", "--name", "x")
    assert code == 3
    assert one_line(err).startswith(f"{path} is not valid TOML (")
    assert path.read_text() == "[profiles.lab\n"
