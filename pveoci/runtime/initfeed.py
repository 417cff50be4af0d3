"""What a container's waiting init is given through `pct exec`, the one channel into a container the API lacks:
its process (PVE before 9.1, or a spec too long for the entrypoint option) and the files bind mounts put in it."""

from __future__ import annotations

from pveoci import errors
from pveoci.init import INIT_PATH
from pveoci.process import ProcessSpec, encode_arg
from pveoci.runtime.context import Context

ENTRYPOINT_MAX = 32 * 1024   # a longer spec is placed with `init set-spec` instead of riding on the entrypoint


def entrypoint(process: ProcessSpec, legacy_init: bool) -> str | None:
    """The container's `entrypoint` option for this process: PVE >= 9.1, the init with the spec on its command
    line, or the init alone when the spec is too long for a config line; None before 9.1 (no such option).
    Without the spec on it, the spec is placed after the start (spec_after_start)."""
    if legacy_init:
        return None
    spec_arg = encode_arg(process)
    return f"{INIT_PATH} --spec={spec_arg}" if len(spec_arg) <= ENTRYPOINT_MAX else INIT_PATH


def spec_after_start(entry: str | None) -> bool:
    """True when the init gets its spec through `init set-spec` once the container runs (see entrypoint)."""
    return entry is None or entry == INIT_PATH


def place_spec(ctx: Context, node: str, vmid: int, spec: bytes) -> None:
    """Give the waiting init its process (`init set-spec`, the spec as process.encode makes it)."""
    feed_init(ctx, node, vmid, "set-spec", spec, "give its process to")


def feed_init(ctx: Context, node: str, vmid: int, command: str, data: bytes, what: str) -> None:
    """`init COMMAND` in the container, with data on its stdin; PveociError ("cannot WHAT CT ...") if it fails."""
    done = ctx.backend.capture(node, vmid, [INIT_PATH, command], stdin=data)
    if done.status != 0:
        raise errors.PveociError(f"cannot {what} CT {vmid} on {node}: "
                                 f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")
