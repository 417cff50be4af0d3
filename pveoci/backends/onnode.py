"""What runs on a node: programs in a container (`pct exec`), signals to a container's init, freezing.

Shared by every backend, over a Runner (backends.runner): SSH (pveoci.ssh: paramiko or OpenSSH) for the
API backend, SSH or this machine for the pct backend. Every program is argv, never a shell string built from
user data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from pveoci import errors
from pveoci.backends import swapscript
from pveoci.backends.runner import Runner
from pveoci.backends.sshrunner import SshRunner
from pveoci.models import Completed, UnpackedImage

# `sh -c` program (arguments: vmid, path) run on the node to read a file of a stopped container: pct pull
# needs a running one. Exit 3: no such file.
_READ_FILE = r"""
where=$(pct mount "$1" | sed -n "s/^mounted CT [0-9]* in '\(.*\)'$/\1/p") || exit 1
[ -n "$where" ] || { echo "pct mount $1 did not say where it mounted the container" >&2; exit 1; }
if [ -f "$where$2" ]; then cat -- "$where$2"; status=$?; else status=3; fi
pct unmount "$1" || status=1
exit $status
"""

# `sh -c` program (arguments: vmid, offset) for a stand-in whose follower ended without the process's status:
# one line saying where the container is (`running`, `missing`, `stopped STATUS`, `stopped -` when it was
# stopped from outside, `error WHY`), then, when stopped, its log from that byte offset on. Always exit 0:
# ssh's own 255 then means the node could not be reached.
_LOG_AFTER = r"""
if ! st=$(pct status "$1" 2>&1); then
  case $st in *"does not exist"*) echo missing ;; *) printf 'error %s\n' "$(printf %s "$st" | head -n 1)" ;; esac
  exit 0
fi
case $st in *running*) echo running; exit 0 ;; esac
where=$(pct mount "$1" 2>&1 | sed -n "s/^mounted CT [0-9]* in '\(.*\)'$/\1/p")
[ -n "$where" ] || { echo "error pct mount $1 failed"; exit 0; }
run="$where/.pveoci/run"
if [ -f "$run/status" ]; then printf 'stopped %s\n' "$(cat "$run/status")"; else echo "stopped -"; fi
if [ -f "$run/log" ]; then tail -c +"$(($2 + 1))" "$run/log"; fi
pct unmount "$1" >/dev/null 2>&1
exit 0
"""


class NodeCommands:
    """The OnNode protocol (pveoci.backends.base) over a runner: SSH to the node (backends.sshrunner), or this
    machine when pveoci runs on the node (backends.runner.LocalRunner)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def exec(self, node: str, vmid: int, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
             stderr: IO[bytes] | None, tty: bool = False) -> int:
        """`pct exec VMID -- ARGV` on the node, with these streams; the program's exit status."""
        return self.runner.stream(node, ["pct", "exec", str(vmid), "--", *argv], stdin=stdin, stdout=stdout,
                                  stderr=stderr, tty=tty)

    def capture(self, node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> Completed:
        """`pct exec VMID -- ARGV` with its output collected."""
        return self.on_node(node, ["pct", "exec", str(vmid), "--", *argv], stdin=stdin, timeout=120)

    def exec_command(self, node: str, vmid: int, argv: list[str], *, tty: bool = False) -> list[str] | None:
        return self.runner.command(node, ["pct", "exec", str(vmid), "--", *argv], tty=tty)

    def log_after_command(self, node: str, vmid: int, offset: str) -> list[str] | None:
        return self.runner.command(node, ["sh", "-c", _LOG_AFTER, "sh", str(vmid), offset])

    def on_node(self, node: str, argv: list[str], *, stdin: bytes | None = None, timeout: float = 60) -> Completed:
        """argv on the node itself (with sudo when the profile says so)."""
        return self.runner.run(node, argv, stdin=stdin, timeout=timeout)

    def _must(self, node: str, argv: list[str], what: str) -> None:
        result = self.on_node(node, argv)
        if result.status != 0:
            raise errors.PveociError(f"cannot {what} on {node}: {result.stderr.decode(errors='replace').strip()}")

    def signal(self, node: str, pid: int, signame: str, *, children: bool = False) -> None:
        name = signame.removeprefix("SIG")
        if children:
            result = self.on_node(node, ["pkill", f"-{name}", "-P", str(pid)])
            if result.status not in (0, 1):  # 1: no child (it has just ended)
                raise errors.PveociError(f"cannot send {signame} to the process of the container's init "
                                         f"(pid {pid}) on {node}: {result.stderr.decode(errors='replace').strip()}")
            return
        self._must(node, ["kill", "-s", name, str(pid)], f"send {signame} to the container's init (pid {pid})")

    def reach(self, node: str) -> None:
        """Over SSH: log in now (the connector keeps the connection for the command to come)."""
        if isinstance(self.runner, SshRunner):
            self.runner.session(node)

    def read_file(self, node: str, vmid: int, path: str) -> bytes | None:
        """A file of a stopped container's root filesystem (`pct mount`, read, `pct unmount`)."""
        result = self.on_node(node, ["sh", "-c", _READ_FILE, "sh", str(vmid), path], timeout=120)
        if result.status == 3:
            return None
        if result.status != 0:
            raise errors.PveociError(f"cannot read {path} of CT {vmid} on {node}: "
                                     f"{result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def swap_rootfs(self, node: str, vmid: int, action: str, *, pid: int = 0, template: str = "",
                    owner: str = "0:0", userns: Sequence[str] = (), keep: Sequence[str] = (),
                    need: int = 0) -> tuple[str, str]:
        """One step of an image update on the container's root filesystem (backends.swapscript): `swap` to the
        template (a path on the node), `back`, `commit`, `check` or `state`. The update's state after it (`none`,
        `extract`, `out`, `in`, `swapped`) and the name of the template it swaps to. `pid`: the running init's,
        else the container is stopped and `pct mount`ed. Locked (with the state and name in its `detail`) for a
        `swap` over an update that did not finish."""
        argv = ["sh", "-c", swapscript.SCRIPT, "sh", action, str(vmid), str(pid), template, owner, " ".join(userns),
                "\n".join(keep), str(need)]
        result = self.on_node(node, argv, timeout=3600)
        said = result.stdout.decode(errors="replace").strip().splitlines()
        word, _, rest = (said[-1] if said else "").partition(" ")
        state, _, name = rest.partition(" ")
        if result.status == 0 and word == "ok":
            return state, name
        if result.status == 4 and word == "busy":
            raise errors.Locked(f"CT {vmid} on {node} has an image update that did not finish ({state})",
                                detail=f"{state} {name}")
        why = rest if word == "error" else (result.stderr.decode(errors="replace").strip() or f"exit {result.status}")
        raise errors.PveociError(f"cannot {action} the root filesystem of CT {vmid} on {node}: {why}")

    def describe_image(self, node: str, vmid: int, *, archive: str = "", digest: str = "", owner: str = "0:0",
                       userns: Sequence[str] = (), into: str = "", like: str = "",
                       init: bytes = b"") -> UnpackedImage:
        """Run backends.imagescript on the node; its sections read back. The template is packed under a hidden
        name that says which host and process made it (what the sweep of killed uploads goes by)."""
        from pveoci.backends import imagescript
        from pveoci.template.node_dir import hidden_name
        from pveoci.template.pack import DIGEST_CHARS

        partial = hidden_name(into, "node") if into else ""
        argv = ["sh", "-c", imagescript.SCRIPT, "sh", str(vmid), owner, " ".join(userns), partial, like,
                str(DIGEST_CHARS), archive, digest]
        result = self.on_node(node, argv, stdin=init if partial else None, timeout=3600)
        return imagescript.parse(result.status, result.stdout, result.stderr, f"CT {vmid} on {node}")

    def machine(self, node: str) -> str:
        result = self.on_node(node, ["uname", "-m"])
        if result.status != 0:
            raise errors.PveociError(f"cannot ask node {node} for its machine: {result.stderr.decode().strip()}")
        return result.stdout.decode().strip()

    # PVE's suspend is a CRIU checkpoint to disk, not runc's pause: freeze the cgroup instead, as LXC does.
    def freeze(self, node: str, vmid: int) -> None:
        self._must(node, ["lxc-freeze", "-n", str(vmid)], f"freeze CT {vmid}")

    def thaw(self, node: str, vmid: int) -> None:
        self._must(node, ["lxc-unfreeze", "-n", str(vmid)], f"thaw CT {vmid}")

