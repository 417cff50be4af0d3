"""Usage errors and refused flags: one line on stderr, exit 2 (usage) or 27 (cannot be honoured); never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Result, invoke


def pveoci(*args: str, config: Path | None = None) -> Result:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    if config is not None:
        env["PVEOCI_CONFIG"] = str(config)
    return invoke(args, env=env)


def one_line(result: Result, code: int) -> str:
    assert result.code == code, (result.code, result.err)
    assert result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("pveoci: error: ")
    return result.err[len("pveoci: error: "):].rstrip("\n")


@pytest.mark.parametrize(("args", "words"), [
    (["nosuchcmd"], "No such command 'nosuchcmd'"),
    (["--log-format", "bogus", "list"], "Invalid value for '--log-format': 'bogus' is not one of 'text', 'json'"),
    (["--log", "/nonexistent/dir/x.log", "list"], "Invalid value for '--log': cannot write /nonexistent/dir/x.log"),
    (["list", "--bogus"], "No such option: --bogus"),
    (["list", "-f", "yaml"], "'yaml' is not one of 'table', 'json'"),
    (["-o", "xml", "list"], "'xml' is not one of 'table', 'json'"),
    (["--rootless", "maybe", "list"], "'maybe' is not one of 'true', 'false', 'auto'"),
    (["template"], ""),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    if args == ["template"]:  # a bare group shows its help, as a usage error
        assert pveoci(*args).code == 2
        return
    assert words in one_line(pveoci(*args), 2)


@pytest.mark.parametrize(("args", "flag"), [
    (["--rootless", "true", "list"], "--rootless true"),
    (["run", "--console-socket", "/tmp/x.sock", "web"], "--console-socket"),     # run in the foreground
    (["create", "--no-stand-in", "--console-socket", "/tmp/x.sock", "web"], "--console-socket"),
    (["run", "--no-pivot", "web"], "--no-pivot"),
    (["create", "--no-new-keyring", "web"], "--no-new-keyring"),
    (["create", "--preserve-fds", "2", "web"], "--preserve-fds"),
    (["run", "--pid-file", "/tmp/web.pid", "web"], "--pid-file"),
    (["exec", "--pid-file", "/tmp/x.pid", "web", "--", "true"], "--pid-file"),
])
def test_flags_pveoci_cannot_honour_are_refused_not_ignored(args: list[str], flag: str, tmp_path: Path) -> None:
    # No cluster is configured: the refusal comes before anything is asked of one.
    message = one_line(pveoci(*args, config=tmp_path / "none.toml"), 27)
    assert message.startswith(flag + ":")


def test_rootless_false_and_auto_are_accepted(tmp_path: Path) -> None:
    for value in ("false", "auto"):
        result = pveoci("--rootless", value, "config", "show", config=tmp_path / "none.toml")
        assert result.code == 0, result.err


def test_systemd_cgroup_is_accepted_and_the_log_says_it_changes_nothing(tmp_path: Path) -> None:
    """podman and containerd pass --systemd-cgroup whenever their host's cgroups are systemd's: refusing it would
    keep them from using pveoci at all. It changes nothing (Proxmox manages the cgroups); the log says so."""
    log = tmp_path / "runtime.log"
    for global_flags in (["--systemd-cgroup"], ["--systemd-cgroup", "--log-format", "json"]):
        log.unlink(missing_ok=True)
        result = pveoci(*global_flags, "--log", str(log), "config", "show", config=tmp_path / "none.toml")
        assert result.code == 0, result.err
        assert result.err == ""
        assert "--systemd-cgroup: accepted; it changes nothing" in log.read_text()


def test_backend_pct_without_a_node_to_enter_by_says_what_to_set(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[profiles.default]\nbackend = "pct"\n')  # no API credentials needed on that path
    message = one_line(pveoci("list", config=config), 3)
    assert message == "no host to enter the cluster by over SSH: set host (any node of the cluster)"


def test_an_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    result = pveoci("--backend", "ssh", "list", config=tmp_path / "none.toml")
    assert result.code == 2
    assert result.err == ("pveoci: error: Invalid value for '--backend': 'ssh' is not one of 'api', 'pct', "
                             "'auto' (see 'pveoci --help')\n")


def test_shell_completion_is_offered() -> None:
    result = pveoci("--help")
    assert result.code == 0
    assert "--install-completion" in result.out
    assert "--show-completion" in result.out


def test_with_log_the_findings_go_to_the_file_not_to_stderr(memory_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """runc writes its log to --log alone. An engine gives `create` the container's own stdout and stderr: a
    warning printed there would become the container's output (seen with podman: `podman logs` showed it)."""
    from tests.inmemory import tiny_bundle

    bundle = tiny_bundle(tmp_path / "b", capabilities={"bounding": ["CAP_SYS_TIME"]})
    log = tmp_path / "runtime.log"
    quiet = memory_cli("--log", str(log), "create", "-b", str(bundle), "web")
    assert quiet.code == 0, quiet.err
    assert quiet.err == ""
    assert "process.capabilities: not supported by Proxmox" in log.read_text()
    told = memory_cli("create", "--no-stand-in", "-b", str(bundle), "web2")   # without --log: on stderr
    assert "process.capabilities: not supported by Proxmox" in told.err
    # With a stand-in (the default), stderr is the container's: not there, unless it is a terminal.
    held = memory_cli("create", "-b", str(bundle), "web4")
    assert (held.code, held.err) == (0, "")
    failed = memory_cli("--log", str(log), "create", "-b", str(tmp_path / "nowhere"), "web3")
    assert failed.code == 18
    assert failed.err.startswith("pveoci: error: bundle ")             # the final error line is still printed
