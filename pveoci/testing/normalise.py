"""Volatile values replaced by stand-ins, so a re-recording changes nothing and a replay matches.

Made by the cluster (replaced when recording; a replay sends the stand-ins back as they are):
UPIDs (their pid and start time), process ids, times (uptime, ctime, starttime, ...), config digests,
generated MAC addresses and the API certificate's fingerprint. A value the cluster made is replaced
wherever it comes back: a UPID in a task's path, a container's pid in the `kill` sent over SSH.

Made by the workstation (replaced when recording, and in every request of a replay, which maps the
stand-ins in the answers back to its own values): the ownership marker's creation time, host name
and bundle paths (and the card that repeats them in the tags, pveoci.card), and the packed templates:
their names, checksums and sizes depend on the bytes packed (another busybox, a rebuilt init), not on
what pveoci asks, so a template is known by the order it was packed in.

Stand-ins are numbered in order of first appearance, so the same run gives the same cassette.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pveoci.testing.scrub import transform

_UPID = re.compile(r"UPID:([^:\s]+):([0-9A-Fa-f]{8,}):([0-9A-Fa-f]{8,}):([0-9A-Fa-f]{8,}):([^:\s]*:[^:\s]*:[^:\s]*:)")
_MAC = re.compile(r"\b((?:hw|mac)addr=)((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})\b")
TIME_KEYS = frozenset({"uptime", "ctime", "starttime", "endtime", "pstart", "time"})
#: Stand-in pids start above Linux's largest pid (2^22), so a stand-in is never taken for a real pid.
PID_BASE = 4194304
ZERO_FINGERPRINT = ":".join(["00"] * 32)

_MARKER = re.compile(r"<!-- pveoci (\{.*?\}) -->", re.S)
MARKER_FIELDS = {"created": "time", "host": "host", "bundle": "path", "rootfs": "path"}
STAND_INS = {
    "time": ("2000-01-01T00:00:00.{:09d}Z", re.compile(r"2000-01-01T00:00:00\.(\d{9})Z")),
    "host": ("workstation-{}", re.compile(r"workstation-(\d+)")),
    "path": ("/cassette/path-{}", re.compile(r"/cassette/path-(\d+)")),
}


class ClusterValues:
    """Stand-ins for what the cluster made (recording only)."""

    def __init__(self) -> None:
        self._upids: dict[str, str] = {}
        self._pids: dict[int, int] = {}
        self._macs: dict[str, str] = {}
        self._digests: dict[str, str] = {}

    def _upid(self, found: re.Match[str]) -> str:
        text = found.group(0)
        if int(found.group(3), 16) == 0 and int(found.group(4), 16) == 0:
            return text  # a stand-in already (or PVE's own placeholder)
        if text not in self._upids:
            self._upids[text] = f"UPID:{found.group(1)}:{len(self._upids) + 1:08X}:00000000:00000000:{found.group(5)}"
        return self._upids[text]

    def _mac(self, found: re.Match[str]) -> str:
        mac = found.group(2).upper()
        if mac not in self._macs:
            self._macs[mac] = "BC:24:11:00:" + ":".join(f"{len(self._macs) + 1:04X}"[i:i + 2] for i in (0, 2))
        return found.group(1) + self._macs[mac]

    def digest(self, digest: str) -> str:
        """A config's digest (PVE's lock for a PUT), numbered, as long as it was."""
        if digest not in self._digests:
            self._digests[digest] = f"{len(self._digests) + 1:0{len(digest)}x}"
        return self._digests[digest]

    def text(self, text: str) -> str:
        if text in self._digests:
            return self._digests[text]
        return _MAC.sub(self._mac, _UPID.sub(self._upid, text))

    def pid(self, pid: int) -> int:
        if pid not in self._pids:
            self._pids[pid] = PID_BASE + len(self._pids) + 1
        return self._pids[pid]

    def leaf(self, key: str | None, value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        if key in TIME_KEYS and isinstance(value, (int, float)):
            return 0
        if key == "pid" and isinstance(value, int) and value > 0:
            return self.pid(value)
        if key == "ssl_fingerprint" and isinstance(value, str):
            return ZERO_FINGERPRINT
        if key == "digest" and isinstance(value, str) and value:
            return self.digest(value)
        return self.text(value) if isinstance(value, str) else value

    def answer(self, value: Any) -> Any:
        return transform(value, self.leaf)

    def word(self, word: str) -> str:
        """One word of a command line: a pid the cluster reported becomes its stand-in."""
        if word.isdigit() and int(word) in self._pids:
            return str(self._pids[int(word)])
        return self.text(word)


@dataclass(frozen=True)
class PackedTemplate:
    name: str
    file_sha256: str
    size: int


def template_stand_in(number: int) -> PackedTemplate:
    return PackedTemplate(f"pveoci-{number:016x}.tar.zst", f"{number:064x}", 0)


class LocalValues:
    """Stand-ins for what the workstation made, both ways: to stand-ins in requests, back in answers.

    Recording, a new value gets the next number of its kind. Replaying (`sent` given: the stand-ins in
    the order the recording first sent them), a new value takes the next stand-in the recording sent,
    whatever the answers held before (another container's marker may name the same host or bundle).
    """

    def __init__(self, sent: dict[str, list[str]] | None = None) -> None:
        self._stand_in: dict[tuple[str, str], str] = {}
        self._actual: dict[str, str] = {}
        self._count: dict[str, int] = {}
        self._sent = {kind: list(values) for kind, values in (sent or {}).items()}
        self._lock = threading.Lock()  # a replay may be asked from several threads (exec's follower)
        self.templates: list[PackedTemplate] = []
        self._claims: dict[str, int] = {}

    def claim_number(self, key: str) -> int:
        """A template claim's stand-in: its key names the rootfs by a stat walk (times, inodes), so a claim is
        known by the order its key was first claimed in, as a template by the order it was packed in."""
        with self._lock:
            return self._claims.setdefault(key, len(self._claims) + 1)

    def add_template(self, name: str, file_sha256: str, size: int) -> None:
        """A template this session packed (the n-th packed is stand-in n, in a recording and in its replay)."""
        self.templates.append(PackedTemplate(name, file_sha256, size))

    def _next(self, kind: str) -> str:
        fmt = STAND_INS[kind][0]
        waiting = self._sent.get(kind)
        while waiting:
            candidate = waiting.pop(0)
            if candidate not in self._actual:
                return candidate
        self._count[kind] = self._count.get(kind, 0) + 1
        return fmt.format(self._count[kind]) if not self._sent else fmt.format(10**6 + self._count[kind])

    def _to_stand_in(self, kind: str, value: str) -> str:
        if STAND_INS[kind][1].fullmatch(value):
            return value
        with self._lock:
            if (kind, value) not in self._stand_in:
                stand_in = self._next(kind)
                self._stand_in[(kind, value)] = stand_in
                self._actual[stand_in] = value
            return self._stand_in[(kind, value)]

    def _to_actual(self, kind: str, value: str) -> str:
        return self._actual.get(value, value)

    def normalise(self, text: str) -> str:
        for number, t in enumerate(self.templates, 1):
            stand_in = template_stand_in(number)
            text = text.replace(t.name, stand_in.name)
            if t.file_sha256:  # a streamed pack has no whole-file hash ("")
                text = text.replace(t.file_sha256, stand_in.file_sha256)
        return _rewrite_cards(_rewrite_markers(text, self._to_stand_in), self._to_stand_in)

    def restore(self, text: str) -> str:
        text = _rewrite_cards(_rewrite_markers(text, self._to_actual), self._to_actual)
        for number, t in enumerate(self.templates, 1):
            stand_in = template_stand_in(number)
            text = text.replace(stand_in.name, t.name)
            if t.file_sha256:
                text = text.replace(stand_in.file_sha256, t.file_sha256)
        return text

    def restore_answer(self, value: Any) -> Any:
        """An answer with its stand-ins made this session's values again, sizes of packed templates included."""
        restored = transform(value, lambda _k, v: self.restore(v) if isinstance(v, str) else v)
        return self._sizes(restored, lambda t: t.size)

    def hide_sizes(self, value: Any) -> Any:
        """An answer with the sizes of packed templates as 0: they depend on the bytes packed, not on pveoci."""
        return self._sizes(value, lambda _t: 0)

    def _sizes(self, value: Any, size: Callable[[PackedTemplate], int]) -> Any:
        if isinstance(value, list):
            return [self._sizes(v, size) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: self._sizes(v, size) for k, v in value.items()}
        volid = out.get("volid")
        if isinstance(volid, str) and isinstance(out.get("size"), int):
            for number, t in enumerate(self.templates, 1):
                if volid.endswith(("/" + t.name, "/" + template_stand_in(number).name)):
                    out["size"] = size(t)
        return out


def sent_stand_ins(requests: list[Any]) -> dict[str, list[str]]:
    """The workstation's stand-ins in the order a recording first sent them (requests in cassette order)."""
    out: dict[str, list[str]] = {}

    def note(kind: str, value: str) -> str:
        if STAND_INS[kind][1].fullmatch(value) and value not in out.setdefault(kind, []):
            out[kind].append(value)
        return value

    for request in requests:
        transform(request, lambda _k, v: _rewrite_cards(_rewrite_markers(v, note), note) if isinstance(v, str) else v)
    return out


def _rewrite_markers(text: str, fn: Callable[[str, str], str]) -> str:
    """Each pveoci marker in text with its volatile fields passed through fn(kind, value)."""
    if "<!-- pveoci " not in text:
        return text

    def one(found: re.Match[str]) -> str:
        try:
            data = json.loads(found.group(1))
        except ValueError:
            return found.group(0)
        if not isinstance(data, dict):
            return found.group(0)
        for key, kind in MARKER_FIELDS.items():
            if isinstance(data.get(key), str) and data[key]:
                data[key] = fn(kind, data[key])
        # As pveoci.marker.render writes it, so the text around the values is unchanged.
        return "<!-- pveoci " + json.dumps(data, sort_keys=True, separators=(",", ":")) + " -->"

    return _MARKER.sub(one, text)


_CARD = re.compile(r"pveoci-card\+[a-z0-9_.+-]*")


def _rewrite_cards(text: str, fn: Callable[[str, str], str]) -> str:
    """Each card (pveoci.card) in text with the marker's volatile fields it repeats passed through fn(kind, value)."""
    if "pveoci-card+" not in text:
        return text
    from dataclasses import replace

    from pveoci import card

    def one(found: re.Match[str]) -> str:
        read = card.parse([found.group(0)])
        if read is None:
            return found.group(0)
        changed = replace(read, created=fn("time", read.created), bundle=fn("path", read.bundle),
                          rootfs=fn("path", read.rootfs))
        return card.tag(changed) or found.group(0)

    return _CARD.sub(one, text)
