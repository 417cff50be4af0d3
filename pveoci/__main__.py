"""The `pveoci` command (and `python -m pveoci`): `pveoci --version` answered before anything else is imported,
everything else by the command line (pveoci.cli.main).

A command run as a process (`main()` with no arguments: the console script, `python -m pveoci`) ends with
os._exit once its output is flushed and the atexit handlers have run: the interpreter's own teardown (every
module and object freed one by one: pydantic's schemas, typer's commands) took about 0.1 s after each command,
for nothing a process that is about to end needs. Called with arguments (in-process, as tests do), it returns
or raises SystemExit as any function would.
"""

from __future__ import annotations

import os
import sys
import types


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # what scripts and package managers ask most: no typer, no settings, no cache
        from pveoci import __version__

        sys.stdout.write(f"pveoci version {__version__}\n")
        return
    # pydantic looks for plugins (observability hooks) in every installed package's metadata when the first model
    # is built: about 30 ms of every command's start, for plugins the command line has no use for. A value the
    # user set is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if argv is None:   # a process of its own: the caller's pydantic, in-process, is left as it is
        _no_plugin_loader()
    from pveoci.cli import prefetch

    prefetch.start(args)  # a rootfs's stat walk, while the command line below is imported and parsed
    from pveoci.cli.main import main as run

    if argv is not None:
        run(args)
        return
    try:
        run(args)
    except SystemExit as done:
        _end(done.code)
    _end(0)


#: pydantic's plugin loader, and what pydantic asks of it when plugins are off (its create_schema_validator).
PLUGIN_LOADER = "pydantic.plugin._loader"
PLUGINS_OFF = ("__all__", "1", "true")


class _NoPlugins(types.ModuleType):
    """pydantic's plugin loader while plugins are off: no plugins, without the loader's own import of
    importlib.metadata (20 to 30 ms of every command, for entry points it would not read). Anything else asked
    of it, by a pydantic that asks more, is the real loader's."""

    @staticmethod
    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> object:
        import importlib

        if name.startswith("__"):   # what the import system looks for (__path__...): not a package
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def _no_plugin_loader() -> None:
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in PLUGINS_OFF and PLUGIN_LOADER not in sys.modules:
        sys.modules[PLUGIN_LOADER] = _NoPlugins(PLUGIN_LOADER)


def _end(code: object) -> None:
    """Ends this process as SystemExit(code) would, without the interpreter's teardown: output flushed, the
    atexit handlers run (the log file's last lines, the walks nothing took), the threads that keep a process
    alive waited for."""
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:  # sys.exit("message"), as Python prints it
        sys.stderr.write(f"{code}\n")
        status = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError, ValueError):  # a reader gone (`| head`), a stream closed
            status = status or 1
    os._exit(status)


if __name__ == "__main__":
    main()
