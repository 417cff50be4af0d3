"""The init shim: built in Python, run as root in a chroot of a busybox rootfs, in its own PID namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pveoci.process import RLIM_INFINITY, RLIMITS, ProcessSpec, Rlimit
from pveoci.template.initshim import SUPPORTED_ARCHES, ShimSpec, build, shim_extras
from pveoci.template.pack import ExtraFile
from tests.conftest import need
from tests.testbed import parts

APPLETS = ("sh", "cat", "id", "pwd", "sleep", "env")
ENV = ("PATH=/bin", "HOME=/", "TERM=xterm", "WITH_SPACE=a b  c", "EMPTY=")
# The process reports what it sees into /tmp/out; $$ is the shell itself, the exec'd process.
REPORT = """
for f in status limits environ cmdline oom_score_adj; do cat /proc/$$/$f > /tmp/out/$f; done
pwd -P > /tmp/out/cwd
umask > /tmp/out/umask
echo $$ > /tmp/out/pid
"""
BASE = ShimSpec(path="/bin/sh", argv=("sh", "-c", REPORT, "report"), env=ENV)


def need_bed() -> None:
    need(([] if os.geteuid() == 0 else ["root (for chroot and a PID namespace)"]) + parts.missing_for_busybox())


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    need_bed()
    busybox = shutil.which("busybox")
    assert busybox is not None
    root = tmp_path / "rootfs"
    for sub in ("bin", "proc", "dev", "tmp/out", "app", "private", ".pveoci"):
        (root / sub).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    (root / "tmp" / "out").chmod(0o777)
    (root / "private").chmod(0o700)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


def has_cap_sys_resource() -> bool:
    cap_eff = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff:"))
    return bool(int(cap_eff.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE = 24


def run(root: Path, spec: ShimSpec) -> subprocess.CompletedProcess[str]:
    init = root / ".pveoci" / "init"
    init.write_bytes(build(spec))
    init.chmod(0o755)
    return subprocess.run(
        ["unshare", "--fork", "--pid", f"--mount-proc={root}/proc", "--", "chroot", str(root), "/.pveoci/init"],
        capture_output=True, text=True, timeout=30, check=False,
    )


def observe(root: Path, spec: ShimSpec) -> dict[str, bytes]:
    """Run the report script under the shim; returns the files it wrote, by name."""
    proc = run(root, spec)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return {path.name: path.read_bytes() for path in (root / "tmp" / "out").iterdir()}


def status_field(seen: dict[str, bytes], name: str) -> str:
    for line in seen["status"].decode().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name} in /proc/self/status")


def limit_line(seen: dict[str, bytes], name: str) -> list[str]:
    line = next(line for line in seen["limits"].decode().splitlines() if line.startswith(name))
    return line[len(name):].split()


def test_defaults_exec_exact_argv_and_env_as_pid_1(rootfs: Path) -> None:
    seen = observe(rootfs, BASE)
    assert seen["environ"] == b"\0".join(e.encode() for e in ENV) + b"\0"
    assert seen["cmdline"] == b"\0".join(a.encode() for a in BASE.argv) + b"\0"
    assert seen["pid"] == b"1\n"
    assert seen["cwd"] == b"/\n"
    assert status_field(seen, "Uid") == "0\t0\t0\t0"
    assert status_field(seen, "Gid") == "0\t0\t0\t0"
    assert status_field(seen, "Groups") == ""  # the parent's supplementary groups are dropped
    assert status_field(seen, "NoNewPrivs") == "0"


def test_empty_environment(rootfs: Path) -> None:
    seen = observe(rootfs, replace(BASE, env=()))
    assert seen["environ"] == b""


def test_user_group_and_additional_gids(rootfs: Path) -> None:
    seen = observe(rootfs, replace(BASE, uid=1000, gid=1000, additional_gids=(10, 20)))
    assert status_field(seen, "Uid") == "1000\t1000\t1000\t1000"
    assert status_field(seen, "Gid") == "1000\t1000\t1000\t1000"
    assert status_field(seen, "Groups").split() == ["10", "20"]


def test_rlimits(rootfs: Path) -> None:
    limits = (Rlimit(RLIMITS["RLIMIT_NOFILE"], 123, 456), Rlimit(RLIMITS["RLIMIT_CORE"], RLIM_INFINITY, RLIM_INFINITY))
    seen = observe(rootfs, replace(BASE, rlimits=limits, uid=1000, gid=1000))
    assert limit_line(seen, "Max open files") == ["123", "456", "files"]
    assert limit_line(seen, "Max core file size") == ["unlimited", "unlimited", "bytes"]


def test_raises_hard_limit_above_the_parents(rootfs: Path) -> None:
    """Needs CAP_SYS_RESOURCE, which the shim has as long as it sets rlimits before dropping root."""
    hard = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True, check=True).stdout)
    spec = replace(BASE, rlimits=(Rlimit(RLIMITS["RLIMIT_NOFILE"], 64, hard + 1),), uid=1000)
    if not has_cap_sys_resource():  # e.g. a container without it: then the failure must be reported
        proc = run(rootfs, spec)
        assert proc.returncode == 127
        assert proc.stderr == f"pveoci-init: prlimit RLIMIT_NOFILE 64:{hard + 1} failed: errno 1\n"
        return
    assert limit_line(observe(rootfs, spec), "Max open files") == ["64", str(hard + 1), "files"]


def test_umask(rootfs: Path) -> None:
    assert observe(rootfs, replace(BASE, umask=0o027))["umask"] == b"0027\n"
    assert observe(rootfs, replace(BASE, umask=0))["umask"] == b"0000\n"


def test_cwd(rootfs: Path) -> None:
    assert observe(rootfs, replace(BASE, cwd="/app", uid=1000))["cwd"] == b"/app\n"


@pytest.mark.parametrize("flag", [True, False])
def test_no_new_privileges(rootfs: Path, flag: bool) -> None:
    seen = observe(rootfs, replace(BASE, no_new_privileges=flag, uid=1000))
    assert status_field(seen, "NoNewPrivs") == ("1" if flag else "0")


@pytest.mark.parametrize("score", [500, 0, 1000])
def test_oom_score_adj(rootfs: Path, score: int) -> None:
    seen = observe(rootfs, replace(BASE, oom_score_adj=score, uid=1000))
    assert seen["oom_score_adj"] == f"{score}\n".encode()


def test_negative_oom_score_adj(rootfs: Path) -> None:
    """Lowering the score needs CAP_SYS_RESOURCE, which the shim has as long as it writes it before dropping root."""
    spec = replace(BASE, oom_score_adj=-500, uid=1000)
    if not has_cap_sys_resource():
        proc = run(rootfs, spec)
        assert proc.returncode == 127
        assert proc.stderr == "pveoci-init: write /proc/self/oom_score_adj -500 failed: errno 13\n"
        return
    assert observe(rootfs, spec)["oom_score_adj"] == b"-500\n"


def test_oom_score_adj_with_no_spare_file_descriptor(rootfs: Path) -> None:
    """RLIMIT_NOFILE 3 leaves no room for opening oom_score_adj: the shim writes it before setting rlimits."""
    spec = ShimSpec(path="/bin/id", argv=("id", "-u"), env=(), rlimits=(Rlimit(7, 3, 3),), oom_score_adj=500)
    proc = run(rootfs, spec)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0\n", "")


def test_everything_at_once(rootfs: Path) -> None:
    spec = replace(BASE, cwd="/app", uid=1000, gid=1001, additional_gids=(10, 20, 30), umask=0o077,
                   rlimits=(Rlimit(7, 100, 200),), no_new_privileges=True, oom_score_adj=1000)
    seen = observe(rootfs, spec)
    assert status_field(seen, "Uid") == "1000\t1000\t1000\t1000"
    assert status_field(seen, "Gid") == "1001\t1001\t1001\t1001"
    assert status_field(seen, "Groups").split() == ["10", "20", "30"]
    assert status_field(seen, "NoNewPrivs") == "1"
    assert limit_line(seen, "Max open files") == ["100", "200", "files"]
    assert (seen["cwd"], seen["umask"], seen["oom_score_adj"], seen["pid"]) == (b"/app\n", b"0077\n", b"1000\n", b"1\n")
    assert seen["environ"] == b"\0".join(e.encode() for e in ENV) + b"\0"


def test_failing_chdir_exits_127_naming_the_step(rootfs: Path) -> None:
    proc = run(rootfs, replace(BASE, cwd="/missing"))
    assert proc.returncode == 127
    assert proc.stderr == "pveoci-init: chdir /missing failed: errno 2\n"
    assert not (rootfs / "tmp" / "out" / "pid").exists()


def test_chdir_happens_as_the_user(rootfs: Path) -> None:
    assert run(rootfs, replace(BASE, cwd="/private")).returncode == 0
    proc = run(rootfs, replace(BASE, cwd="/private", uid=1000))
    assert (proc.returncode, proc.stderr) == (127, "pveoci-init: chdir /private failed: errno 13\n")


def test_missing_program_exits_127_naming_execve(rootfs: Path) -> None:
    proc = run(rootfs, replace(BASE, path="/bin/nope"))
    assert (proc.returncode, proc.stderr) == (127, "pveoci-init: execve /bin/nope failed: errno 2\n")


def test_invalid_rlimit_exits_127_naming_prlimit(rootfs: Path) -> None:
    proc = run(rootfs, replace(BASE, rlimits=(Rlimit(RLIMITS["RLIMIT_NOFILE"], 10, 5),)))
    assert (proc.returncode, proc.stderr) == (127, "pveoci-init: prlimit RLIMIT_NOFILE 10:5 failed: errno 22\n")


def test_deterministic() -> None:
    assert build(BASE) == build(BASE)
    variants = [replace(BASE, uid=1), replace(BASE, env=(*ENV, "X=1")), replace(BASE, cwd="/app"),
                replace(BASE, umask=0o22), replace(BASE, rlimits=(Rlimit(7, 1, 2),)), replace(BASE, oom_score_adj=0),
                replace(BASE, no_new_privileges=True), replace(BASE, additional_gids=(5,))]
    images = {build(spec) for spec in [BASE, *variants]}
    assert len(images) == len(variants) + 1


def test_unsupported_arch() -> None:
    assert SUPPORTED_ARCHES == ("x86_64",)
    with pytest.raises(ValueError, match="aarch64"):
        build(BASE, arch="aarch64")


@pytest.mark.parametrize("bad", [
    replace(BASE, path="bin/sh"),
    replace(BASE, cwd="app"),
    replace(BASE, argv=()),
    replace(BASE, argv=("sh", "a\0b")),
    replace(BASE, env=("A=\0",)),
    replace(BASE, uid=2**32 - 1),
    replace(BASE, gid=-1),
    replace(BASE, umask=0o1000),
    replace(BASE, oom_score_adj=1001),
    replace(BASE, rlimits=(Rlimit(7, 2**64, 0),)),
])
def test_invalid_spec(bad: ShimSpec) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        build(bad)


def test_rlimit_table() -> None:
    names = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
             "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]
    assert {f"RLIMIT_{name}": number for number, name in enumerate(names)} == RLIMITS


def test_elf_header(tmp_path: Path) -> None:
    image = build(BASE)
    assert image[:7] == b"\x7fELF\x02\x01\x01"  # ELF64, little-endian, version 1
    assert int.from_bytes(image[16:18], "little") == 2  # ET_EXEC
    assert int.from_bytes(image[18:20], "little") == 62  # EM_X86_64
    entry = int.from_bytes(image[24:32], "little")
    assert 0x400000 < entry < 0x400000 + len(image)
    assert int.from_bytes(image[56:58], "little") == 1  # one program header
    readelf = shutil.which("readelf")
    if readelf is None:
        return
    (tmp_path / "init").write_bytes(image)
    text = subprocess.run([readelf, "-hl", str(tmp_path / "init")], capture_output=True, text=True, check=True).stdout
    assert "EXEC (Executable file)" in text
    assert "X86-64" in text
    assert f"Entry point address:               {entry:#x}" in text
    assert "LOAD" in text


# --- the files a template gets ---

PROCESS = ProcessSpec(path="/bin/sh", args=("sh", "-c", "exit 0"), env=ENV, cwd="/app", uid=1000, gid=1001,
                      additional_gids=(5,), umask=0o27, rlimits=(Rlimit(7, 100, 200),), no_new_privileges=True,
                      oom_score_adj=10, terminal=True, stop_signal=3)


def test_the_template_gets_the_shim_for_the_process() -> None:
    shim = ShimSpec(path="/bin/sh", argv=("sh", "-c", "exit 0"), env=ENV, cwd="/app", uid=1000, gid=1001,
                    additional_gids=(5,), umask=0o27, rlimits=(Rlimit(7, 100, 200),), no_new_privileges=True,
                    oom_score_adj=10)
    assert shim_extras(PROCESS, legacy_init=False) == [ExtraFile(".pveoci/init", build(shim), 0o755)]


def test_older_pve_also_gets_sbin_init_as_a_link_to_the_shim() -> None:
    extras = shim_extras(PROCESS, legacy_init=True)
    assert extras[0].path == ".pveoci/init"
    assert extras[1:] == [ExtraFile("sbin/init", link="/.pveoci/init")]
