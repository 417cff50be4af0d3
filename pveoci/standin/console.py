"""runc's console socket: the pty of a process with a terminal, whose master goes to the engine.

runc connects to the `--console-socket` (a listening unix socket of the engine's: conmon's, containerd's shim's),
sends the pty's master in one message (the bytes `/dev/ptmx`, the descriptor by SCM_RIGHTS) and closes; the
engine keeps the master. The slave is the stand-in's: its streams and controlling terminal, relayed to a
terminal on the node.
"""

from __future__ import annotations

import array
import os
import socket

from pveoci import errors


def open_console(path: str) -> int:
    """A new pty whose master has been sent to the console socket at `path`; its slave (the caller's to
    close)."""
    master, slave = os.openpty()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(path)
            sock.sendmsg([b"/dev/ptmx"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))])
    except OSError as exc:
        os.close(slave)
        raise errors.PveociError(f"--console-socket {path}: {exc.strerror or exc}") from None
    finally:
        os.close(master)
    return slave
