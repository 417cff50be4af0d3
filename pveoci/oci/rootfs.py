"""Look inside a bundle's rootfs as the container will see it: symlinks resolved within the rootfs, never outside."""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path

MAX_LINKS = 40
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve_in_root(rootfs: Path, path: str) -> Path | None:
    """The host path of `path` inside rootfs, following links as the container would (an absolute link
    is relative to the rootfs, `..` stops at its top); None if it does not exist."""
    # A deque: a path of many `..` (or a link's target put in front) costs no copy per part.
    parts = deque(p for p in path.split("/") if p not in ("", "."))
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.popleft()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = rootfs.joinpath(*resolved, part)
        try:
            info = candidate.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > MAX_LINKS:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
            continue
        resolved.append(part)
    return rootfs.joinpath(*resolved)


def find_executable(rootfs: Path, name: str, path_env: str | None, cwd: str = "/") -> str | None:
    """The path execvp would run for `name` inside the container: itself if it has a slash (relative to
    cwd), else the first PATH entry holding an executable file of that name; None if there is none."""
    if "/" in name:
        full = name if name.startswith("/") else f"{cwd.rstrip('/')}/{name}"
        found = resolve_in_root(rootfs, full)
        return full if found is not None and _executable(found) else None
    # Each folder once: a PATH that names one many times is looked in once.
    for folder in dict.fromkeys((path_env if path_env is not None else DEFAULT_PATH).split(":")):
        candidate = f"{(folder or cwd).rstrip('/')}/{name}"
        found = resolve_in_root(rootfs, candidate)
        if found is not None and _executable(found):
            return candidate if candidate.startswith("/") else f"{cwd.rstrip('/')}/{candidate}"
    return None


def _executable(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o111)
