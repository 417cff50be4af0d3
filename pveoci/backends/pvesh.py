"""pvesh and pct as programs: their command lines, what they print, and their failures as typed errors.

What the tools do (pve-common's CLIHandler and RESTEnvironment, pve-manager's PVE/CLI/pvesh.pm,
pve-container's PVE/CLI/pct.pm; docs/testing.md lists what the test bed reproduces):
- `pvesh get PATH --output-format json` prints the answer's data as one line of JSON.
- On the command line a Proxmox task runs before the call returns: pvesh prints the task's log
  first and the UPID last (Proxmox bug 4333); a task that failed still exits 0, its error on
  stderr, so the task's status must be read. pct prints the log and exits 255 with the error on
  stderr.
- Any other failure: exit 255 (a Perl `die`), the message on stderr; a parameter error is
  `400 Parameter verification failed.` followed by `<param>: <error>` lines and the usage.
- pvesh runs a path on another node through SSH from the node it runs on; when that node is down
  it says `proxy handler failed: ...`.
Options go as `--key=value`, one argv word each: a value is never split, never read as an option,
never seen by a shell unquoted (the runner quotes every word).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pveoci import errors
from pveoci.backends.runner import ENTRY, Runner
from pveoci.models import Completed
from pveoci.pve import tasks, wording

log = logging.getLogger("pveoci.backend")

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_CODE = re.compile(r"^(\d{3}) (.*)$")
_PARAM = re.compile(r"^([A-Za-z][\w-]*(?:\[\d+\])?): (.+)$")
_OFFLINE = ("proxy handler failed: ssh:", "No route to host", "ssh: connect to host")
_UPID = re.compile(r"UPID:[^:\s\"]+:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s\"]*:[^:\s\"]*:[^:\s\"]+:")
READ_TIMEOUT = 120.0


def options(params: Mapping[str, object]) -> list[str]:
    """`--key=value` words for the tools (None dropped, booleans as 1/0); a NUL byte, which no command line can
    carry, is refused before anything runs."""
    out = []
    for key, value in params.items():
        if value is None:
            continue
        if not _KEY.match(key):
            raise errors.InvalidParameter(f"not an option name for pct or pvesh: {key!r}")
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        if "\0" in text:
            raise errors.Unsupported(f"option {key}: a NUL byte cannot be passed on a command line to pct or "
                                     "pvesh (use the API backend)")
        out.append(f"--{key}={text}")
    return out


def path(segments: Sequence[object]) -> str:
    """An API path for pvesh: a volume id stays one segment (the storage content API takes the rest of the path)."""
    parts = [str(s) for s in segments]
    if any(not p or p != p.strip() for p in parts):
        raise errors.InvalidParameter(f"not an API path: {'/'.join(parts)!r}")
    return "/" + "/".join(parts)


def last_json(stdout: bytes) -> Any:
    """The JSON answer pvesh printed last, after whatever task log came first."""
    lines = stdout.decode("utf-8", errors="replace").splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if not lines[start].strip():
            continue
        try:
            return json.loads("\n".join(lines[start:]))
        except ValueError:
            continue
    raise errors.ApiError(f"pvesh printed no JSON answer: {wording.oneline(stdout.decode(errors='replace'))[-200:]}")


def reason(done: Completed) -> str:
    """What the tool said on stderr, on one line (its `WARN:` lines left out)."""
    lines = [line for line in done.stderr.decode("utf-8", errors="replace").splitlines()
             if line.strip() and not line.startswith("WARN: ")]
    return wording.oneline(" ".join(lines))


def failure(tool: str, where: str, done: Completed) -> errors.PveociError | None:
    """The typed error a failed pct or pvesh names by its wording; None when the wording names none."""
    text = reason(done)
    if done.status == 127 or text.endswith(f"{tool}: not found") or f"{tool}: command not found" in text:
        return errors.ConfigError(f"{tool} is not on {where}: the pct backend needs Proxmox VE's own tools "
                                  "(run it against a Proxmox VE node)")
    if text.startswith("sudo:"):
        return errors.PermissionDenied(f"sudo on {where} refused {tool} ({text}): let the SSH user run pct and "
                                       "pvesh through sudo without a password")
    lines = [line.strip() for line in done.stderr.decode("utf-8", errors="replace").splitlines() if line.strip()]
    code = _CODE.match(lines[0]) if lines else None
    if code is not None:
        return _coded(tool, where, int(code.group(1)), code.group(2), lines[1:])
    named = wording.by_reason(text)
    if named is not None:
        return named
    if any(word in text for word in _OFFLINE):
        return errors.NodeOffline(f"a node is offline or unreachable from {where} ({text})")
    return None


def _coded(tool: str, where: str, status: int, message: str, rest: list[str]) -> errors.PveociError:
    """An error PVE raised with an HTTP code (`<code> <message>`, then `<param>: <error>` lines and the usage)."""
    params = {m.group(1): m.group(2) for m in map(_PARAM.match, rest) if m}
    if status == 400 and params:
        return wording.invalid_parameter(params)
    if status == 403:
        return wording.permission_denied(message, "root@pam", f"{tool} on {where}")
    if status in (595, 596):  # PVE's proxy: the node a path or a task is for is unreachable
        return errors.NodeOffline(f"a node is offline or unreachable from {where} ({message})")
    named = wording.by_reason(message)
    if named is not None:
        return named
    return errors.ApiError(f"Proxmox VE error {status} from {tool} on {where}: {message}", status=status)


class Pvesh:
    """The API's paths through `pvesh` on a node (the entry node unless told otherwise): a cluster.Reader."""

    def __init__(self, runner: Runner, *, task_timeout: float, where: str = ENTRY, label: str = "") -> None:
        """`label`: how errors name the node pvesh runs on (the entry's host, when `where` is ENTRY)."""
        self.runner = runner
        self.task_timeout = task_timeout
        self.where = where
        self.label = label or (f"node {where}" if where else "the entry node")

    def _call(self, verb: str, segments: Sequence[object], params: Mapping[str, object], timeout: float) -> Any:
        argv = ["pvesh", verb, path(segments), *options(params), "--output-format=json"]
        done = self.runner.run(self.where, argv, timeout=timeout)
        if done.status != 0:
            found = failure("pvesh", self.label, done)
            node = str(segments[1]) if len(segments) > 1 and segments[0] == "nodes" else None
            if isinstance(found, errors.NodeOffline) and node:
                found = errors.NodeOffline(f"node '{node}' is offline or unreachable from {self.label} "
                                           f"({reason(done)})", node=node)
            raise found or errors.ApiError(f"pvesh {verb} {argv[2]} failed on {self.label}: "
                                           f"{reason(done) or f'exit {done.status}'}")
        if not done.stdout.strip():
            return None
        return last_json(done.stdout)

    def get(self, *segments: object, **params: Any) -> Any:
        return self._call("get", segments, params, READ_TIMEOUT)

    def task(self, verb: str, *segments: object, **params: Any) -> str:
        """A call that starts a task (create, set, delete): its UPID, once the task ended well; TaskFailed if not.

        pvesh exits 0 when the task failed (its error on stderr), so the task's own status decides."""
        answer = str(self._call(verb, segments, params, self.task_timeout))
        # Through pvesh's proxy to another node, the remote log and the quoted UPID come back as one string.
        found = _UPID.findall(answer)
        if not found:
            raise errors.ApiError(f"pvesh {verb} {path(segments)} answered no task id: {answer[-200:]!r}")
        tasks.wait(self, found[-1], timeout=self.task_timeout)
        return str(found[-1])
