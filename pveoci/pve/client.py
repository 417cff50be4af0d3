"""PveClient: one Proxmox VE API connection, over proxmoxer, with typed errors and task waits.

The HTTP stack (requests, urllib3, proxmoxer: about a tenth of a second of imports) loads with the first
request: a command that asks the API nothing (an unchanged `template push`, `spec`) never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pveoci import errors
from pveoci.logs import register_secret

if TYPE_CHECKING:
    from proxmoxer import ProxmoxResource

    from pveoci.pve import tasks
    from pveoci.pve.transport import PveSession
    from pveoci.settings import Settings


def _segment(part: object) -> str:
    # A volid such as local:vztmpl/x.tar.zst is one path segment: its slash must not split it.
    return quote(str(part), safe=":@!")


class PveClient:
    """The low-level client: one method per HTTP verb over path segments, as proxmoxer's resources.

    `client.get("nodes", node, "storage", content="vztmpl")` -> GET /nodes/{node}/storage?content=vztmpl
    """

    def __init__(self, session: PveSession | Callable[[], PveSession], *, endpoint: str, task_timeout: float,
                 identity: str | None = None) -> None:
        """`session`: the HTTP session, or what makes it on the first request (then `identity` names who logs
        in: the token id or the user)."""
        self._make: Callable[[], PveSession] | None = None
        self._session: PveSession | None = None
        if callable(session):
            self._make = session
        else:
            self._session = session
            identity = str(session.auth.identity)
        self._identity = identity or ""
        self.endpoint = endpoint
        self.task_timeout = task_timeout
        self._resource: ProxmoxResource | None = None

    @property
    def session(self) -> PveSession:
        if self._session is None:
            assert self._make is not None
            self._session = self._make()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def _root(self) -> ProxmoxResource:
        if self._resource is None:
            from proxmoxer import ProxmoxResource
            from proxmoxer.backends.https import JsonSerializer

            session = self.session
            self._resource = ProxmoxResource(base_url=session.base_url, session=session,
                                             serializer=JsonSerializer())
        return self._resource

    @classmethod
    def from_settings(cls, settings: Settings) -> PveClient:
        profile = settings.profile
        if not profile.host:
            raise errors.ConfigError(
                f"no API host for profile '{profile.name}': set host in {settings.config_path}, "
                "PVEOCI_HOST or --host"
            )
        host = f"[{profile.host}]" if ":" in profile.host and not profile.host.startswith("[") else profile.host
        base_url = f"https://{host}:{profile.port}/api2/json"
        verify: bool | str
        if profile.fingerprint:
            verify = False  # the pinned fingerprint is the trust anchor
        elif profile.ca_file:
            ca = profile.ca_file.expanduser()
            if not ca.is_file():
                raise errors.ConfigError(f"ca_file {ca} does not exist")
            verify = str(ca)
        else:
            verify = profile.verify_tls
        timeout = (min(profile.timeout, 10.0), profile.timeout)
        # The secret is read (and kept out of every log) now: a missing or unsafe one fails before any work.
        secret = settings.secret("token_secret" if profile.token_id else "password")
        register_secret(secret)
        token_id, user, retries, fingerprint = profile.token_id, profile.user, profile.retries, profile.fingerprint

        def session() -> PveSession:
            from pveoci.pve.transport import PveSession, TicketAuth, TokenAuth

            auth: TokenAuth | TicketAuth
            if token_id:
                auth = TokenAuth(token_id, secret, verify=verify, timeout=timeout)
            else:
                auth = TicketAuth(user, secret, verify=verify, timeout=timeout)
            return PveSession(base_url, auth, retries=retries, fingerprint=fingerprint)

        return cls(session, endpoint=f"https://{host}:{profile.port}", task_timeout=profile.task_timeout,
                   identity=token_id or user)

    @property
    def identity(self) -> str:
        """Who the API sees: the token id or the user."""
        return self._identity

    # ------------------------------------------------------------------ calls

    def call(self, method: str, segments: tuple[object, ...], args: dict[str, Any]) -> Any:
        import requests
        from proxmoxer import ResourceException

        from pveoci.pve import translate

        path = "/" + "/".join(_segment(s) for s in segments)
        root = self._root()
        resource = root(path.lstrip("/")) if segments else root
        try:
            if method == "GET":
                return resource.get(**args)
            if method == "POST":
                return resource.post(**args)
            if method == "PUT":
                return resource.put(**args)
            return resource.delete(**args)
        except ResourceException as exc:
            raise translate.from_resource_exception(exc, method, path, self.identity) from None
        except requests.RequestException as exc:
            raise translate.from_requests_exception(exc, self.endpoint) from None

    def get(self, *segments: object, **params: Any) -> Any:
        return self.call("GET", segments, params)

    def post(self, *segments: object, **data: Any) -> Any:
        return self.call("POST", segments, data)

    def put(self, *segments: object, **data: Any) -> Any:
        return self.call("PUT", segments, data)

    def delete(self, *segments: object, **params: Any) -> Any:
        return self.call("DELETE", segments, params)

    # ------------------------------------------------------------------ tasks

    def wait(
        self, upid: str, *, timeout: float | None = None, on_log: Callable[[str], None] | None = None,
        expect: float = 0.0,
    ) -> tasks.TaskResult:
        """Wait for a task by its UPID on the UPID's node (see pveoci.pve.tasks.wait)."""
        from pveoci.pve import tasks

        return tasks.wait(self, upid, timeout=self.task_timeout if timeout is None else timeout, on_log=on_log,
                          expect=expect)

    # ------------------------------------------------------------ endpoints

    def version(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("version")
        return data

    def permissions(self) -> dict[str, dict[str, int]]:
        data: dict[str, dict[str, int]] = self.get("access", "permissions")
        return data

    def cluster_status(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get("cluster", "status")
        return data

    def nodes(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.get("nodes")
        return data

    def node_storages(self, node: str, content: str | None = None) -> list[dict[str, Any]]:
        params = {"content": content} if content else {}
        data: list[dict[str, Any]] = self.get("nodes", node, "storage", **params)
        return data
