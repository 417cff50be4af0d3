"""The command line in-process: `pveoci.__main__.main([...])` (what `pveoci` and `python -m pveoci` run) called
as a function, with what a fresh `pveoci` process would have had of its own made fresh for the call and put back
afterwards.

A subprocess costs about 0.6 s of imports before any work; a call here costs what the command does. The call gets:

- stdin, stdout and stderr of its own: pipes as far as it can tell (no terminal, no file descriptor; text over
  bytes, with `.buffer`), read back as `subprocess.run(text=True)` reads them;
- exactly the environment given (nothing else of the test's), COLUMNS=80 unless given (what click and rich fall
  back to without a terminal, so help texts and tables do not depend on the terminal pytest runs in), and the
  working directory given;
- its exit code from SystemExit (pveoci.cli.main.main ends with sys.exit), 0 when it returns;
- logging as a new process has it: the `pveoci` logger unconfigured (what --debug and --log add is removed and
  the log file closed afterwards), and a record no handler would take printed on stderr as logging.lastResort
  prints it; Python's default warning filters, warnings printed on stderr;
- module-level state of pveoci that lives as long as a process empty (the secrets to scrub, the creates this
  process is making, polling watchers, the walks its start began), and the signal handlers put back;
- the Runtime each command opens (pveoci.cli.invocation.open_runtime) closed after it, as a process's exit would.

One thing is not made afresh: typer's click command, built from `pveoci.cli.main.app` on every start (about
0.15 s), is built once and reused (the app is not changed after import). Two things differ by nature: every call
has the test's pid (the cache's journal tells this process's creates from abandoned ones by pid: a test of a
killed command needs a process), and the command shares its interpreter with the bed's servers, so what depends
on timing between them (how many times a task's status is polled) may come out otherwise.

`open_runtime` replaces how the commands connect: `memory_runtime(backend)` runs them on the in-memory backend.

Subprocesses stay where the process itself is what is tested: signals (Ctrl-C, SIGKILL midway), a terminal, the
console script, start-up time and imports, and several processes racing each other.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from unittest import mock

import typer.main

if TYPE_CHECKING:
    from pveoci.backends.base import Backend
    from pveoci.runtime import Runtime
    from pveoci.settings import Settings

#: How a command gets its Runtime (the signature of pveoci.cli.invocation.open_runtime).
OpenRuntime = Callable[["Settings", "Path | None"], "Runtime"]


@dataclass
class Result:
    code: int
    out: str
    err: str


#: What a process writing into pipes knows of a terminal: nothing; click and rich then use 80 columns.
NO_TERMINAL = {"COLUMNS": "80", "LINES": "24"}

#: Loggers of the bed's servers, which run in the test's own process: a pveoci process never had their records.
BED_LOGGERS = frozenset({"aiohttp", "asyncio", "fakepve", "tests"})

#: pveoci's module-level state that lives as long as its process: (module, attribute) of a mutable container.
PROCESS_STATE = (("pveoci.logs", "_secrets"), ("pveoci.cache", "_RUNNING"), ("pveoci.retry", "_watchers"),
                 ("pveoci.template.manifest", "_ahead"))

#: Signal handlers a command may install (and should have put back).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH, signal.SIGPIPE)


def invoke(args: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, stdin: bytes = b"",
           open_runtime: OpenRuntime | None = None) -> Result:
    """Run `pveoci ARGS` in this process, as `subprocess.run([python, -m, pveoci, *args], env=env, cwd=cwd,
    input=stdin, capture_output=True, text=True)` would. A call that hangs fails its test at pytest-timeout's
    limit, with its stack (pyproject.toml)."""
    from pveoci.__main__ import main
    from pveoci.cli import invocation

    connect = open_runtime or invocation.open_runtime
    opened: list[Runtime] = []

    def opening(settings: Settings, root: Path | None) -> Runtime:
        runtime = connect(settings, root)
        opened.append(runtime)
        return runtime

    out, err = _pipe("strict"), _pipe("backslashreplace")
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, {**NO_TERMINAL, **env}, clear=True))
        stack.enter_context(_working_directory(cwd))
        # typer sets sys.excepthook when it runs: a process's own; the test's is put back.
        stack.enter_context(mock.patch.multiple(sys, stdin=_stdin(stdin), stdout=out, stderr=err,
                                                excepthook=sys.excepthook))
        stack.enter_context(mock.patch.object(typer.main, "get_command", _built_once))
        stack.enter_context(mock.patch.object(invocation, "open_runtime", opening))
        stack.enter_context(_fresh_logging())
        stack.enter_context(_fresh_warnings())
        stack.enter_context(_fresh_process_state())
        stack.enter_context(_signal_handlers())
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        finally:
            for runtime in opened:
                runtime.close()
        out.flush()
        err.flush()
    return Result(code, _read(out), _read(err))


_get_command = typer.main.get_command
_commands: dict[typer.Typer, Any] = {}


def _built_once(app: typer.Typer) -> Any:
    """typer.main.get_command, once per app."""
    if app not in _commands:
        _commands[app] = _get_command(app)
    return _commands[app]


def memory_runtime(backend: Backend) -> OpenRuntime:
    """Commands connect to `backend` (e.g. a MemoryBackend), through pveoci.connect as ever: the settings and the
    local cache are the command's own."""

    def open_runtime(settings: Settings, root: Path | None) -> Runtime:
        from pveoci.connect import connect

        return connect(settings=settings, root=root, backend=backend)

    return open_runtime


def _pipe(errors: str) -> io.TextIOWrapper:
    """A stdout or stderr as a pipe gives it: UTF-8 text over bytes, no terminal, no file descriptor; written
    through, so what goes to the text layer and to `.buffer` stays in the order it was written."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)


def _stdin(data: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def _read(stream: io.TextIOWrapper) -> str:
    """What subprocess.run(text=True) makes of the bytes: decoded, universal newlines."""
    raw = stream.buffer.getvalue()  # type: ignore[attr-defined]
    return str(raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))


def _exit_code(exc: SystemExit) -> int:
    """The status a process exits with for this SystemExit (a message instead of a number: printed, 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return 1


@contextlib.contextmanager
def _working_directory(cwd: Path | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


class _LastResort(logging.Handler):
    """On the root logger during a call: a record that no handler of the pveoci process would take is printed on
    its stderr, as logging.lastResort does in a process (the test's own handlers on the root logger, pytest's,
    would otherwise swallow it)."""

    def __init__(self) -> None:
        super().__init__(logging.lastResort.level if logging.lastResort else logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in BED_LOGGERS or _taken(record.name):
            return
        sys.stderr.write(self.format(record) + "\n")


def _taken(name: str) -> bool:
    """Whether a handler below the root would take a record of this logger (then lastResort is not used)."""
    logger: Any = logging.getLogger(name)
    while logger is not None and logger is not logging.root:
        if logger.handlers:
            return True
        logger = logger.parent if logger.propagate else None
    return False


@contextlib.contextmanager
def _fresh_logging() -> Iterator[None]:
    """The `pveoci` logger as a new process has it; what the call configures (pveoci.logs.configure) undone."""
    logger = logging.getLogger("pveoci")
    saved = (list(logger.handlers), logger.level, logger.propagate, list(logger.filters))
    logger.handlers, logger.level, logger.propagate, logger.filters = [], logging.NOTSET, True, []
    resort = _LastResort()
    logging.root.addHandler(resort)
    try:
        yield
    finally:
        logging.root.removeHandler(resort)
        for handler in logger.handlers:
            handler.close()  # the --log file
        logger.handlers, logger.level, logger.propagate, logger.filters = saved


@contextlib.contextmanager
def _fresh_warnings() -> Iterator[None]:
    """Python's default warning filters (no -W, no -X dev), and warnings printed on stderr."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category, append=True)
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _fresh_process_state() -> Iterator[None]:
    """pveoci's state that lasts as long as a process starts empty; the test's own is put back afterwards."""
    import importlib

    containers = [getattr(importlib.import_module(module), name) for module, name in PROCESS_STATE]
    saved = [type(c)(c) for c in containers]
    for c in containers:
        c.clear()
    try:
        yield
    finally:
        from pveoci.template import manifest

        manifest.stop_ahead()  # the walks the command's start began and nothing took, stopped as at its exit
        for c, before in zip(containers, saved, strict=True):
            c.clear()
            if isinstance(c, list):
                c.extend(before)
            else:
                c.update(before)


@contextlib.contextmanager
def _signal_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


class MemoryCli:
    """`pveoci ARGS` in-process against a MemoryBackend (the `memory_cli` fixture): a profile of its own (the
    backend answers for any host), a local cache and a packing directory under `root`, the test's environment
    without its PVEOCI_* variables."""

    def __init__(self, root: Path, nodes: Sequence[str] = ("pve1", "pve2")) -> None:
        from pveoci.backends.memory import MemoryBackend

        self.backend = MemoryBackend(nodes=nodes)
        self.root = root
        self.config = root / "config.toml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text('[profiles.default]\nhost = "memory.invalid"\n')

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PVEOCI_")}
        env.update(PVEOCI_CONFIG=str(self.config), XDG_STATE_HOME=str(self.root / "state"),
                   XDG_CACHE_HOME=str(self.root / "cache"))
        env.update(extra)
        return env

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 stdin: bytes = b"") -> Result:
        return invoke(args, env=self.env(**(env or {})), cwd=cwd, stdin=stdin,
                      open_runtime=memory_runtime(self.backend))
