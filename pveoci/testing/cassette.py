"""The cassette: what a session asked of the Proxmox API and ran over SSH, as JSON a person can read and diff.

One interaction per entry, in the order they happened; keys sorted, two-space indent, one trailing
newline, so a re-recording that changed nothing changes no byte. Secrets are scrubbed and volatile
values replaced by stand-ins before a cassette is written (pveoci.testing.normalise).

    {"pveoci_cassette": 1,
     "auth": "token",                       # how the recording logged in: token or ticket
     "profile": {...},                      # the recording profile's settings that shape requests
     "http": [{"request": {"method", "path", "query", "body"},
               "response": {"status", "reason", "json" | "text"}}     # or "error": {"type", "message"}
              , ...],
     "ssh": [{"node", "run": argv, "stdin", "status", "stdout", "stderr"},
             {"node", "exec": argv, "vmid", "tty", "stdin", "status", "stdout", "stderr"},
             {"node", "directory", "upload": name, "via", ...},          # the template storage:
             {"node", "directory", "claim": n, "step", ...},             #   pveoci.testing.storage_tape
             {"node", "directory", "sweep": true, "removed"},
             {"node", "check": "ssh", "status", "detail"}, ...]}        # any of them: "error" instead
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
#: What an SSH entry answers with: everything else in it is what was asked, and must match on replay.
SSH_RESULT_KEYS = frozenset({"status", "stdout", "stderr", "error", "detail", "ours", "result", "landed", "removed"})
LOGIN_PATH = "/access/ticket"


class CassetteError(AssertionError):
    """A cassette cannot be read, or a replay went other ways than the recording (a failed test, not a crash)."""


@dataclass
class Cassette:
    auth: str = "token"
    profile: dict[str, Any] = field(default_factory=dict)
    http: list[dict[str, Any]] = field(default_factory=list)
    ssh: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pveoci_cassette": FORMAT, "auth": self.auth, "profile": self.profile, "http": self.http,
                "ssh": self.ssh}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def loads(cls, text: str, source: str = "cassette") -> Cassette:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CassetteError(f"{source} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("pveoci_cassette") != FORMAT:
            raise CassetteError(f"{source} is not a pveoci cassette of format {FORMAT}")
        return cls(auth=str(data.get("auth", "token")), profile=dict(data.get("profile") or {}),
                   http=list(data.get("http") or []), ssh=list(data.get("ssh") or []))

    @classmethod
    def load(cls, path: Path) -> Cassette:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CassetteError(f"cassette {path} does not exist: record it first "
                                "(pytest --pve-record PROFILE, see docs/testing.md)") from None
        return cls.loads(text, str(path))

    def save(self, path: Path) -> None:
        """Write atomically: a reader never sees half a cassette."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o644)  # a fixture like any other (mkstemp makes it 0600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.dumps())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def is_login(entry: dict[str, Any]) -> bool:
    request = entry.get("request") or {}
    return bool(request.get("method") == "POST" and request.get("path") == LOGIN_PATH)


def ssh_key(entry: dict[str, Any]) -> dict[str, Any]:
    """What an SSH entry asked (node, command or upload, input): the part a replay must match."""
    return {k: v for k, v in entry.items() if k not in SSH_RESULT_KEYS}


def encode_bytes(data: bytes | None) -> str | dict[str, str] | None:
    """Text as text (readable diffs); anything else as base64."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def decode_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return base64.b64decode(str(value.get("base64", "")))
    return str(value).encode("utf-8")
