"""`hooks` and `annotations`: what pveoci itself does around the container's life, and the stop signal."""

from __future__ import annotations

import signal
from dataclasses import replace

from pveoci import errors, signals
from pveoci.lxc.draft import Draft, by_alias, shown

STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"


def signal_name(value: str) -> str:
    """SIGTERM, TERM, term or 15 -> SIGTERM; a MappingError for anything else."""
    name = signals.parse(value)
    if name is None:
        raise errors.MappingError(f"annotations[\"{STOP_SIGNAL_ANNOTATION}\"]: unknown signal {shown(value)}")
    return name


#: The hooks pveoci runs, on this machine (the runtime namespace), and those it cannot run: they belong inside the
#: container's namespaces before start. By their names in config.json; `pveoci features` lists the first.
HOOKS_RUN = ("prestart", "createRuntime", "poststart", "poststop")
HOOKS_NOT_RUN = ("createContainer", "startContainer")


def hooks(d: Draft) -> None:
    spec_hooks = d.spec.hooks
    if spec_hooks is None:
        return
    for name, items in by_alias(spec_hooks, HOOKS_RUN).items():
        if items:
            d.note(f"hooks.{name}", "applied", "run by pveoci on this machine (the runtime namespace)")
    d.unsupported_if_set("hooks", by_alias(spec_hooks, HOOKS_NOT_RUN),
                         "cannot run inside the container's namespaces before start", even_empty=False)


def annotations_and_stop_signal(d: Draft) -> None:
    """Kept in the ownership marker; the stop signal annotation is also what the init sends the process."""
    d.annotations = dict(d.spec.annotations or {})
    if not d.annotations:
        return
    stop = d.annotations.get(STOP_SIGNAL_ANNOTATION)
    if stop is None:
        d.note("annotations", "applied", "kept in the container's ownership marker")
        return
    d.stop_signal = signal_name(stop)
    d.process = replace(d.process, stop_signal=signal.Signals[d.stop_signal].value)
    d.note("annotations", "applied", f"kept in the container's ownership marker; stop signal {d.stop_signal}")
