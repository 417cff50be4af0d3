"""config.json, process.json and update's resources as files (or stdin): read within limits, decoded as runc reads
them (UTF-8 JSON), every way they can be broken a one-line BundleError that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from pveoci import userfile
from pveoci.errors import BundleError

#: runc's configs are a few KiB (a long seccomp profile: some tens); anything this large is not one.
MAX_SIZE = 4 * userfile.MIB
#: No runtime-spec number has more than 20 digits (UInt64); a longer one would only cost time to read.
MAX_DIGITS = 100


class _NotJson(Exception):
    """What Python's decoder would read but runc's would not, or only at a cost."""


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise _NotJson(f"a number of {digits} digits (a runtime spec has none longer than 20)")
    return int(text)


def _constant(name: str) -> object:
    # Python reads NaN and Infinity; JSON has neither (RFC 8259), nor has Go's encoding/json, which runc uses.
    raise _NotJson(f"{name} is not a JSON number")


def read(path: Path, *, pipes: bool = False, missing: str | None = None) -> bytes:
    """The file's bytes: a regular file (or, with `pipes`, a pipe) of at most MAX_SIZE. `missing`: the error
    when there is no such file."""
    try:
        return userfile.read(path, MAX_SIZE, pipes=pipes)
    except FileNotFoundError as exc:
        raise BundleError(missing or f"cannot read {path}: {exc.strerror}") from None
    except userfile.Refused as exc:
        raise BundleError(f"cannot read {path}: it {exc}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_stream(stream: IO[bytes], where: str) -> bytes:
    """A stream's bytes to its end (a pipe's: its writer closes it), at most MAX_SIZE; `where` names it in errors."""
    try:
        raw = stream.read(MAX_SIZE + 1)
    except OSError as exc:
        raise BundleError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SIZE:
        raise BundleError(f"cannot read {where}: it is larger than {userfile.describe(MAX_SIZE)}")
    return raw


def decode(raw: bytes, where: Path | str) -> object:
    """The JSON document in `raw`; `where` names it in errors."""
    try:
        # Go's encoding/json, which runc uses, reads UTF-8 only; json.loads(bytes) would guess UTF-16/32.
        return json.loads(raw.decode("utf-8"), parse_int=_int, parse_constant=_constant)
    except UnicodeDecodeError as exc:
        raise BundleError(f"{where}: not valid JSON: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{where}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except _NotJson as exc:
        raise BundleError(f"{where}: not valid JSON: {exc}") from None
    except RecursionError:
        raise BundleError(f"{where}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # what else Python's decoder refuses (its int max-str-digits guard, if set lower)
        raise BundleError(f"{where}: not valid JSON: {exc}") from None
