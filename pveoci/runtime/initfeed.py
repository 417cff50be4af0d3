"""What a container's waiting init is given through `pct exec`, the one channel into a container the API lacks:
its process (PVE before 9.1, or a spec too long for the entrypoint option) and the files bind mounts put in it."""

from __future__ import annotations

from pveoci import errors
from pveoci.init import INIT_PATH
from pveoci.runtime.context import Context


def place_spec(ctx: Context, node: str, vmid: int, spec: bytes) -> None:
    """Give the waiting init its process (`init set-spec`, the spec as process.encode makes it)."""
    feed_init(ctx, node, vmid, "set-spec", spec, "give its process to")


def feed_init(ctx: Context, node: str, vmid: int, command: str, data: bytes, what: str) -> None:
    """`init COMMAND` in the container, with data on its stdin; PveociError ("cannot WHAT CT ...") if it fails."""
    done = ctx.backend.capture(node, vmid, [INIT_PATH, command], stdin=data)
    if done.status != 0:
        raise errors.PveociError(f"cannot {what} CT {vmid} on {node}: "
                                 f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")
