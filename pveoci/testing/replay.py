"""The Proxmox API of a cassette, served with `responses`: every request must be a recorded one.

Method, path, query and body must equal a recorded request (after the replay's own volatile values
are mapped to the recording's stand-ins); recorded requests are handed out in order, each once.
Logins are answered here whatever the cassette holds, so a cassette recorded with a password
replays with a token, and the other way round.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pveoci.testing.cassette import Cassette, is_login
from pveoci.testing.http import error_from, request_of
from pveoci.testing.match import Tape
from pveoci.testing.normalise import LocalValues
from pveoci.testing.scrub import strings

if TYPE_CHECKING:
    import requests

METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS")
_REASON = "X-Pveoci-Cassette-Reason"  # carries PVE's reason phrase (its error message) to the response


def show_http(key: dict[str, Any]) -> str:
    query = "&".join(f"{k}={v}" for k, v in sorted(key.get("query", {}).items()))
    body = key.get("body")
    return f"{key.get('method')} {key.get('path')}{'?' + query if query else ''}" + (
        f" {json.dumps(body, sort_keys=True, ensure_ascii=False)}" if body is not None else "")


def _login_answer(asked: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    user = str((asked.get("body") or {}).get("username", "cassette@pam"))
    data = {"ticket": f"PVE:{user}:00000000::cassette", "CSRFPreventionToken": "00000000:cassette",
            "username": user, "cap": {}}
    return 200, {"Content-Type": "application/json"}, json.dumps({"data": data})


def _set_reason(response: requests.Response) -> requests.Response:
    reason = response.headers.pop(_REASON, None)
    if reason is not None:
        response.reason = reason
    return response


class HttpReplayer:
    """While started, every `requests` call in this process is answered from the cassette (or fails)."""

    def __init__(self, cassette: Cassette, name: str, local: LocalValues) -> None:
        self.local = local
        self.tape = Tape(name, "HTTP", cassette.http, key=lambda e: dict(e["request"]), show=show_http)
        for i, entry in enumerate(cassette.http):
            self.tape.used[i] = is_login(entry)  # logins are answered here: never matched, never missed
        self._mock: Any = None

    def start(self) -> None:
        import responses

        self._mock = responses.RequestsMock(assert_all_requests_are_fired=False, response_callback=_set_reason)
        for method in METHODS:
            self._mock.add_callback(method, re.compile(r".*"), callback=self._answer)
        self._mock.start()

    def stop(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock.reset()
            self._mock = None

    def _answer(self, request: requests.PreparedRequest) -> Any:
        asked = request_of(request)
        if is_login({"request": asked}):
            return _login_answer(asked)
        entry = self.tape.take(strings(asked, self.local.normalise))
        if "error" in entry:
            return error_from(entry["error"])
        answer = entry["response"]
        headers = {_REASON: str(answer.get("reason", ""))}
        if "json" in answer:
            headers["Content-Type"] = "application/json;charset=UTF-8"
            body = json.dumps(self.local.restore_answer(answer["json"]))
        else:
            body = self.local.restore(str(answer.get("text", "")))
        return int(answer["status"]), headers, body
