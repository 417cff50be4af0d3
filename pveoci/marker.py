"""The ownership marker: how a container on the cluster says it is pveoci's, and which OCI container it is.

Every container pveoci makes carries the tag `pveoci` and, in its description (PVE's notes,
markdown), a line for people and a machine-readable block in an HTML comment, so any
workstation can find a container by its OCI id with an empty cache.

The block is JSON in pure ASCII with '<', '>' and '&' written as \\u escapes, so no value (an
annotation of `} -->`, a path with a newline, any Unicode) can close the comment early or make
the text around it mean anything else; it is still plain JSON, which pveoci 0.2 reads as it did.
Blocks 0.2 wrote, unescaped, are read as one JSON value from the opening `{`, so an annotation
of theirs that holds `} -->` is read too. A description with a block that cannot be read is
errors.MarkerUnreadable, never "not pveoci's".
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from pveoci import errors

TAG = "pveoci"
OPENING = "<!-- pveoci "
CLOSING = " -->"
HEADER = "Managed by pveoci (OCI container `{id}`). Edit it with pveoci, not here."
DESCRIPTION_MAX = 8192
# What an HTML comment or markdown could take for syntax, as JSON escapes (JSON's own escapes do the rest).
_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "`": "\\u0060"}
_UNSAFE_RE = re.compile("[" + re.escape("".join(_UNSAFE)) + "]")


@dataclass(frozen=True)
class Marker:
    id: str
    bundle: str
    template: str
    spec_digest: str
    created: str                   # RFC 3339
    host: str                      # the machine that created it
    annotations: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    # 1: made by pveoci 0.1 (the process in the template, `created` is a stopped CT); 2: pveoci's init
    # runs as PID 1 and waits for `start`, the process travels with the container (docs/init.md).
    version: int = 2
    rootfs: str = ""               # absolute path of the bundle's rootfs (state's `rootfs`)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _json(value: object) -> str:
    """Compact JSON in printable ASCII without '<', '>', '&' or '`': safe in an HTML comment and in markdown."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _UNSAFE_RE.sub(lambda m: _UNSAFE[m.group(0)], text)


def render(marker: Marker) -> str:
    """The description text: a sentence for people, the JSON block for machines (at most 8192 characters).

    Annotations are the only unbounded part: they are dropped (with `pveoci.truncated`) rather than fail the
    create. Paths too long to fit even then are a BundleError (`check_fits` says so before anything is made).
    """
    text = _text(marker)
    if len(text) > DESCRIPTION_MAX:
        text = _text(Marker(**{**marker.to_json(), "annotations": {"pveoci.truncated": "true"}}))
    if len(text) > DESCRIPTION_MAX:
        raise errors.BundleError(f"the bundle's paths are too long for the container's ownership marker "
                                 f"(Proxmox keeps {DESCRIPTION_MAX} characters of notes): use a shorter bundle path")
    return text


def _text(marker: Marker) -> str:
    shown_id = _json(marker.id)[1:-1]   # an OCI id is shown as it is; anything else cannot open a comment
    return HEADER.format(id=shown_id) + "\n\n" + OPENING + _json(marker.to_json()) + CLOSING + "\n"


# The longest template volume, host name, time and digest a create writes: what `check_fits` leaves room for.
_ROOM = Marker(id="", bundle="", template="x" * 300, spec_digest="sha256:" + "0" * 64,
               created="2000-01-01T00:00:00.000000000Z", host="h" * 255, annotations={"pveoci.truncated": "true"},
               stop_signal="SIGRTMAX-14")


def check_fits(cid: str, bundle: str, rootfs: str) -> None:
    """A BundleError now, before anything is made, if this id and these paths cannot fit in a marker."""
    render(Marker(**{**_ROOM.to_json(), "id": cid, "bundle": bundle, "rootfs": rootfs}))


def parse(description: str | None) -> Marker | None:
    """The marker in a description; None when it has no pveoci block (not, or no longer, pveoci's).

    MarkerUnreadable when it has one that cannot be read: a block is never taken for "not pveoci's"."""
    start = (description or "").find(OPENING)
    if description is None or start < 0:
        return None
    at = start + len(OPENING)
    try:
        data, end = json.JSONDecoder().raw_decode(description, at)
    except json.JSONDecodeError as exc:
        raise _unreadable(f"its JSON is not valid ({exc.msg} at character {exc.pos - at})") from None
    except (ValueError, RecursionError):  # e.g. nested deeper than the decoder goes
        raise _unreadable("its JSON is not valid") from None
    if not description.startswith(CLOSING, end):
        raise _unreadable("its block does not end where its JSON does")
    return _marker(data)


def _unreadable(reason: str) -> errors.MarkerUnreadable:
    return errors.MarkerUnreadable(f"the ownership marker cannot be read: {reason}", reason=reason)


_TEXT_FIELDS = ("id", "bundle", "template", "spec_digest", "created", "host", "stop_signal", "rootfs")


def _marker(data: object) -> Marker:
    """The Marker of a block's JSON; keys a later pveoci adds are ignored, a wrong or missing one is unreadable."""
    if not isinstance(data, dict):
        raise _unreadable("its block is not a JSON object")
    missing = [name for name in ("id", "bundle", "template", "spec_digest", "created", "host") if name not in data]
    if missing:
        raise _unreadable(f"its block lacks {', '.join(missing)}")
    wrong = [name for name in _TEXT_FIELDS if name in data and not isinstance(data[name], str)]
    annotations = data.get("annotations", {})
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        wrong.append("annotations")
    version = data.get("version", 2)
    if not isinstance(version, int) or isinstance(version, bool):
        wrong.append("version")
    if wrong:
        raise _unreadable(f"its block has a wrong {', '.join(wrong)}")
    return Marker(**{k: v for k, v in data.items() if k in Marker.__dataclass_fields__})


def has_tag(tags: str | None) -> bool:
    return TAG in re.split(r"[;, ]+", tags or "")
