"""`backend = auto`: the Proxmox API, or pct over SSH when the API cannot be reached.

Decided once, when the cluster is first needed, by one `GET /version`: a refused connection, a TLS
failure, a network error, a timeout or a proxy's 502-504 (ConnectError) means the API is down, and
pveoci says once on stderr that it uses pct over SSH instead. An answer of any kind, a refusal of
the credentials (401) included, means the API is there: an authorization error is not an outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pveoci import errors
from pveoci.backends.base import Backend, operations
from pveoci.models import Check

if TYPE_CHECKING:
    from pveoci.backends.pct import PctBackend

log = logging.getLogger("pveoci.backend")

#: What auto hands to the backend it chose, by name: every operation but those it writes itself.
OPERATIONS = frozenset(operations(Backend)) - {"checks", "close"}


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

    def __getattr__(self, name: str) -> Any:
        """Every operation of the protocols (backends.base) but checks and close: the chosen backend's."""
        if name not in OPERATIONS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.chosen, name)

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
