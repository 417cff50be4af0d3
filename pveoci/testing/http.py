"""HTTP requests and answers as cassette entries, and the adapter that records them on pveoci's session.

A request is its method, its path below /api2/json, its query and its body (form fields as PVE gets
them; an upload's file part by its name only). Headers are never kept: they carry the token, the
ticket cookie and the CSRF token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter

API_ROOT = "/api2/json"


def _fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def _text(data: Any) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _multipart(content_type: str, body: Any) -> dict[str, Any]:
    """Form fields by name, a file by its name only (its bytes would be the template, or worse)."""
    from requests_toolbelt import MultipartDecoder, MultipartEncoder

    out: dict[str, Any] = {}
    if isinstance(body, MultipartEncoder):
        for name, value in dict(body.fields).items():
            out[name] = {"file": str(value[0])} if isinstance(value, tuple) else _text(value)
        return out
    data = body if isinstance(body, bytes) else _text(body).encode()
    for part in MultipartDecoder(data, content_type).parts:
        disposition = _text(part.headers.get(b"Content-Disposition", b""))
        params = dict(p.strip().split("=", 1) for p in disposition.split(";")[1:] if "=" in p)
        name = params.get("name", "").strip('"')
        if "filename" in params:
            out[name] = {"file": params["filename"].strip('"')}
        else:
            out[name] = part.text
    return out


def body_of(content_type: str, body: Any) -> Any:
    """A request body as the cassette keeps it: form fields, JSON, a multipart summary, or text."""
    if body is None or body in (b"", ""):
        return None
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return _fields(parse_qsl(_text(body), keep_blank_values=True))
    if kind == "multipart/form-data":
        return {"multipart": _multipart(content_type, body)}
    if kind == "application/json":
        try:
            return {"json": json.loads(_text(body))}
        except ValueError:
            pass
    return {"text": _text(body)}


def request_of(request: requests.PreparedRequest) -> dict[str, Any]:
    url = urlsplit(str(request.url))
    path = url.path[len(API_ROOT):] if url.path.startswith(API_ROOT + "/") else url.path
    return {"method": str(request.method).upper(), "path": path,
            "query": _fields(parse_qsl(url.query, keep_blank_values=True)),
            "body": body_of(str(request.headers.get("Content-Type") or ""), request.body)}


def response_of(response: requests.Response) -> dict[str, Any]:
    out: dict[str, Any] = {"status": response.status_code, "reason": response.reason or ""}
    try:
        out["json"] = response.json()
    except ValueError:
        out["text"] = response.text
    return out


def error_of(exc: requests.RequestException) -> dict[str, Any]:
    kind = ("SSLError" if isinstance(exc, requests.exceptions.SSLError) else
            "Timeout" if isinstance(exc, requests.Timeout) else
            "ConnectionError" if isinstance(exc, requests.ConnectionError) else "RequestException")
    return {"type": kind, "message": str(exc)}


def error_from(entry: dict[str, Any]) -> requests.RequestException:
    kinds: dict[str, type[requests.RequestException]] = {
        "SSLError": requests.exceptions.SSLError, "Timeout": requests.Timeout,
        "ConnectionError": requests.ConnectionError}
    return kinds.get(str(entry.get("type")), requests.RequestException)(str(entry.get("message", "")))


class RecordingAdapter(BaseAdapter):
    """Wraps the adapter a session had mounted and tells `record` about every exchange through it."""

    def __init__(self, inner: BaseAdapter, record: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.inner = inner
        self._record = record

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        asked = request_of(request)  # before sending: an upload's body is a stream read once
        try:
            response = self.inner.send(request, *args, **kwargs)
        except requests.RequestException as exc:
            self._record({"request": asked, "error": error_of(exc)})
            raise
        self._record({"request": asked, "response": response_of(response)})
        return response

    def close(self) -> None:
        self.inner.close()


def record_session(session: requests.Session, record: Callable[[dict[str, Any]], None]) -> None:
    """Record every request the session sends, whichever adapter (a fingerprint pin, say) carries it."""
    for prefix, adapter in list(session.adapters.items()):
        if not isinstance(adapter, RecordingAdapter):
            session.mount(prefix, RecordingAdapter(adapter, record))
