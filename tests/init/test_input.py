"""The process's input (spec keys `stdin` and `pty`, the `init stdin` command): how a stand-in on a workstation
feeds a process on a node (docs/init.md, Input)."""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

from tests.init.conftest import Boot, spec, wait_until


def data(offset: int, payload: bytes) -> bytes:
    return b"D" + struct.pack(">H", 8 + len(payload)) + struct.pack(">Q", offset) + payload


END = b"E\x00\x00"
#: A devpts of its own with /dev/ptmx in the test's rootfs, as LXC gives a container (`wrap` of the boot fixture).
MOUNT_DEVPTS = ["sh", "-c", 'root=$1; shift; mkdir -p "$root/dev/pts"; '
                'mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; '
                'touch "$root/dev/ptmx"; mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"; exec "$@"', "sh"]


def window(rows: int, cols: int) -> bytes:
    return b"W\x00\x04" + struct.pack(">HH", rows, cols)


def feed(ini: object, records: bytes) -> subprocess.CompletedProcess[bytes]:
    return ini.run("stdin", input=records)  # type: ignore[attr-defined,no-any-return]


def test_the_input_reaches_the_process_once_whatever_is_sent_again(boot: Boot) -> None:
    ini = boot(spec("cat; echo done", stdin=True))
    ini.start()
    first = feed(ini, data(0, b"hello\n"))
    assert first.returncode == 0
    assert first.stdout.startswith(b"received 0\n")          # then again as the init takes more
    wait_until(lambda: (ini.run_dir / "stdin.received").exists(), "the init to take it")
    # A writer that lost its connection asks where to go on, and sends again from an earlier offset: no double.
    again = feed(ini, data(3, b"lo\nworld\n") + END)
    assert again.stdout.startswith(b"received 6\n")
    assert ini.wait() == 0
    assert b"".join(d for s, d in ini.log() if s == 1) == b"hello\nworld\ndone\n"


def test_without_input_the_process_reads_dev_null(boot: Boot) -> None:
    ini = boot(spec("cat; echo done"))
    ini.start()
    assert ini.wait() == 0
    assert not (ini.run_dir / "stdin").exists()
    assert b"".join(d for _, d in ini.log()) == b"done\n"


def test_stdin_waits_for_the_start_and_ends_with_the_process(boot: Boot) -> None:
    ini = boot(spec("read x; echo got=$x", stdin=True))
    writer = subprocess.Popen(["nsenter", f"--target={ini.pid}", "--mount", "--pid", "--root", "--wd", "--",
                               "/.pveoci/init", "stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert writer.stdin is not None
    ini.start()
    writer.stdin.write(data(0, b"early\n"))
    writer.stdin.close()
    assert writer.wait(15) == 0
    assert ini.wait() == 0
    assert b"got=early" in b"".join(d for _, d in ini.log())


def test_a_pty_of_its_own_with_its_size(boot: Boot, rootfs: Path) -> None:
    ini = boot(spec("tty; stty size; read x; stty size; echo got=$x", pty=True),
               wrap=[*MOUNT_DEVPTS, str(rootfs)])
    assert feed(ini, window(20, 60)).returncode == 0        # before the start (podman's order): applied first
    ini.start()
    ini.wait_log(b"20 60")
    assert feed(ini, window(25, 70) + data(0, b"abc\r")).returncode == 0
    ini.wait_log(b"25 70")
    assert ini.wait() == 0
    text = b"".join(d for _, d in ini.log())
    assert b"/dev/pts/" in text
    assert b"got=abc" in text                    # one stream: the terminal's, in the log as stdout
    assert {s for s, _ in ini.log()} == {1}


def test_a_pty_waits_a_little_for_its_size(boot: Boot, rootfs: Path) -> None:
    """ctr sends the size just after the start: the process, which asks at once, still gets it."""
    ini = boot(spec("stty size", pty=True), wrap=[*MOUNT_DEVPTS, str(rootfs)])
    ini.start()
    time.sleep(0.5)
    feed(ini, window(41, 99))
    assert ini.wait() == 0
    assert b"41 99" in b"".join(d for _, d in ini.log())


def test_a_record_no_writer_makes_is_refused(boot: Boot) -> None:
    ini = boot(spec("cat", stdin=True))
    ini.start()
    bad = feed(ini, b"D\xff\xff")
    assert bad.returncode == 2
    assert b"a record of 65535 bytes" in bad.stderr
    feed(ini, END)
    assert ini.wait() == 0
