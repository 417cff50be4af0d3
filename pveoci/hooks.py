"""OCI hooks that run in the runtime's namespace, which for pveoci is this machine: prestart, createRuntime,
poststart and poststop. Each gets the container's state JSON on stdin (runtime.md)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from typing import Any

from pveoci import errors

log = logging.getLogger("pveoci.hooks")

# Hooks whose failure fails the operation; the others only warn (runtime.md).
FATAL = ("prestart", "createRuntime")


def run(phase: str, hooks: dict[str, Any], state: dict[str, Any]) -> None:
    """Run the hooks of one phase in order; a failing prestart/createRuntime hook raises, others log."""
    payload = json.dumps(state).encode()
    for i, hook in enumerate(hooks.get(phase) or []):
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env") or [])
        try:
            result = subprocess.run(args, executable=path, input=payload, env=env or {"PATH": os.defpath},
                                    capture_output=True, timeout=hook.get("timeout"), check=False)
            problem = None if result.returncode == 0 else (
                f"exited with {result.returncode}: {result.stderr.decode(errors='replace').strip()[:200]}")
        except subprocess.TimeoutExpired:
            problem = f"timed out after {hook.get('timeout')} s"
        except OSError as exc:
            problem = exc.strerror or str(exc)
        if problem is None:
            continue
        message = f"hooks.{phase}[{i}] ({path}) {problem}"
        if phase in FATAL:
            raise errors.HookFailed(message)
        log.warning("%s", message)


def from_spec(spec_hooks: Any) -> dict[str, Any]:
    """The hooks pveoci runs, as plain JSON (for the cache), from the spec's Hooks model."""
    if spec_hooks is None:
        return {}
    data = spec_hooks.model_dump(by_alias=True, exclude_none=True)
    return {k: v for k, v in data.items() if k in ("prestart", "createRuntime", "poststart", "poststop")}
