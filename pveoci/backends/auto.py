"""`backend = auto`: the Proxmox API, or pct over SSH when the API cannot be reached.

Decided once, when the cluster is first needed, by one `GET /version`: a refused connection, a TLS
failure, a network error, a timeout or a proxy's 502-504 (ConnectError) means the API is down, and
pveoci says once on stderr that it uses pct over SSH instead. An answer of any kind, a refusal of
the credentials (401) included, means the API is there: an authorization error is not an outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from pveoci import errors
from pveoci.backends.base import Backend, Claim, TemplateUpload
from pveoci.models import Check, Completed, Destination, Guest, MigrationCheck, Node, Template

if TYPE_CHECKING:
    from pveoci.backends.pct import PctBackend
    from pveoci.template.delta import Delta
    from pveoci.template.pack import Packed

log = logging.getLogger("pveoci.backend")


class AutoBackend:
    """A Backend that is the API backend, or the pct backend once the API proved unreachable."""

    name = "auto"

    def __init__(self, api: Callable[[], Backend], pct: Callable[[], PctBackend]) -> None:
        self._make_api, self._make_pct = api, pct
        self._chosen: Backend | None = None
        self._why: errors.ConnectError | None = None   # why the API was not used
        self._lock = threading.Lock()

    @property
    def chosen(self) -> Backend:
        """The backend in use, chosen at the first call."""
        with self._lock:
            if self._chosen is None:
                self._chosen = self._choose()
            return self._chosen

    def _choose(self) -> Backend:
        api = self._make_api()
        try:
            api.version()
        except errors.ConnectError as exc:  # TlsError too; not AuthError, PermissionDenied, NodeOffline
            api.close()
            self._why = exc
            log.warning("the Proxmox API cannot be reached (%s); using pct over SSH instead", exc.message)
            return self._make_pct()
        return api

    @property
    def fell_back(self) -> bool:
        return self.chosen.name != "api"

    # Everything else is the chosen backend's.
    def version(self) -> tuple[int, int]:
        return self.chosen.version()

    def nodes(self) -> list[Node]:
        return self.chosen.nodes()

    def overview(self) -> tuple[list[Node], list[Guest]]:
        return self.chosen.overview()

    def guests(self) -> list[Guest]:
        return self.chosen.guests()

    def status(self, node: str, vmid: int) -> Guest:
        return self.chosen.status(node, vmid)

    def config(self, node: str, vmid: int) -> dict[str, Any]:
        return self.chosen.config(node, vmid)

    def configs(self, guests: Iterable[Guest]) -> dict[int, dict[str, Any]]:
        return self.chosen.configs(guests)

    def statuses(self, guests: Iterable[Guest]) -> dict[int, Guest]:
        return self.chosen.statuses(guests)

    def next_vmid(self) -> int:
        return self.chosen.next_vmid()

    def node_machine(self, node: str) -> str:
        return self.chosen.node_machine(node)

    def privileged(self) -> bool:
        return self.chosen.privileged()

    def create(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.chosen.create(node, vmid, options)

    def set_options(self, node: str, vmid: int, options: dict[str, Any]) -> None:
        self.chosen.set_options(node, vmid, options)

    def start(self, node: str, vmid: int) -> None:
        self.chosen.start(node, vmid)

    def stop(self, node: str, vmid: int) -> None:
        self.chosen.stop(node, vmid)

    def shutdown(self, node: str, vmid: int, timeout: int) -> None:
        self.chosen.shutdown(node, vmid, timeout)

    def destroy(self, node: str, vmid: int) -> None:
        self.chosen.destroy(node, vmid)

    def migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                on_log: Callable[[str], None] | None = None) -> None:
        self.chosen.migrate(node, vmid, target, restart=restart, on_log=on_log)

    def migrate_check(self, node: str, vmid: int, target: str) -> MigrationCheck:
        return self.chosen.migrate_check(node, vmid, target)

    def exec(self, node: str, vmid: int, argv: list[str], *, stdin: IO[bytes] | None, stdout: IO[bytes] | None,
             stderr: IO[bytes] | None, tty: bool = False) -> int:
        return self.chosen.exec(node, vmid, argv, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)

    def capture(self, node: str, vmid: int, argv: list[str], *, stdin: bytes | None = None) -> Completed:
        return self.chosen.capture(node, vmid, argv, stdin=stdin)

    def signal(self, node: str, pid: int, signame: str, *, children: bool = False) -> None:
        self.chosen.signal(node, pid, signame, children=children)

    def read_file(self, node: str, vmid: int, path: str) -> bytes | None:
        return self.chosen.read_file(node, vmid, path)

    def reach(self, node: str) -> None:
        self.chosen.reach(node)

    def freeze(self, node: str, vmid: int) -> None:
        self.chosen.freeze(node, vmid)

    def thaw(self, node: str, vmid: int) -> None:
        self.chosen.thaw(node, vmid)

    def template_destination(self, node: str, storage: str) -> Destination:
        return self.chosen.template_destination(node, storage)

    def templates(self, dest: Destination) -> list[Template]:
        return self.chosen.templates(dest)

    def upload(self, packed: Packed, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> int:
        return self.chosen.upload(packed, dest, transport=transport, progress=progress)

    def begin_upload(self, dest: Destination, *, transport: str, progress: Callable[[int], None]) -> TemplateUpload:
        return self.chosen.begin_upload(dest, transport=transport, progress=progress)

    def upload_delta(self, packed: Packed, base: str, delta: Delta, dest: Destination, *,
                     progress: Callable[[int], None]) -> int:
        return self.chosen.upload_delta(packed, base, delta, dest, progress=progress)

    def claim_template(self, dest: Destination, key: str) -> Claim:
        return self.chosen.claim_template(dest, key)

    def sweep_templates(self, dest: Destination) -> list[str]:
        return self.chosen.sweep_templates(dest)

    def remove_template(self, dest: Destination, name: str) -> None:
        self.chosen.remove_template(dest, name)

    def checks(self) -> Iterator[Check]:
        """The API's checks, then the pct path's (what auto falls back to): a down API is a warning here."""
        from pveoci.backends.pct_checks import diagnose_pct

        chosen = self.chosen
        if self._why is not None:
            yield Check("api", "warn", f"{self._why.message}: auto uses pct over SSH instead")
            yield from chosen.checks()
            return
        yield from chosen.checks()
        fallback = self._make_pct()
        try:
            yield from diagnose_pct(fallback, with_cluster=False)
        finally:
            fallback.close()

    def close(self) -> None:
        with self._lock:
            if self._chosen is not None:
                self._chosen.close()
