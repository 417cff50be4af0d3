"""The HTTP session under proxmoxer: TLS trust, auth, retries of reads, one re-login on 401.

proxmoxer builds URLs and decodes answers; this session decides how a request
travels. Reads (GET) are retried with backoff on connection errors and on
502/503/504/595/596; writes are never retried blindly, except after a 401
(the server did nothing) with a fresh ticket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from proxmoxer.backends.https import ProxmoxHTTPAuthBase, ProxmoxHttpSession
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar

from pveoci import retry

log = logging.getLogger("pveoci.pve")

RETRY_STATUSES = frozenset({502, 503, 504, 595, 596})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class FingerprintAdapter(HTTPAdapter):
    """Trusts exactly one certificate, by its SHA-256 fingerprint (as PVE shows a node's `ssl_fingerprint`)."""

    def __init__(self, fingerprint: str, **kwargs: Any) -> None:
        self._fingerprint = fingerprint.replace(":", "").lower()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)


class TokenAuth(ProxmoxHTTPAuthBase):  # type: ignore[misc]
    """`Authorization: PVEAPIToken=user@realm!name=secret` on every request."""

    def __init__(self, token_id: str, secret: str, *, verify: bool | str, timeout: Any) -> None:
        super().__init__(timeout=timeout, verify_ssl=verify)
        self._header = f"PVEAPIToken={token_id}={secret}"
        self.identity = token_id

    def __call__(self, req: requests.PreparedRequest) -> requests.PreparedRequest:
        req.headers["Authorization"] = self._header
        return req

    def __repr__(self) -> str:
        return f"TokenAuth({self.identity!r})"


class TicketAuth(ProxmoxHTTPAuthBase):  # type: ignore[misc]
    """A login ticket (cookie) plus the CSRF token for writes; `login()` gets a new pair."""

    def __init__(self, user: str, password: str, *, verify: bool | str, timeout: Any) -> None:
        super().__init__(timeout=timeout, verify_ssl=verify)
        self.identity = user
        self._password = password
        self._ticket = ""
        self._csrf = ""
        self.login_count = 0

    def set_ticket(self, ticket: str, csrf: str) -> None:
        self._ticket, self._csrf = ticket, csrf
        self.login_count += 1

    @property
    def password(self) -> str:
        return self._password

    @property
    def has_ticket(self) -> bool:
        return bool(self._ticket)

    def get_cookies(self) -> RequestsCookieJar:
        jar = RequestsCookieJar()
        jar.set("PVEAuthCookie", self._ticket)
        return jar

    def __call__(self, req: requests.PreparedRequest) -> requests.PreparedRequest:
        if req.method != "GET":
            req.headers["CSRFPreventionToken"] = self._csrf
        return req

    def __repr__(self) -> str:
        return f"TicketAuth({self.identity!r})"


def _no_auth(req: requests.PreparedRequest) -> requests.PreparedRequest:
    return req


class PveSession(ProxmoxHttpSession):  # type: ignore[misc]
    """proxmoxer's session with retries, one transparent re-login and request logging."""

    def __init__(
        self,
        base_url: str,
        auth: TokenAuth | TicketAuth,
        *,
        retries: int,
        fingerprint: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.base_url = base_url
        self.auth = auth
        self.retries = retries
        self._sleep = sleep
        self.headers["Accept"] = "application/json"
        if fingerprint:
            self.mount("https://", FingerprintAdapter(fingerprint))

    def login(self) -> None:
        """Get a new ticket with the password; a login is safe to repeat, so it is retried like a read."""
        auth = self.auth
        assert isinstance(auth, TicketAuth)
        url = self.base_url + "/access/ticket"
        for attempt in retry.attempts(self.retries + 1, retry.NETWORK, sleep=self._sleep):
            last = attempt == self.retries
            try:
                resp = requests.Session.request(
                    self, "POST", url, data={"username": auth.identity, "password": auth.password},
                    auth=_no_auth, cookies={}, timeout=auth.timeout, verify=auth.verify_ssl,
                )
            except requests.exceptions.SSLError:
                raise
            except (requests.ConnectionError, requests.Timeout):
                if last:
                    raise
                continue
            if resp.status_code in RETRY_STATUSES and not last:
                continue
            break
        log.debug("POST /access/ticket -> %s", resp.status_code)
        if resp.status_code != 200:
            # The caller turns this into AuthError; the body never carries the password.
            resp.raise_for_status()
        data = resp.json()["data"]
        if data.get("NeedTFA"):
            raise requests.HTTPError("the account needs a second factor (TFA); use an API token instead",
                                     response=resp)
        auth.set_ticket(data["ticket"], data["CSRFPreventionToken"])

    def request(
        self, method: str, url: str, params: Any = None, data: Any = None, **kwargs: Any
    ) -> requests.Response:
        method = method.upper()
        auth = self.auth
        if isinstance(auth, TicketAuth) and not auth.has_ticket:
            self.login()
        relogged = False
        attempt = 0
        delays = retry.NETWORK.delays()
        while True:
            started = time.monotonic()
            try:
                resp: requests.Response = super().request(method, url, params=params, data=data, **kwargs)
            except requests.exceptions.SSLError as exc:
                log.debug("%s %s: TLS failed: %s", method, self._path(url), exc)
                raise
            except (requests.ConnectionError, requests.Timeout) as exc:
                if method in SAFE_METHODS and attempt < self.retries:
                    log.debug("%s %s failed (%s); retry %d", method, self._path(url), type(exc).__name__,
                              attempt + 1)
                    self._sleep(next(delays))
                    attempt += 1
                    continue
                raise
            log.debug("%s %s -> %s (%.0f ms)", method, self._path(url), resp.status_code,
                      (time.monotonic() - started) * 1000)
            if resp.status_code == 401 and isinstance(auth, TicketAuth) and not relogged:
                log.debug("login ticket refused; logging in again")
                self.login()
                relogged = True
                continue
            if resp.status_code in RETRY_STATUSES and method in SAFE_METHODS and attempt < self.retries:
                self._sleep(next(delays))
                attempt += 1
                continue
            return resp

    def _path(self, url: str) -> str:
        return url[len(self.base_url):] if url.startswith(self.base_url) else url
