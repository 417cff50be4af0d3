"""A small OCI bundle: a busybox rootfs and a config.json shaped like `runc spec` writes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

APPLETS = ("sh", "ls", "cat", "echo", "env", "sleep", "id", "pwd", "ps", "mkdir", "rm", "true", "false",
           "ulimit", "wc", "head", "tail", "grep", "hostname", "mount", "umask", "printf", "kill", "init", "tr",
           "date")


def default_config(args: list[str], env: list[str] | None = None, cwd: str = "/") -> dict[str, Any]:
    return {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": cwd,
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "busybox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def has_interpreter(binary: Path) -> bool:
    """True for a dynamically linked ELF file (it has a PT_INTERP program header)."""
    data = binary.read_bytes()[:65536]
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only, as the bed's machines are
        return False
    order = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[32:40], order)
    phentsize = int.from_bytes(data[54:56], order)
    phnum = int.from_bytes(data[56:58], order)
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(data[start:start + 4], order) == 3:  # PT_INTERP
            return True
    return False


def make_busybox_bundle(bundle: Path, args: list[str] | None = None, env: list[str] | None = None) -> Path:
    """Write bundle/config.json and bundle/rootfs (static busybox + applet links); returns bundle."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox not found (Debian package busybox-static)")
    if has_interpreter(Path(busybox)):
        raise RuntimeError(f"{busybox} is not statically linked (install busybox-static)")
    rootfs = bundle / "rootfs"
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var/log", "usr/bin"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        link = rootfs / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (rootfs / "sbin" / "init").unlink(missing_ok=True)
    (rootfs / "sbin" / "init").symlink_to("../bin/busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (rootfs / "etc" / "os-release").write_text('ID=busybox\nNAME="BusyBox"\n')
    # The shell stays PID 1 (a loop, not an exec of its last command), so /proc/1/environ is the spec's env.
    config = default_config(args or ["sh", "-c", "echo hello from pveoci; while true; do sleep 1; done"], env)
    (bundle / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return bundle


def with_annotations(bundle: Path, **annotations: str) -> Path:
    """The bundle, its config.json's annotations replaced by these."""
    config = json.loads((bundle / "config.json").read_text())
    config["annotations"] = annotations
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle
