"""pveoci's container init: the static program every container runs as its PID 1 (docs/init.md).

Built from `init.c` beside this file by `python -m pveoci.init.build`, one binary per architecture,
reproducibly; the binaries are package data (`bin/init-<arch>`). This module only names them and the
paths the init uses in a container, and decodes its log: no heavy imports.
"""

from __future__ import annotations

import functools

ARCHES = ("amd64", "arm64")
VERSION = "1.3.0"              # what `init version` prints; build.py compiles it into the binaries
START_SIGNAL = 40              # the init waits for it before it starts the process

# In the container.
INIT_PATH = "/.pveoci/init"
RUN_DIR = "/.pveoci/run"
SPEC_PATH = f"{RUN_DIR}/spec"
STATE_PATH = f"{RUN_DIR}/state"
PID_PATH = f"{RUN_DIR}/pid"
STATUS_PATH = f"{RUN_DIR}/status"
LOG_PATH = f"{RUN_DIR}/log"
FOLLOW_LOCK_PATH = f"{RUN_DIR}/follow.lock"

# Log stream ids.
STDOUT = 1
STDERR = 2

_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def arch_for(machine: str) -> str:
    """The init's architecture for a `uname -m` machine name (x86_64, aarch64; amd64 and arm64 too)."""
    try:
        return _MACHINES[machine.strip().lower()]
    except KeyError:
        raise ValueError(f"no pveoci init for machine {machine!r}: supported are x86_64 (amd64) and "
                         f"aarch64 (arm64)") from None


def _check(arch: str) -> str:
    if arch not in ARCHES:
        raise ValueError(f"unknown init architecture {arch!r}: one of {', '.join(ARCHES)}")
    return arch


@functools.cache
def binary(arch: str) -> bytes:
    """The init's bytes for arch (one of ARCHES)."""
    from importlib.resources import files

    return files(__name__).joinpath("bin").joinpath(f"init-{_check(arch)}").read_bytes()


def digest(arch: str) -> str:
    """SHA-256 (hex) of binary(arch)."""
    import hashlib

    return hashlib.sha256(binary(arch)).hexdigest()


def parse_log(data: bytes) -> list[tuple[int, bytes]]:
    """The records of an init log (`run/log`): (stream, bytes), stream STDOUT or STDERR, in order.

    A record still being written when the log was read (its end missing) is left out; a stream byte
    other than 1 or 2 means the data is no init log: ValueError.
    """
    records: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 5 <= len(data):
        stream = data[pos]
        if stream not in (STDOUT, STDERR):
            raise ValueError(f"not a pveoci init log: stream {stream} at offset {pos}")
        end = pos + 5 + int.from_bytes(data[pos + 1:pos + 5], "big")
        if end > len(data):
            break
        records.append((stream, data[pos + 5:end]))
        pos = end
    return records
