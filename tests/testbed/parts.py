"""Which parts of the bed this machine has; tests skip without them, or fail where the bed is required."""

from __future__ import annotations

import os
import shutil

from tests.testbed import sshd

# Set by .ci/run: a missing part fails the run instead of skipping tests.
REQUIRE_ENV = "PVEOCI_REQUIRE_BED"


def missing_for_ssh() -> list[str]:
    out = []
    if os.geteuid() != 0:
        out.append("root (for sshd in its own mount namespace)")
    if not os.access(sshd.SSHD, os.X_OK):
        out.append(f"{sshd.SSHD} (Debian package openssh-server)")
    for tool in ("ssh-keygen", "unshare", "mount"):
        if shutil.which(tool) is None:
            out.append(tool)
    if sshd.sftp_server() is None:
        out.append("sftp-server (Debian package openssh-sftp-server)")
    return out


def missing_for_lxc() -> list[str]:
    """What real containers need (tests/testbed/lxc.py): root and the LXC tools, tar to unpack templates."""
    from tests.testbed import lxc

    out = []
    if os.geteuid() != 0:
        out.append("root (for LXC containers)")
    out += [f"{tool} (Debian package lxc)" for tool in lxc.TOOLS if shutil.which(tool) is None]
    if shutil.which("tar") is None:
        out.append("tar")
    return out


def missing_for_busybox() -> list[str]:
    return [] if shutil.which("busybox") else ["busybox (Debian package busybox-static)"]


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")
