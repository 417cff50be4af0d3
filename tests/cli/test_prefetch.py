"""The rootfs's walk started at the command's start (pveoci.cli.prefetch): taken by the command when it walks the
same tree, stopped when nothing takes it, and its guesses kept true to the command line it guesses from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from pveoci.cli import prefetch
from pveoci.cli.main import COMMANDS, app
from pveoci.template import manifest, native

pytestmark = pytest.mark.skipif(native.scanner() is None, reason="no packer for this machine: nothing is prefetched")


def make_bundle(where: Path, files: int = 50) -> Path:
    rootfs = where / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    for i in range(files):
        (rootfs / "etc" / f"f{i}").write_text(str(i))
    (where / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                                                   "process": {"args": ["/bin/sh"], "cwd": "/"}}))
    return where


@pytest.fixture(autouse=True)
def nothing_ahead() -> Iterator[None]:
    manifest.stop_ahead()
    yield
    manifest.stop_ahead()


def test_the_command_takes_the_walk_started_for_its_rootfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_bundle(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    prefetch.start(["--root", str(tmp_path / "cache"), "template", "push", "-b", "b", "--node", "pve1"])
    [started] = manifest._ahead.values()
    # The command names the rootfs its own way (through a link, say): the same directory is the same walk.
    os.symlink(bundle / "rootfs", tmp_path / "link")
    with manifest.scanning(tmp_path / "link") as walk:
        assert walk is started
        scanned = walk.result()
    assert scanned == manifest.scan(bundle / "rootfs")
    assert not manifest._ahead


def test_a_walk_of_another_tree_is_not_taken_and_is_stopped(tmp_path: Path) -> None:
    one, other = make_bundle(tmp_path / "one"), make_bundle(tmp_path / "other", files=3)
    prefetch.start(["create", "-b", str(one), "web"])
    [started] = manifest._ahead.values()
    with manifest.scanning(other / "rootfs") as walk:
        assert walk is not started
        assert walk.result().fingerprint != manifest.scan(one / "rootfs").fingerprint
    manifest.stop_ahead()
    assert not manifest._ahead
    assert started._scanner is not None
    assert started._scanner._proc.poll() is not None  # no scanner left running


@pytest.mark.parametrize("argv", [
    ["list"], ["exec", "web", "run"], ["plan", "-b", "B"], ["template", "ls"], ["--root", "create", "state", "x"],
    ["run", "-b", "missing-bundle", "web"], ["create", "-b", "not-json", "web"], ["create", "-b", "no-rootfs", "web"],
])
def test_nothing_is_walked_for_other_commands_or_bundles_that_are_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      argv: list[str]) -> None:
    make_bundle(tmp_path / "B")
    (tmp_path / "not-json").mkdir()
    (tmp_path / "not-json" / "config.json").write_text("{nope")
    (tmp_path / "no-rootfs").mkdir()
    (tmp_path / "no-rootfs" / "config.json").write_text(json.dumps({"root": {"path": "gone"}}))
    monkeypatch.chdir(tmp_path)
    prefetch.start(argv)
    assert not manifest._ahead


@pytest.mark.parametrize(("argv", "bundle"), [
    (["create", "-b", "x", "id"], "x"), (["--root", "/r", "template", "push", "-b", "y"], "y"),
    (["run", "--bundle=z"], "z"), (["-o", "json", "run", "-d", "-bq", "id"], "q"), (["create", "id"], "."),
    (["--profile", "lab", "place", "--bundle", "w"], "w"), (["run", "-d", "id", "--", "-b", "no"], "."),
    (["template", "ls"], None), (["exec", "id", "run"], None), (["--root", "create", "list"], None),
])
def test_the_bundle_is_read_off_the_command_line_as_the_command_reads_it(argv: list[str], bundle: str | None) -> None:
    assert prefetch.bundle_named(argv) == bundle


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    group: Any = typer.main.get_command(app)
    for name in COMMANDS:
        command = group.commands[name]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub, inner in subcommands.items():
                yield (name, sub), inner
        else:
            yield (name,), command


def test_the_walkers_are_the_commands_with_a_bundle_that_walk_it() -> None:
    with_bundle = {path for path, command in _commands()
                   if any("--bundle" in getattr(p, "opts", ()) for p in command.params)}
    # plan maps the spec and reads no more of the rootfs than the paths the process names; spec writes one.
    assert with_bundle == set(prefetch.WALKERS) | {("plan",), ("spec",)}


def test_the_global_options_that_take_a_value_are_known() -> None:
    group = typer.main.get_command(app)
    valued = {opt for p in group.params if not getattr(p, "is_flag", True) and not p.is_eager for opt in p.opts}
    assert valued == prefetch.VALUED


def test_a_failing_command_leaves_no_walk_behind(tmp_path: Path) -> None:
    """The command fails before it walks (no settings): the walk started for it is stopped at exit."""
    bundle = make_bundle(tmp_path / "b", files=2000)
    done = subprocess.run([sys.executable, "-m", "pveoci", "--config", str(tmp_path / "missing.toml"), "template",
                           "push", "-b", str(bundle)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    scanners = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).startswith(
        os.fsencode(native.scanner() or "")) and os.fsencode(str(bundle)) in _cmdline(p)]
    assert scanners == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
