"""A node's template directory over SSH: what every upload, claim and sweep does there.

Everything goes to hidden names first (`.pveoci-...`, which Proxmox never lists: it lists only
`*.tar.<compression>`), is checked on the node, and is then linked into place under its
content-addressed name (`ln` fails if the name exists: one copy wins, atomically).
"""

from __future__ import annotations

import os
import secrets
import socket

from pveoci import errors
from pveoci.models import Completed, Destination
from pveoci.ssh import SshConnector
from pveoci.template import scripts
from pveoci.template.pack import Packed


def hidden_name(directory: str, what: str, suffix: str = "partial") -> str:
    """A name in directory no Proxmox listing shows, that says which host and process made it (for sweeping)."""
    return f"{directory}/.pveoci-{what}.{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.{suffix}"


class RemoteDir:
    """The template directory of one node, over the connector's shared connection to it."""

    def __init__(self, connector: SshConnector, dest: Destination) -> None:
        if dest.directory is None:
            raise errors.ConfigError(f"storage '{dest.storage}' has no directory pveoci can reach over SSH; "
                                     "use the API transport (--transport api)")
        self.connector = connector
        self.dest = dest
        self.directory = dest.directory
        self.sudo = connector.settings.sudo
        self.session = connector.session(dest.node)

    def close(self) -> None:
        """The connection is the connector's, shared (SshConnector.shared): nothing to close here."""

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float = 600) -> Completed:
        result = self.session.run(argv, stdin=stdin, timeout=timeout)
        return Completed(result.status, result.stdout, result.stderr)

    def must(self, argv: list[str], what: str, timeout: float = 600) -> Completed:
        done = self.run(argv, timeout=timeout)
        if done.status != 0:
            raise errors.SshError(f"cannot {what} on node '{self.dest.node}': "
                                  f"{done.stderr.decode(errors='replace').strip() or f'exit {done.status}'}")
        return done

    def hidden(self, what: str, suffix: str = "partial") -> str:
        return hidden_name(self.directory, what, suffix)

    def verify(self, path: str, packed: Packed) -> None:
        words = self.must(["sha256sum", "--", path], f"verify {packed.name}").stdout.split()
        if not words or words[0].decode() != packed.file_sha256:
            raise errors.SshError(f"upload of {packed.name} to node '{self.dest.node}' arrived damaged "
                                  "(sha256 differs); nothing was kept")

    def place(self, partial: str, name: str, size: int | None = None) -> bool:
        """Link partial into place as name and remove it, in one command (each is a round trip); False if name
        was there already (partial dropped). With `size`, a partial of another size is removed, not placed."""
        return self.place_claimed(partial, name, size, None)[0]

    def place_claimed(self, partial: str, name: str, size: int | None,
                      claim: tuple[str, str] | None) -> tuple[bool, bool]:
        """place(), and with `claim` (a claim's directory and its holder: node_claim.py) the name recorded in it
        as its result in the same command: (placed, recorded)."""
        final = f"{self.directory}/{name}"
        done = self.run(["sh", "-c", scripts.PLACE, "sh", partial, final, "" if size is None else str(size),
                         *(claim or ("",))])
        said = done.stdout.decode(errors="replace").strip() or done.stderr.decode(errors="replace").strip()
        if done.status in (0, 5, 7, 8):
            return done.status in (0, 7), claim is not None and done.status in (0, 5)
        if done.status == 4:
            raise errors.SshError(f"upload of {name} to node '{self.dest.node}' arrived incomplete "
                                  f"({said} of {size} bytes); nothing was kept")
        raise errors.SshError(f"cannot move {name} into place on node '{self.dest.node}': {said or done.status}")


def host_tag() -> str:
    """This machine, as hidden names carry it (its name may hold dots and dashes)."""
    import hashlib

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
