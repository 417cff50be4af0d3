"""A node's template storage on the tape: claims, sweeps and uploads are kept as what they meant, and replayed
without a node (nothing of the API backend's SSH side runs). The node is played here by fakes in place of the
API backend's own methods; the bed recordings (tests/cassettes) do the same against real sshds."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pveoci import errors
from pveoci.backends.api import ApiBackend, ApiTemplates
from pveoci.backends.base import Backend, Claim
from pveoci.models import Destination
from pveoci.runtime import push
from pveoci.template import delta
from pveoci.template.pack import Packed
from pveoci.testing import Cassette, CassetteMismatch, Player, Recorder
from tests.testing.test_record import config

DEST = Destination("pve1", "local", False, directory="/var/lib/vz/template/cache")
KEY = "9" * 64  # a claim's key (manifest.key): a stat walk of the rootfs, never kept


class FakeClaim:
    def __init__(self, node: Node) -> None:
        self.node, self.ours = node, True

    def result(self) -> str | None:
        return None

    def wait(self, timeout: float) -> str | None:
        return None

    def take_over(self) -> bool:
        return True

    def heartbeat(self) -> None:
        self.node.heartbeats += 1

    def release(self, name: str | None) -> None:
        self.node.released.append(name)


class FakeUpload:
    def __init__(self, node: Node, progress: Callable[[int], None]) -> None:
        self.node, self.progress, self.sent = node, progress, 0

    def write(self, data: bytes) -> int:
        if self.node.broken:
            raise errors.SshError("upload to node 'pve1' failed: the connection was lost")
        self.node.received += data
        self.sent += len(data)
        self.progress(len(data))
        return len(data)

    def finish(self, packed: Packed) -> bool:
        got = bytes(self.node.received)   # every frame arrived whole, in order (a streamed pack keeps no file hash)
        return len(got) == packed.size and all(
            hashlib.sha256(got[f.offset:f.offset + f.size]).hexdigest() == f.sha256 for f in packed.frames)

    def abort(self) -> None:
        self.node.aborted = True


class Node:
    """What the API backend's SSH side would have done to pve1 (recording), or a guard that it is not reached."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, reachable: bool = True, broken: bool = False) -> None:
        self.received = bytearray()
        self.released: list[str | None] = []
        self.heartbeats = 0
        self.broken = broken
        self.aborted = False

        def reach(what: str, answer: Callable[..., Any]) -> Callable[..., Any]:
            def method(_storage: ApiTemplates, *args: Any, **kwargs: Any) -> Any:
                if not reachable:
                    raise AssertionError(f"a replay reached the node: {what}")
                return answer(*args, **kwargs)
            return method

        monkeypatch.setattr(ApiTemplates, "claim_template", reach("claim", lambda dest, key: FakeClaim(self)))
        monkeypatch.setattr(ApiTemplates, "sweep_templates", reach("sweep", lambda dest: [".pveoci-upload.x.partial"]))
        monkeypatch.setattr(ApiTemplates, "begin_upload",
                            reach("stream", lambda dest, *, transport, progress: FakeUpload(self, progress)))
        monkeypatch.setattr(ApiTemplates, "upload", reach("upload", lambda packed, dest, *, transport, progress:
                                                        packed.size))
        monkeypatch.setattr(ApiTemplates, "upload_delta", reach("delta", lambda packed, base, change, dest, *, progress:
                                                              change.new_bytes))


def rootfs(path: Path, text: str, files: int = 2) -> Path:
    """A rootfs of `files` files of random data (a template frame holds at least 512 KiB) and /etc/motd."""
    (path / "etc").mkdir(parents=True, exist_ok=True)
    (path / "etc" / "motd").write_text(text)
    (path / "bin").mkdir(exist_ok=True)
    for i in range(files):
        (path / "bin" / f"data{i:02d}").write_bytes(os.urandom(100_000))
    return path


def stream_a_template(backend: Backend, source: Path, seen: list[int]) -> tuple[Packed, bool, Claim]:
    """As runtime.push does: claim, sweep, pack while streaming (through the session's packer), release."""
    claim = backend.claim_template(DEST, KEY)
    assert claim.ours
    try:
        assert backend.sweep_templates(DEST) == [".pveoci-upload.x.partial"]
        upload = backend.begin_upload(DEST, transport="sftp", progress=seen.append)
        try:
            packed = push.pack(source, None, stream=upload.write, progress=lambda _n: claim.heartbeat())
            landed = upload.finish(packed)
        except BaseException:
            upload.abort()
            raise
    except BaseException:
        claim.release(None)
        raise
    claim.release(packed.name)
    return packed, landed, claim


def test_a_streamed_push_is_kept_by_the_templates_stand_in_and_replays_without_the_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(monkeypatch)
    with Recorder(tmp_path / "push.json", "live", config=config(tmp_path)) as rec:
        packed, landed, _claim = stream_a_template(rec.runtime.backend, rootfs(tmp_path / "a", "one"), seen := [])
    assert landed  # the node got the template's bytes
    assert sum(seen) == packed.size
    assert node.released == [packed.name]
    assert node.heartbeats > 0  # they reached the claim, and are not on the tape
    entries = Cassette.load(tmp_path / "push.json").ssh
    where = {"node": "pve1", "directory": DEST.directory}
    assert entries == [{**where, "claim": 1, "step": "take", "ours": True},
                       {**where, "sweep": True, "removed": [".pveoci-upload.x.partial"]},
                       {**where, "upload": "pveoci-0000000000000001.tar.zst", "via": "stream", "landed": True},
                       {**where, "claim": 1, "step": "release", "name": "pveoci-0000000000000001.tar.zst"}]
    text = (tmp_path / "push.json").read_text()
    for local in (KEY[:32], packed.name, *(f.sha256 for f in packed.frames)):
        assert local not in text

    # Another rootfs (other bytes, another name): the same pveoci work, so the same replay.
    Node(monkeypatch, reachable=False)
    with Player(tmp_path / "push.json") as play:
        replayed, landed, claim = stream_a_template(play.runtime.backend, rootfs(tmp_path / "b", "two"),
                                                    seen := [])
    assert landed
    assert claim.ours
    assert replayed.name != packed.name
    assert sum(seen) == replayed.size  # the replay's own bytes, counted as an upload would


def test_a_stream_that_broke_off_replays_as_the_same_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(monkeypatch, broken=True)
    with Recorder(tmp_path / "broken.json", "live", config=config(tmp_path)) as rec, \
            pytest.raises(errors.SshError, match="the connection was lost"):
        stream_a_template(rec.runtime.backend, rootfs(tmp_path / "a", "one"), [])
    assert node.aborted
    assert node.released == [None]
    entries = Cassette.load(tmp_path / "broken.json").ssh
    assert entries[2] == {"node": "pve1", "directory": DEST.directory, "upload": None, "via": "stream",
                          "error": {"type": "SshError",
                                    "message": "upload to node 'pve1' failed: the connection was lost"}}
    assert (entries[3]["step"], entries[3]["name"]) == ("release", None)

    Node(monkeypatch, reachable=False)
    with Player(tmp_path / "broken.json") as play, \
            pytest.raises(errors.SshError, match=r"^upload to node 'pve1' failed: the connection was lost$"):
        stream_a_template(play.runtime.backend, rootfs(tmp_path / "b", "two"), [])


def test_a_delta_and_a_whole_file_are_kept_by_name_and_how_they_were_sent(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def send(backend: Backend, work: Path) -> tuple[int, int]:
        source = rootfs(work / "rootfs", "one", files=40)
        base = push.pack(source, work / "base")
        (source / "etc" / "motd").write_text("two")
        packed = push.pack(source, work / "new")
        change = delta.plan(packed.frames, base.frames)
        whole = backend.upload(base, DEST, transport="sftp", progress=lambda _n: None)
        return whole, backend.upload_delta(packed, base.name, change, DEST, progress=lambda _n: None)

    Node(monkeypatch)
    with Recorder(tmp_path / "delta.json", "live", config=config(tmp_path)) as rec:
        recorded = send(rec.runtime.backend, tmp_path / "a")
    entries = json.loads((tmp_path / "delta.json").read_text())["ssh"]
    where = {"node": "pve1", "directory": DEST.directory}
    assert entries == [{**where, "upload": "pveoci-0000000000000001.tar.zst", "via": "file"},
                       {**where, "upload": "pveoci-0000000000000002.tar.zst", "via": "delta",
                        "base": "pveoci-0000000000000001.tar.zst"}]
    Node(monkeypatch, reachable=False)
    with Player(tmp_path / "delta.json") as play:
        replayed = send(play.runtime.backend, tmp_path / "b")
    assert replayed[1] < replayed[0]  # only the changed frames, as the replay's own files count them
    assert recorded[1] < recorded[0]


def test_a_replay_refuses_ssh_the_tape_does_not_cover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Node(monkeypatch)
    with Recorder(tmp_path / "empty.json", "live", config=config(tmp_path)) as rec:
        rec.runtime.backend.sweep_templates(DEST)

    def replay() -> None:
        with Player(tmp_path / "empty.json") as play:
            backend = play.runtime.backend
            backend.sweep_templates(DEST)
            assert isinstance(backend, ApiBackend)
            backend.ssh.session("pve1")  # as a seam the recorder missed would

    with pytest.raises(CassetteMismatch, match=r"empty.json: SSH to node 'pve1' outside the cassette's SSH entries"):
        replay()
