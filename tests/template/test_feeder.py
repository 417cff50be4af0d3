"""The buffer between packing and the upload: packing does not wait while the upload starts, and a failed upload
is reported."""

from __future__ import annotations

import os
import threading
from typing import Any

from pveoci.template.feeder import Feeder
from pveoci.template.stream import SudoCat


def test_bytes_wait_in_the_buffer_until_the_reader_comes_and_all_arrive() -> None:
    read_end, write_end = os.pipe()
    pipe = os.fdopen(write_end, "wb")
    feeder = Feeder(pipe)
    for _ in range(64):
        feeder.put(b"x" * 65536)   # 4 MiB into a 64 KiB pipe nobody reads yet: each put returns at once
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 20):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    assert feeder.close()
    pipe.close()
    reader.join()
    os.close(read_end)
    assert bytes(got) == b"x" * (64 * 65536)


def test_a_reader_that_went_away_is_reported() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    feeder = Feeder(os.fdopen(write_end, "wb", buffering=0))
    feeder.put(b"y")
    assert feeder.close() is False


class _Session:
    """What SudoCat uses of a session: stream() with stdin, as `cat` through sudo would read it."""

    def __init__(self, status: int) -> None:
        self.status, self.argv, self.got = status, [""], b""

    def stream(self, argv: list[str], *, stdin: Any, stdout: Any, stderr: Any) -> int:
        self.argv = argv
        self.got = stdin.read()
        return self.status


class _Remote:
    def __init__(self, status: int) -> None:
        self.session = _Session(status)


def test_through_sudo_the_bytes_go_to_cat_on_the_node() -> None:
    remote = _Remote(0)
    feeder = Feeder(SudoCat(remote, "/dir/.pveoci-upload.x.partial"))  # type: ignore[arg-type]
    for _ in range(40):
        feeder.put(b"z" * 100_000)
    assert feeder.close()
    assert remote.session.got == b"z" * 4_000_000
    assert remote.session.argv == ["sh", "-c", 'umask 022 && cat > "$1"', "sh", "/dir/.pveoci-upload.x.partial"]


def test_cat_failing_through_sudo_fails_the_upload_with_its_status() -> None:
    feeder = Feeder(SudoCat(_Remote(1), "/dir/f"))  # type: ignore[arg-type]
    feeder.put(b"data")
    assert feeder.close() is False
    assert str(feeder.error) == "cat through sudo exited 1"
