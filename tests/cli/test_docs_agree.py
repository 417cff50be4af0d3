"""The docs and the command line agree.

Every `pveoci` command the docs, README.md and the commands' own --help show names a command that exists, with
flags it has (checked in-process against the command tree); and the docs' shell examples run, as written, on
the bed: each one is either in RUNS (the order they run in, and the exit status each must give) or in
NOT_RUNNABLE with the reason it cannot run here. An example in neither, or a listed one no doc shows any more,
fails the test, so both lists are reviewed whenever an example changes.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from pveoci.cli.main import app
from tests.testbed import Testbed
from tests.testbed.bundle import make_busybox_bundle

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
HELP_FLAGS = ("-h", "--help")


# ------------------------------------------------------------------ what the docs show


@dataclass(frozen=True)
class Example:
    where: str   # file:line
    text: str    # the command as a user types it: no prompt, no comment


def _strip_comment(line: str) -> str:
    return re.split(r"\s+#(?=\s|$)", line, maxsplit=1)[0].strip()


def shell_examples() -> list[Example]:
    """The commands of the fenced sh/console blocks (and of `$ ` lines in untyped ones), lines continued with a
    backslash joined."""
    found: list[Example] = []
    for path in DOCS:
        lang: str | None = None
        pending, start = "", 0
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                lang = stripped[3:].strip() if lang is None else None
                continue
            if lang not in ("sh", "shell", "bash", "console", ""):
                continue
            if lang in ("console", ""):
                if not stripped.startswith("$ "):
                    continue
                stripped = stripped[2:]
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending += stripped[:-1].strip() + " "
                continue
            text = _strip_comment(pending + stripped)
            pending = ""
            if text:
                found.append(Example(f"{path.relative_to(ROOT)}:{start}", text))
    return found


def words_of_pveoci(text: str) -> list[str] | None:
    """The words after `pveoci` of a command line (up to a pipe, `;` or `&&`), or None if it runs something else."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before the command
        words = words[1:]
    if not words or words[0] != "pveoci":
        return None
    out = []
    for word in words[1:]:
        if word in ("|", ";", "&&", "||") or word.startswith(">"):
            break
        out.append(word)
    return out


def inline_commands() -> list[Example]:
    """`pveoci ...` in the prose's code spans."""
    found = []
    for path in DOCS:
        inside = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                inside = not inside
                continue
            if not inside:
                found += [Example(f"{path.relative_to(ROOT)}:{number}", span)
                          for span in re.findall(r"`(pveoci [^`]+)`", line)]
    return found


def help_examples(command: Any, path: tuple[str, ...] = ()) -> list[Example]:
    """The Examples of every command's and group's --help."""
    found = []
    for line in (command.help or "").splitlines():
        text = re.split(r"\s{2,}[#(]", line.strip(), maxsplit=1)[0]
        if text.startswith("pveoci "):
            found.append(Example(f"pveoci {' '.join(path)} --help".replace("  ", " "), text))
    for name, sub in getattr(command, "commands", {}).items():
        found += help_examples(sub, (*path, name))
    return found


# ------------------------------------------------------------------ the command tree


TREE = typer.main.get_command(app)


def options(command: Any) -> dict[str, bool]:
    """Every option of a command, and whether it takes a value."""
    out = dict.fromkeys(HELP_FLAGS, False)
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        takes = not (param.is_flag or param.count)
        for opt in [*param.opts, *param.secondary_opts]:
            out[opt] = takes
    return out


def check(words: list[str]) -> list[str]:
    """What is wrong with `pveoci WORDS`: an unknown command, or a flag its command does not have."""
    command, path, i = TREE, "pveoci", 0
    while True:
        known = options(command)
        interspersed = command.context_settings.get("allow_interspersed_args", not hasattr(command, "commands"))
        while i < len(words):
            word = words[i]
            if word == "--":
                break
            if word.startswith("-") and len(word) > 1:
                flag, eq, _ = word.partition("=")
                if flag not in known:
                    return [f"{path}: no option {flag}"]
                i += 1 + (1 if known[flag] and not eq else 0)
                continue
            if hasattr(command, "commands") or not interspersed:
                break
            i += 1  # an argument: the leaf's options may follow it
        if not hasattr(command, "commands"):
            return []
        if i >= len(words):
            return []  # `pveoci template`, `pveoci --version`: no command named
        sub = command.commands.get(words[i])
        if sub is None:
            return [f"{path}: no command {words[i]!r}"]
        command, path, i = sub, f"{path} {words[i]}", i + 1


def flags_in(text: str) -> list[str]:
    return re.findall(r"(?:^|[\s\[(/|,])(--?[A-Za-z][\w-]*)", text)


def check_synopsis(text: str) -> list[str]:
    """A reference table's `template push [-b DIR] [--strict]`: the command path, then every flag named."""
    command, path = TREE, "pveoci"
    words = text.split()
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command, path = command.commands[words[0]], f"{path} {words[0]}"
        words = words[1:]
    if command is TREE:
        return [f"{text!r}: no such command"]
    known = options(command)
    return [f"{path}: no option {flag}" for flag in flags_in(" ".join(words)) if flag not in known]


def cli_tables() -> tuple[list[str], list[str]]:
    """docs/cli.md's tables: the global options' first cells, and the commands' synopses."""
    text = (ROOT / "docs" / "cli.md").read_text()
    glob, commands, table = [], [], ""
    for line in text.splitlines():
        if line.startswith("| option | meaning |"):
            table = "options"
        elif line.startswith("| command | what it does |"):
            table = "commands"
        elif not line.startswith("|"):
            table = ""
        elif table and not line.startswith("|---"):
            first = line.split(" | ")[0]
            spans = re.findall(r"`([^`]+)`", first)
            (glob if table == "options" else commands).extend(spans)
    return glob, commands


#: Code spans that name pveoci's shape, not a command.
NOT_COMMANDS = {"pveoci [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]"}


def test_the_examples_were_found() -> None:
    # A parser that found nothing would check nothing.
    assert len(shell_examples()) > 40
    assert len(inline_commands()) > 20
    assert len(help_examples(TREE)) > 60
    glob, commands = cli_tables()
    assert len(glob) > 10
    assert len(commands) > 20


def test_every_command_the_docs_and_the_help_show_exists_with_its_flags() -> None:
    wrong = []
    for example in [*shell_examples(), *inline_commands(), *help_examples(TREE)]:
        if example.text in NOT_COMMANDS:
            continue
        words = words_of_pveoci(example.text)
        if words is not None:
            wrong += [f"{example.where}: {example.text}: {why}" for why in check(words)]
    assert wrong == []


def test_the_reference_tables_name_only_what_exists() -> None:
    glob, commands = cli_tables()
    known = options(TREE)
    wrong = [f"global option {flag}" for span in glob for flag in flags_in(span) if flag not in known]
    for span in commands:
        wrong += check_synopsis(span)
    assert wrong == []


def test_every_command_takes_the_output_switch_after_its_name() -> None:
    def leaves(command: Any, path: str) -> list[tuple[str, Any]]:
        subs = getattr(command, "commands", None)
        if subs is None:
            return [(path, command)]
        return [leaf for name, sub in subs.items() for leaf in leaves(sub, f"{path} {name}")]

    lacking = [path for path, command in leaves(TREE, "pveoci") if not {"-o", "--output"} <= set(options(command))]
    assert lacking == []


def command_path(words: list[str]) -> str:
    """`pveoci -p lab template ls -o json` -> "pveoci template ls": the command the words run."""
    command, path, i = TREE, "pveoci", 0
    while hasattr(command, "commands"):
        known = options(command)
        while i < len(words) and words[i].startswith("-"):
            i += 1 + (1 if known.get(words[i].partition("=")[0]) and "=" not in words[i] else 0)
        if i >= len(words) or words[i] not in command.commands:
            break
        command, path, i = command.commands[words[i]], f"{path} {words[i]}", i + 1
    return path


def test_every_command_and_group_shows_examples_of_itself_in_its_help() -> None:
    def lacking(command: Any, path: str) -> list[str]:
        own = [re.split(r"\s{2,}[#(]", line.strip(), maxsplit=1)[0] for line in (command.help or "").splitlines()]
        shown = {command_path(words_of_pveoci(t) or []) for t in own if t.startswith("pveoci ")}
        out = [] if any(p == path or p.startswith(path + " ") for p in shown) else [path]
        for name, sub in getattr(command, "commands", {}).items():
            out += lacking(sub, f"{path} {name}")
        return out

    assert lacking(TREE, "pveoci") == []


@pytest.mark.parametrize(("words", "wrong"), [
    (["state", "-o", "json", "hello"], []),
    (["-o", "json", "state", "hello"], []),
    (["state", "--bogus", "hello"], ["pveoci state: no option --bogus"]),
    (["templates", "ls"], ["pveoci: no command 'templates'"]),
    (["template", "ls", "-x"], ["pveoci template ls: no option -x"]),
    (["exec", "-e", "A=1", "hello", "sh", "-c", "true"], []),  # after the id, the words are the command's
    (["-p", "lab", "--host", "h", "list", "-q", "--filter", "node=pve1"], []),
])
def test_the_checker_itself(words: list[str], wrong: list[str]) -> None:
    assert check(words) == wrong


# ------------------------------------------------------------------ running them on the bed

#: The docs' examples that cannot run on the bed, and why.
NOT_RUNNABLE = {
    "sudo bash contrib/demo.sh": "sets this machine up (apt, a virtualenv), then the demo: minutes, and root's",
    "sudo bash contrib/test.sh": "sets this machine up, then every test: this one among them",
    "pip install -e .": "installs into the environment the tests run in",
    "pip install pveoci": "installs from the network",
    "pveoci exec -t hello -- sh": "a terminal, and a person typing in it",
    "pveoci events --interval 1s hello": "streams until hello stops, and hello runs until it is killed",
    "$EDITOR ~/.config/pveoci/lab.token": "an editor, and a person pasting a secret",
    "install -m 600 /dev/null ~/.config/pveoci/lab.token && $EDITOR ~/.config/pveoci/lab.token":
        "an editor, and a person pasting a secret",
    'pveum role add PVEOCI -privs "Sys.Audit VM.Allocate VM.Audit VM.Config.CPU VM.Config.Memory '
    'VM.Config.Network VM.Config.Options VM.Config.Disk VM.PowerMgmt VM.Migrate Datastore.AllocateTemplate '
    'Datastore.Audit Datastore.Allocate Datastore.AllocateSpace SDN.Use"': "Proxmox's pveum: on a real node only",
    "pveum user add pveoci@pve": "Proxmox's pveum: on a real node only",
    "pveum acl modify / -user pveoci@pve -role PVEOCI": "Proxmox's pveum: on a real node only",
    "pveum user token add pveoci@pve cli --privsep 0": "Proxmox's pveum: on a real node only",
    'pveum role add PVEOCIPull -privs "Sys.AccessNetwork"': "Proxmox's pveum: on a real node only",
    "pveum acl modify /nodes -user pveoci@pve -role PVEOCIPull": "Proxmox's pveum: on a real node only",
    "sudo .venv/bin/python -m bench pack": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench upload": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench env": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench templates": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench commands": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench engines": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench images": "a benchmark: minutes of measuring, nothing to check",
    "sudo .venv/bin/python -m bench all --rounds 5 --size 500": "a benchmark: minutes of measuring",
    "sudo .venv/bin/python -m tests.testbed up": "serves a bed until Ctrl-C",
    "sudo .venv/bin/python -m tests.testbed demo": "the demo: a bed of its own, minutes",
    "sudo .venv/bin/python -m tests.cassettes": "records every cassette again: rewrites fixtures/cassettes",
    "pytest tests/test_jobs.py --pve-record lab": "the worked example's files and a lab profile "
                                                  "(tests/cassettes/test_record.py runs it on the bed)",
    "git add tests/cassettes/": "the worked example's files (tests/cassettes/test_record.py runs it)",
    "podman import rootfs.tar localhost/app:1": "podman with a machine's own storage: tests/engines/test_podman.py "
                                                "does it with storage of its own",
    "podman run --rm --network none localhost/app:1 echo hi": "as podman import above",
    "ctr image import app.tar": "a machine's containerd: tests/engines/test_containerd.py runs ctr against a "
                                "daemon of its own",
    "ctr run --rm --runc-binary /usr/local/bin/pveoci-runtime localhost/app:1 c1 echo hi": "as ctr image import",
    **dict.fromkeys([
        "pveoci pull registry.example:5000/team/web:2",
        "pveoci plan --image registry.example:5000/team/web:2",
        "pveoci run -d --image registry.example:5000/team/web:2 -e PORT=8080 web",
        "pveoci run --image registry.example:5000/tools:1 t1 -- ls -l /",
        "pveoci create --image oci-archive:./app.tar --entrypoint /bin/sh app -- -c 'exec app --serve'",
    ], "an example's registry and images: tests/image/test_run_image.py runs each form against a registry of its "
       "own on loopback"),
    **dict.fromkeys([
        "pveoci update web --image registry.example/app:2 --dry-run",
        "pveoci update web --image registry.example/app:2",
        "pveoci update web --image registry.example/app@sha256:0123... -e LOG=debug --grace 10",
        "pveoci update --image registry.example/app:1.2 --dry-run web",
        "pveoci update --image registry.example/app@sha256:0123... -e LOG=debug web",
    ], "an example's registry and images: tests/image/test_update_image.py runs each form against a registry of "
       "its own on loopback"),
    "pveoci run -d --image docker.io/library/nginx:1.27 --pull node web2":
        "a public registry on the internet: tests/image/test_node_pull.py runs --pull node against one of its own",
}

BED, FRESH, REPO = "bed", "fresh", "repo"

#: The runnable examples in the order they run: (command, where: the bed, a fresh home or the checkout,
#: the exit status it must give). The containers and bundles are the docs': ./hello runs until it is killed,
#: ./job ends by itself, ./web is a service; the bed has three nodes (pve1-pve3).
RUNS: list[tuple[str, str, int]] = [
    ("pveoci --version", FRESH, 0),
    ("pveoci features", FRESH, 0),  # before any profile exists
    ("pveoci config init --name lab --host pve1.lab.example", FRESH, 0),
    ("install -m 600 /dev/null ~/.config/pveoci/lab.token", FRESH, 0),
    (".venv/bin/python -m pytest tests/test_settings.py", REPO, 0),
    ("git diff --stat fixtures/cassettes", REPO, 0),
    ("pveoci doctor", BED, 0),
    ("pveoci nodes", BED, 0),
    ("pveoci nodes -o json", BED, 0),
    ("pveoci --backend pct doctor", BED, 0),
    ("pveoci plan -b ./hello", BED, 0),
    ("pveoci template push -b ./hello", BED, 0),
    ("pveoci template push -b ./hello", BED, 0),  # cli.md shows it twice: the second sends nothing
    ("pveoci template ls", BED, 0),
    ("pveoci template gc", BED, 0),
    ("pveoci run -b ./job job42", BED, 0),
    ("pveoci --backend pct run -d -b ./hello hello", BED, 0),
    ("pveoci exec hello -- env", BED, 0),
    ("pveoci state hello", BED, 0),
    ("pveoci events --stats hello", BED, 0),
    ("pveoci list", BED, 0),
    ("pveoci list --filter node=pve2 --filter annotation=team=blue", BED, 0),
    ("pveoci kill hello", BED, 0),
    ("pveoci logs -f hello", BED, 128 + 15),  # until it ends: TERM ended it
    ("pveoci delete -f hello", BED, 0),
    ("pveoci run -d -b ./hello hello", BED, 0),
    ("pveoci update --memory 256m --cpuset-cpus 0-1 hello", BED, 0),
    ("pveoci update --cpu-quota 50000 --cpu-period 100000 hello", BED, 0),
    ("""echo '{"memory": {"limit": 268435456}, "cpu": {"quota": -1}}' | pveoci update --resources - hello""", BED, 0),
    ("pveoci place -b ./web --explain", BED, 0),
    ("pveoci run -d -b ./web -x pve1 web1", BED, 0),
    ("pveoci migrate web1 --to pve3 --dry-run", BED, 0),
    ("pveoci migrate web1 --to pve2 --dry-run", BED, 0),
    ("pveoci migrate web1 --to pve2", BED, 0),
    ("pveoci migrate web1", BED, 0),
    ("pveoci drain pve1 --dry-run", BED, 0),
    ("pveoci drain pve1 --parallel 2", BED, 0),
    ("pveoci rebalance --max-moves 3", BED, 0),
]


def test_every_shell_example_runs_on_the_bed_or_says_why_not() -> None:
    shown = {e.text for e in shell_examples()}
    run = {text for text, _, _ in RUNS}
    assert run.isdisjoint(NOT_RUNNABLE)
    assert sorted(shown - run - set(NOT_RUNNABLE)) == []   # a new example: run it below, or say why not
    assert sorted((run | set(NOT_RUNNABLE)) - shown) == []  # a listed one no doc shows any more


FOREVER = ["sh", "-c", "echo hello; while true; do sleep 1; done"]


@pytest.mark.bed
def test_the_docs_examples_run_on_the_bed_as_written(lxc_bed3: Testbed, tmp_path: Path) -> None:
    work = tmp_path / "work"
    make_busybox_bundle(work / "hello", FOREVER)
    make_busybox_bundle(work / "job", ["sh", "-c", "echo working; sleep 1"])
    make_busybox_bundle(work / "web", FOREVER)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    bed = lxc_bed3.env(PATH=path, XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    home = tmp_path / "home"
    home.mkdir()
    fresh = {k: v for k, v in bed.items() if not k.startswith(("PVEOCI_", "XDG_"))}
    fresh.update(HOME=str(home), XDG_STATE_HOME=str(tmp_path / "fresh-state"))
    where = {BED: (bed, work), FRESH: (fresh, home), REPO: (fresh, ROOT)}
    failed = []
    for text, place, code in RUNS:
        env, cwd = where[place]
        done = subprocess.run(["bash", "-c", text], env=env, cwd=cwd, capture_output=True, text=True,
                              check=False, timeout=300)
        if done.returncode != code:
            failed.append(f"{text}: exit {done.returncode}, not {code}: {(done.stderr or done.stdout)[-400:]}")
    assert failed == []
    # What the examples say they did
    assert (home / ".config" / "pveoci" / "config.toml").exists()
    assert oct((home / ".config" / "pveoci" / "lab.token").stat().st_mode & 0o777) == "0o600"
    listed = subprocess.run(["pveoci", "list", "-q"], env=bed, capture_output=True, text=True, check=True)
    assert sorted(listed.stdout.split()) == ["hello", "web1"]  # job42 ran in the foreground: deleted after
