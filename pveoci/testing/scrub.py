"""Secrets out of cassettes: the recording profile's, what logins returned, values under secret keys, key fingerprints.

A cassette is checked once more when it is written: if any known secret is still in its text,
nothing is written (`Secrets.check`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from pveoci import logs

MASK = logs.MASK
#: Keys whose values are secrets wherever they appear (PVE's own list, plus pveoci's settings names).
SECRET_KEYS = frozenset({"password", "new-password", "confirmation-password", "ticket", "CSRFPreventionToken",
                         "vncticket", "otp", "tfa-challenge", "token_secret"})
# SSH key fingerprints as paramiko (hex MD5) and OpenSSH (SHA256:base64) show them.
_KEY_FINGERPRINT = re.compile(r"\b(?:[0-9a-f]{2}:){15}[0-9a-f]{2}\b|\b[0-9a-f]{32}\b|SHA256:[A-Za-z0-9+/]{43}=?")

Leaf = Callable[[str | None, Any], Any]


def transform(value: Any, leaf: Leaf, key: str | None = None) -> Any:
    """The JSON value with every leaf (string, number, bool, null) replaced by leaf(its key, it)."""
    if isinstance(value, dict):
        return {k: transform(v, leaf, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [transform(v, leaf, key) for v in value]
    return leaf(key, value)


def strings(value: Any, fn: Callable[[str], str]) -> Any:
    """The JSON value with fn applied to every string leaf."""
    return transform(value, lambda _k, v: fn(v) if isinstance(v, str) else v)


def mask_key_fingerprints(text: str) -> str:
    return _KEY_FINGERPRINT.sub(MASK, text)


class Secrets:
    """The secrets a recording knows of; more are learnt as logins return tickets."""

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if value and len(value) >= 4 and value != MASK:
            self._values.add(value)

    def text(self, text: str) -> str:
        for secret in sorted(self._values, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return logs.scrub(text)

    def leaf(self, key: str | None, value: Any) -> Any:
        if key in SECRET_KEYS and value not in (None, "", MASK):
            if isinstance(value, str):
                self.add(value)
            return MASK
        return self.text(value) if isinstance(value, str) else value

    def value(self, value: Any) -> Any:
        """A JSON value scrubbed: secret keys masked (their values learnt), known secrets masked in every string."""
        learnt = transform(value, self.leaf)
        return strings(learnt, self.text)  # a secret learnt late may sit in a string seen before it

    def check(self, text: str) -> None:
        """Refuse text that still holds a secret (says which kind, never the secret)."""
        if any(secret in text for secret in self._values) or logs.scrub(text) != text:
            raise RuntimeError("a secret of the recording is still in the cassette; nothing was written")
