"""Proxmox tasks: parse a UPID and wait for it on its own node, polling adaptively (over the API or pvesh)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pveoci import errors, retry

if TYPE_CHECKING:
    from pveoci.pve.cluster import Reader

_WARNINGS = re.compile(r"^WARNINGS: (\d+)$")
LOG_TAIL = 10
LOG_PAGE = 500
LATE_STEP = 0.15  # the first poll after a task's expected time, as a fraction of it


@dataclass(frozen=True)
class Upid:
    """`UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:` as its parts."""

    text: str
    node: str
    type: str
    id: str
    user: str
    starttime: int

    @classmethod
    def parse(cls, text: str) -> Upid:
        parts = str(text).split(":")
        if len(parts) != 9 or parts[0] != "UPID" or not parts[1]:
            raise errors.ApiError(f"not a Proxmox task id: {text!r}")
        try:
            start = int(parts[4], 16)
        except ValueError:
            raise errors.ApiError(f"not a Proxmox task id: {text!r}") from None
        return cls(text=str(text), node=parts[1], type=parts[5], id=parts[6], user=parts[7], starttime=start)


@dataclass(frozen=True)
class TaskResult:
    upid: str
    exitstatus: str
    warnings: int


def wait(
    client: Reader,
    upid: str,
    *,
    timeout: float,
    on_log: Callable[[str], None] | None = None,
    expect: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TaskResult:
    """Wait for the task; `WARNINGS: N` counts as success; a failure raises TaskFailed with the log tail.

    `expect`: seconds it will likely take: asked after only then, and, if it is still running, again on a scale
    of that (0.15 of it at first, growing): a task that takes half as long again is asked three times more,
    not six.
    """
    task = Upid.parse(upid)
    deadline = clock() + timeout
    seen = 0
    schedule = retry.TASK_POLL  # fast first: most tasks take well under a second
    if expect > 0 and on_log is None:
        sleep(min(expect, timeout))
        schedule = replace(schedule, first=max(schedule.first, min(expect * LATE_STEP, schedule.cap)))
    delays = schedule.delays()
    # Rounds that stream the log are not interchangeable (each reads on from the last), so only a
    # wait without on_log is a plain polling loop.
    rounds: contextlib.AbstractContextManager[Callable[[], None]] = (
        retry.polling() if on_log is None else contextlib.nullcontext(_nothing))
    with rounds as again:
        while True:
            status = client.get("nodes", task.node, "tasks", task.text, "status")
            if on_log is not None:
                seen = _stream_log(client, task, seen, on_log)
            if status.get("status") == "stopped":
                break
            if clock() >= deadline:
                raise errors.OperationTimeout(
                    f"task {task.type} {task.id} on {task.node} is still running after {timeout:g} s "
                    f"(it goes on there; UPID {task.text})"
                )
            sleep(min(next(delays), max(deadline - clock(), 0.0)))
            again()
    exitstatus = str(status.get("exitstatus") or "unknown")
    if exitstatus == "OK":
        return TaskResult(task.text, exitstatus, 0)
    warn = _WARNINGS.match(exitstatus)
    if warn:
        return TaskResult(task.text, exitstatus, int(warn.group(1)))
    tail = log_tail(client, task)
    what = f"{task.type} {task.id}".strip()
    raise errors.TaskFailed(
        f"Proxmox task {what} on {task.node} failed: {exitstatus}",
        upid=task.text, exitstatus=exitstatus, log_tail=tail,
    )


def _nothing() -> None:
    return None


def _stream_log(client: Reader, task: Upid, seen: int, on_log: Callable[[str], None]) -> int:
    lines: list[dict[str, Any]] = client.get("nodes", task.node, "tasks", task.text, "log",
                                             start=seen, limit=LOG_PAGE)
    for line in lines:
        on_log(str(line.get("t", "")))
    return seen + len(lines)


def log_tail(client: Reader, task: Upid, count: int = LOG_TAIL) -> list[str]:
    """The last `count` lines of a task's log (best effort: an unreadable log gives [])."""
    lines: list[str] = []
    start = 0
    try:
        while True:
            page = client.get("nodes", task.node, "tasks", task.text, "log", start=start, limit=LOG_PAGE)
            lines.extend(str(item.get("t", "")) for item in page)
            lines = lines[-count:]
            if len(page) < LOG_PAGE:
                return lines
            start += LOG_PAGE
    except errors.PveociError:
        return lines
