"""Logging: text or JSON lines (runc's --log-format), with every known secret scrubbed."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "********"


def register_secret(value: str) -> None:
    """Never let this value reach a log line, whoever formats it."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    return text


class ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class ConsoleFormatter(ScrubbingFormatter):
    """`pveoci: warning: ...`, in the same shape as the final `pveoci: error: ...` line."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        return scrub(f"pveoci: {level}: {record.getMessage()}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: {"level", "msg", "time"} as runc writes them."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "level": record.levelname.lower().replace("warning", "warn"),
            "msg": scrub(record.getMessage()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
        }
        return json.dumps(line)


def configure(*, debug: bool, log_file: Path | None, log_format: str) -> None:
    """Log to stderr (warnings, or everything with --debug), or, with --log, to that file instead (as runc: an
    engine gives `create` the container's own stdout and stderr, where a warning would become the container's
    output; the final error line is still printed); --debug with --log writes both."""
    root = logging.getLogger("pveoci")
    root.handlers.clear()
    root.setLevel(logging.DEBUG if debug or log_file else logging.WARNING)
    root.propagate = False
    formatter: logging.Formatter = (
        JsonFormatter() if log_format == "json" else ScrubbingFormatter("%(levelname)s %(name)s: %(message)s")
    )
    if log_file is None or debug:
        console = logging.StreamHandler()
        # The command line prints its final error line itself; the log file still gets it.
        console.addFilter(lambda record: not getattr(record, "final", False))
        console.setLevel(logging.DEBUG if debug else logging.WARNING)
        console.setFormatter(ConsoleFormatter())
        root.addHandler(console)
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setLevel(logging.DEBUG if debug else logging.INFO)
        handler.setFormatter(formatter if log_format == "json" else ScrubbingFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def to_console() -> bool:
    """True when warnings go to stderr (no --log, or --debug with it)."""
    return any(type(h) is logging.StreamHandler for h in logging.getLogger("pveoci").handlers)
