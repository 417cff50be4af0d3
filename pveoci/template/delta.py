"""Deltas: a new template as the frames it shares with one the node has, plus the frames it lacks.

Templates are sequences of zstd frames cut where the content says (template/frames.py), so after
a small change most frames of the new template are byte-identical to frames of the old one. The
node rebuilds the new file by copying those from the old template and the rest from what was
sent (node_delta.py); the result is byte-for-byte the file a full upload gives, and is checked by
its SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass

from pveoci.template.frames import Frame

WORTH = 0.5          # a delta is sent only when it is at most this part of the template


@dataclass(frozen=True)
class Delta:
    """How to make the new file: (source, offset, size) pieces in order, source "b" (base) or "n" (new data)."""

    pieces: tuple[tuple[str, int, int], ...]
    new_frames: tuple[Frame, ...]       # the frames to send, in order: the "n" data file
    new_bytes: int

    def args(self) -> list[str]:
        """The pieces as words for the node's script: b OFFSET SIZE / n OFFSET SIZE ..."""
        return [str(word) for piece in self.pieces for word in piece]


def plan(frames: tuple[Frame, ...], base: tuple[Frame, ...]) -> Delta:
    """The delta of frames against base (adjacent pieces of one source merged)."""
    in_base = {f.sha256: f for f in base}
    pieces: list[tuple[str, int, int]] = []
    new: list[Frame] = []
    offset = 0
    for frame in frames:
        found = in_base.get(frame.sha256)
        if found is not None:
            piece = ("b", found.offset, frame.size)
        else:
            piece = ("n", offset, frame.size)
            new.append(frame)
            offset += frame.size
        last = pieces[-1] if pieces else None
        if last is not None and last[0] == piece[0] and last[1] + last[2] == piece[1]:
            pieces[-1] = (last[0], last[1], last[2] + piece[2])
        else:
            pieces.append(piece)
    return Delta(tuple(pieces), tuple(new), offset)


def worth_it(delta: Delta, size: int) -> bool:
    return delta.new_bytes <= WORTH * size

