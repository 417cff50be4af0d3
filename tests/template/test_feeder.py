"""The buffer between packing and the uploader process: packing does not wait while the uploader starts."""

from __future__ import annotations

import os
import threading

from pveoci.template.remote import _Feeder


def test_bytes_wait_in_the_buffer_until_the_reader_comes_and_all_arrive() -> None:
    read_end, write_end = os.pipe()
    pipe = os.fdopen(write_end, "wb")
    feeder = _Feeder(pipe)
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
    feeder = _Feeder(os.fdopen(write_end, "wb", buffering=0))
    feeder.put(b"y")
    assert feeder.close() is False
