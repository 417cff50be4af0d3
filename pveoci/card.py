"""A container's card: what `list` shows of it, in one tag, so any workstation lists the cluster from
/cluster/resources (one request, tags included) instead of reading every container's description.

The ownership marker in the description stays the record (pveoci.marker); the card repeats what a
cache record needs of it (id, bundle, created, template, rootfs, stop signal, annotations, marker
version), written once by create, as nothing of it changes afterwards. A card that does not fit
(CARD_MAX: a long id or many annotations), or a container made before cards, is read from its
description instead.

Tags allow only `[a-z0-9_+.-]` (PVE lower-cases them): the fields are joined by `+`, and each is
kept as it is where it is made of `[a-z0-9.-]`, every other byte of its UTF-8 written `_xx` (hex).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

PREFIX = "pveoci-card+"
CARD_MAX = 400          # characters of the whole tag; a longer card is not written
SEP = "+"
_PLAIN = re.compile(r"[a-z0-9.-]")
_CREATED = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z", re.ASCII)
DEFAULT_STOP = "SIGTERM"


@dataclass(frozen=True)
class Card:
    id: str
    bundle: str
    created: str
    template: str
    rootfs: str
    version: int
    stop_signal: str = DEFAULT_STOP
    annotations: dict[str, str] = field(default_factory=dict)


def escape(text: str) -> str:
    return "".join(ch if _PLAIN.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode()) for ch in text)


def unescape(text: str) -> str:
    """ValueError for anything escape() does not make."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "_":
            pair = text[i + 1:i + 3]
            if len(pair) != 2 or not _PLAIN.fullmatch(pair[0]) or not _PLAIN.fullmatch(pair[1]):
                raise ValueError("short escape")
            out.append(int(pair, 16))
            i += 3
        elif _PLAIN.fullmatch(ch):
            out += ch.encode()
            i += 1
        else:
            raise ValueError(f"{ch!r} in a card")
    return out.decode()


def _created(value: str) -> str:
    """RFC 3339 as pveoci writes it (rfc3339_now), as its digits; anything else escaped (it has a `-`)."""
    found = _CREATED.fullmatch(value)
    return "".join(found.groups()) if found else escape(value)


def _created_back(value: str) -> str:
    if len(value) == 23 and value.isascii() and value.isdigit():
        d = value
        return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}.{d[14:23]}Z"
    return unescape(value)


def _default_rootfs(bundle: str) -> str:
    return os.path.join(bundle, "rootfs")


def tag(card: Card) -> str | None:
    """The card as a tag; None when it would be longer than CARD_MAX."""
    fields = [str(card.version), escape(card.id), escape(card.bundle), _created(card.created), escape(card.template),
              "" if card.rootfs == _default_rootfs(card.bundle) else escape(card.rootfs),
              "" if card.stop_signal == DEFAULT_STOP else escape(card.stop_signal.lower()),
              escape(json.dumps(card.annotations, sort_keys=True, separators=(",", ":"))) if card.annotations else ""]
    text = PREFIX + SEP.join(fields)
    return text if len(text) <= CARD_MAX else None


def parse(tags: tuple[str, ...] | list[str]) -> Card | None:
    """The card among a container's tags; None if it has none (or one that does not read as a card)."""
    for one in tags:
        if one.startswith(PREFIX):
            try:
                return _parse(one[len(PREFIX):])
            except (ValueError, TypeError, IndexError, UnicodeDecodeError):
                return None
    return None


def _parse(text: str) -> Card:
    fields = text.split(SEP)
    if len(fields) != 8:
        raise ValueError("not 8 fields")
    version, cid, bundle, created, template, rootfs, stop, annotations = fields
    bundle = unescape(bundle)
    notes = json.loads(unescape(annotations)) if annotations else {}
    if not isinstance(notes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in notes.items()):
        raise ValueError("annotations")
    return Card(id=unescape(cid), bundle=bundle, created=_created_back(created), template=unescape(template),
                rootfs=unescape(rootfs) if rootfs else _default_rootfs(bundle), version=int(version),
                stop_signal=unescape(stop).upper() if stop else DEFAULT_STOP, annotations=notes)


def for_description(description: str) -> set[str]:
    """The card tag of a container with this description (the marker as written, so the card says what a read
    of the description would); none when the card is too long."""
    from pveoci import marker

    found = marker.parse(description)
    if found is None:
        return set()
    made = tag(Card(id=found.id, bundle=found.bundle, created=found.created, template=found.template,
                    rootfs=found.rootfs, version=found.version, stop_signal=found.stop_signal,
                    annotations=dict(found.annotations)))
    return {made} if made else set()
