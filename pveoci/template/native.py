"""The packer in C (packer.c): the stat walk and the per-entry work of a pack, the same bytes as Python's.

`packer scan` walks the rootfs and gives tree.py's records (they fingerprint it, manifest.py); `packer
pack` takes those records back, builds the headers, reads the files, cuts the frames and compresses them
on every core, and hands back the compressed frames in order, which Python hashes and writes (to the
local file, to the node). On a real tree of tens of thousands of small files that is most of a pack's
CPU (docs/performance.md); what goes in (pveoci's own files, what they replace) Python still decides.

It is used on Linux amd64 and arm64 when python-zstandard bundles the zstd the program was built with
(so the frames, and the template's name, are the same bytes either way); anywhere else, or with
PVEOCI_PACKER=python, tree.walk_python, pack.write_tar and frames.Framer do the work in Python.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from pveoci import errors
from pveoci.template.tree import Walk

BIN_DIR = Path(__file__).resolve().parent / "bin"
ZSTD_VERSION = (1, 5, 7)       # the zstd compiled into the packer (template/packer_build.py)
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

_TRAILER = struct.Struct("=cQQ")
_RAW = struct.Struct("=cIQI")
_PART = struct.Struct("=Q")
_FRAME = struct.Struct("=QQQ")
_EXIT_ROOTFS = 3
_END = (1 << 64) - 1


def binary() -> Path | None:
    """The packer for this machine, or None when packing stays in Python (why_not says why)."""
    path, _ = _find()
    return path


def why_not() -> str | None:
    """Why templates are packed in Python here (None: they are not)."""
    return _find()[1]


def scanner() -> Path | None:
    """The program for a stat walk (`packer scan`: no zstd in it, so whatever python-zstandard bundles), or
    None when the walk stays in Python."""
    return _program()[0]


def _program() -> tuple[Path | None, str | None]:
    if os.environ.get("PVEOCI_PACKER", "").lower() == "python":
        return None, "PVEOCI_PACKER=python"
    if not sys.platform.startswith("linux"):
        return None, f"no packer for {sys.platform} (Linux only)"
    machine = os.uname().machine  # platform.machine() says the same; its module costs a command 2 ms
    arch = _ARCHES.get(machine.lower())
    if arch is None:
        return None, f"no packer for {machine} (amd64 and arm64 only)"
    path = BIN_DIR / f"packer-{arch}"
    if not os.access(path, os.X_OK):
        return None, f"{path} is missing or not executable"
    return path, None


def _find() -> tuple[Path | None, str | None]:
    path, why = _program()
    if path is None:
        return None, why
    import zstandard

    found = tuple(zstandard.ZSTD_VERSION)
    if found != ZSTD_VERSION:
        return None, (f"python-zstandard {zstandard.__version__} bundles zstd {'.'.join(map(str, found))}, the "
                      f"packer zstd {'.'.join(map(str, ZSTD_VERSION))} (their frames would differ)")
    return path, None


def raw_record(crc: int, data_size: int, parts: Sequence[bytes]) -> bytes:
    """An entry whose header and data Python made (pveoci's own files)."""
    return b"".join([_RAW.pack(b"R", crc, data_size, len(parts)), *(_PART.pack(len(p)) + p for p in parts)])


def scan(program: Path, root: bytes) -> Walk:
    """The stat walk of root (tree.py's records), made by the packer."""
    return Scanner(program, root).result()


class Scanner:
    """`packer scan` under way (it starts when made): result() reads its records, cancel() stops it.

    The records go to an anonymous file, not a pipe: a pipe is drained by a Python thread, which gets the
    interpreter lock only every few milliseconds while the main thread works (imports, the spec's checks), and
    the walk would stall at every full pipe (a 7 MB walk took twice as long as on its own)."""

    def __init__(self, program: Path, root: bytes) -> None:
        self._out, self._err = _anonymous_file("pveoci-scan"), _anonymous_file("pveoci-scan-err")
        try:
            self._proc = subprocess.Popen([os.fsencode(program), b"scan", root], stdin=subprocess.DEVNULL,
                                          stdout=self._out, stderr=self._err)
        except BaseException:
            self._close()
            raise

    def result(self) -> Walk:
        try:
            returncode = self._proc.wait()
            out, err = _contents(self._out), _contents(self._err)
        finally:
            self._close()
        if returncode == 0 and len(out) >= _TRAILER.size and out[-_TRAILER.size] == ord("S"):
            _, size, count = _TRAILER.unpack_from(out, len(out) - _TRAILER.size)
            return Walk(out[:-_TRAILER.size], size, count)
        message = _last_line(err)
        if returncode == _EXIT_ROOTFS:
            raise errors.BundleError(message)
        if returncode == -9:
            raise errors.PveociError("the stat walk was cancelled")
        raise errors.PveociError(f"the packer failed (exit {returncode}): {message or 'no message'}")

    def cancel(self) -> None:
        """Stops the walk (a result() under way in another thread then raises)."""
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()

    def _close(self) -> None:
        self._out.close()
        self._err.close()


def _anonymous_file(name: str) -> IO[bytes]:
    """A file with no name anywhere (in memory where Linux allows), read back once the writer is done."""
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create(name, os.MFD_CLOEXEC), "w+b")
    import tempfile

    return tempfile.TemporaryFile()


def _contents(file: IO[bytes]) -> bytes:
    file.seek(0)
    return file.read()


def _last_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text.splitlines()[-1] if text else ""


class Packer:
    """One run of the program: records go in (`feed`, from a thread of their own), frames come out."""

    def __init__(self, program: Path, root: bytes, level: int, threads: int, skip: Sequence[bytes] = ()) -> None:
        self._proc = subprocess.Popen([os.fsencode(program), b"pack", root, str(level).encode(),
                                       str(threads).encode(), *skip],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._feed_error: list[BaseException] = []
        self.entries = 0     # written, once the frames are read
        self._feeder: threading.Thread | None = None

    def feed(self, records: Iterable[bytes]) -> None:
        """Sends the records, then the end, from a thread (the frames are read meanwhile)."""
        def run() -> None:
            stdin = self._proc.stdin
            assert stdin is not None
            try:
                for record in records:
                    stdin.write(record)
                stdin.write(b"E")
                stdin.close()
            except BrokenPipeError:
                pass   # the program ended: its exit status says why
            except BaseException as exc:  # a record the caller could not make (its error is raised at the end)
                self._feed_error.append(exc)
                self._proc.kill()

        self._feeder = threading.Thread(target=run, name="pveoci-packer-feed", daemon=True)
        self._feeder.start()

    def frames(self) -> Iterable[tuple[bytes, int, int]]:
        """(compressed frame, tar bytes it holds, file bytes read for it), in order; raises BundleError for
        what the rootfs did (a file vanished, changed size, could not be read)."""
        out: IO[bytes] | None = self._proc.stdout
        assert out is not None
        while head := out.read(_FRAME.size):
            if len(head) != _FRAME.size:
                break
            tar_size, size, read = _FRAME.unpack(head)
            if tar_size == _END:
                self.entries = size
                continue
            data = out.read(size)
            if len(data) != size:
                break
            yield data, tar_size, read
        self._finish()

    def _finish(self) -> None:
        if self._feeder is not None:
            self._feeder.join()
        status = self._proc.wait()
        message = self._stderr()
        if self._feed_error:
            raise self._feed_error[0]
        if status == _EXIT_ROOTFS:
            raise errors.BundleError(message)
        if status != 0:
            raise errors.PveociError(f"the packer failed (exit {status}): {message or 'no message'}")

    def _stderr(self) -> str:
        err = self._proc.stderr
        return _last_line(err.read()) if err is not None else ""

    def close(self) -> None:
        """Ends the program if it still runs (an abort): nothing is left behind."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._feeder is not None:
            self._feeder.join(timeout=5)

