"""Signal names as runc takes them: with or without SIG, any case, or a number."""

from __future__ import annotations

import signal


def parse(value: str) -> str | None:
    """TERM, SIGTERM, term, 15 -> "SIGTERM"; None if it names no signal."""
    text = value.strip().upper()
    if text.isdigit():
        try:
            return signal.Signals(int(text)).name
        except ValueError:
            return None
    name = text if text.startswith("SIG") else "SIG" + text
    return name if name in signal.Signals.__members__ else None
