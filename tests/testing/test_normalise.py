"""Stand-ins for volatile values: numbered by first appearance, the same wherever a value comes back."""

from __future__ import annotations

from pveoci import card, marker
from pveoci.testing.normalise import PID_BASE, ClusterValues, LocalValues, sent_stand_ins

UPID = "UPID:pve2:0001E240:0A2B3C4D:6756A1B2:vzstart:105:root@pam:"


def a_marker(created: str, host: str, bundle: str) -> str:
    return marker.render(marker.Marker(id="web", bundle=bundle, rootfs=bundle + "/rootfs", template="local:x",
                                       spec_digest="abc", created=created, host=host))


def test_cluster_values_become_numbered_stand_ins_wherever_they_come_back() -> None:
    cluster = ClusterValues()
    answer = cluster.answer({"data": {"upid": UPID, "pid": 31337, "uptime": 4242, "starttime": 1733730738,
                                      "digest": "6860a46b444c7db87fe3bd368963a5418f609e95",
                                      "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:76:64:7F,ip=dhcp",
                                      "ssl_fingerprint": "AB:" * 31 + "CD", "status": "running", "maxmem": 512}})
    assert answer == {"data": {
        "upid": "UPID:pve2:00000001:00000000:00000000:vzstart:105:root@pam:", "pid": PID_BASE + 1, "uptime": 0,
        "starttime": 0, "digest": "0000000000000000000000000000000000000001",
        "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp", "ssl_fingerprint": ":".join(["00"] * 32),
        "status": "running", "maxmem": 512}}
    # Sent back by the client: the same stand-ins.
    assert cluster.text(f"/nodes/pve2/tasks/{UPID}/status") == \
        "/nodes/pve2/tasks/UPID:pve2:00000001:00000000:00000000:vzstart:105:root@pam:/status"
    assert [cluster.word(w) for w in ["kill", "-s", "TERM", "31337"]] == ["kill", "-s", "TERM", str(PID_BASE + 1)]
    assert cluster.word("1") == "1"  # not a pid the cluster reported
    assert cluster.text("6860a46b444c7db87fe3bd368963a5418f609e95") == "0000000000000000000000000000000000000001"
    # A second task is a second stand-in; a stand-in stays what it is.
    other = UPID.replace("0001E240", "0001E241")
    assert cluster.text(other).startswith("UPID:pve2:00000002:")
    assert cluster.text("UPID:pve2:00000001:00000000:00000000:vzstart:105:root@pam:").startswith("UPID:pve2:00000001")


def test_the_marker_of_a_recording_and_of_its_replay_meet_in_the_same_stand_ins() -> None:
    recording = LocalValues()
    recorded = recording.normalise(a_marker("2024-12-09T10:12:13.123456789Z", "laptop", "/tmp/a/bundle"))
    assert '"created":"2000-01-01T00:00:00.000000001Z"' in recorded
    assert '"host":"workstation-1"' in recorded
    assert '"bundle":"/cassette/path-1"' in recorded
    assert '"rootfs":"/cassette/path-2"' in recorded
    mine = a_marker("2025-01-02T03:04:05.000000006Z", "ci-runner-7", "/home/ci/x/bundle")
    replay = LocalValues(sent_stand_ins([recorded]))
    assert replay.normalise(mine) == recorded
    assert replay.restore(recorded) == mine  # the answer carries the replay's own values


def a_create(created: str, host: str, bundle: str) -> dict[str, str]:
    """What a create sends: the marker in the description, the card (pveoci.card) among the tags."""
    description = a_marker(created, host, bundle)
    return {"description": description, "tags": ";".join(sorted({"pveoci", *card.for_description(description)}))}


def test_the_card_of_a_recording_and_of_its_replay_meet_in_the_marker_s_stand_ins() -> None:
    recording = LocalValues()
    sent = a_create("2024-12-09T10:12:13.123456789Z", "laptop", "/tmp/a/bundle")
    recorded = {key: recording.normalise(value) for key, value in sent.items()}
    (tag,) = [t for t in recorded["tags"].split(";") if t.startswith(card.PREFIX)]
    assert card.parse([tag]) == card.Card(id="web", bundle="/cassette/path-1", created="2000-01-01T00:00:00.000000001Z",
                                          template="local:x", rootfs="/cassette/path-2", version=2)
    mine = a_create("2025-01-02T03:04:05.000000006Z", "ci-runner-7", "/home/ci/x/bundle")
    replay = LocalValues(sent_stand_ins([{"body": recorded}]))
    assert {key: replay.normalise(value) for key, value in mine.items()} == recorded
    assert replay.restore(recorded["tags"]) == mine["tags"]  # /cluster/resources answers with the replay's own card


def test_a_replay_takes_the_stand_ins_the_recording_sent_whatever_the_answers_held() -> None:
    recording = LocalValues()
    # The recording was first answered with another container made from the same host and bundle, then sent its own.
    older = recording.normalise(a_marker("2024-01-01T00:00:00.000000000Z", "laptop", "/b/job"))
    newer = recording.normalise(a_marker("2024-12-09T10:12:13.000000000Z", "laptop", "/b/job"))
    assert '"created":"2000-01-01T00:00:00.000000002Z"' in newer
    assert '"host":"workstation-1"' in newer
    replay = LocalValues(sent_stand_ins([{"body": {"description": newer}}]))
    replay.restore(older)
    mine = a_marker("2025-06-01T00:00:00.000000000Z", "ci", "/home/ci/job")
    assert replay.normalise(mine) == newer
    assert replay.restore(newer) == mine


def test_templates_are_known_by_the_order_they_were_packed_not_by_their_bytes() -> None:
    recording, replay = LocalValues(), LocalValues()
    recording.add_template("pveoci-0123456789abcdef.tar.zst", "a" * 64, 1000)
    replay.add_template("pveoci-fedcba9876543210.tar.zst", "b" * 64, 2000)
    sent = "local:vztmpl/pveoci-0123456789abcdef.tar.zst checksum " + "a" * 64
    recorded = recording.normalise(sent)
    assert recorded == "local:vztmpl/pveoci-0000000000000001.tar.zst checksum " + "0" * 63 + "1"
    assert replay.normalise("local:vztmpl/pveoci-fedcba9876543210.tar.zst checksum " + "b" * 64) == recorded
    listing = {"data": [{"volid": "local:vztmpl/pveoci-0000000000000001.tar.zst", "size": 0},
                        {"volid": "local:vztmpl/other.tar.zst", "size": 5}]}
    listed = [{"volid": "local:vztmpl/pveoci-0123456789abcdef.tar.zst", "size": 1000}]
    assert recording.hide_sizes(listed) == [{"volid": "local:vztmpl/pveoci-0123456789abcdef.tar.zst", "size": 0}]
    assert replay.restore_answer(listing) == {"data": [
        {"volid": "local:vztmpl/pveoci-fedcba9876543210.tar.zst", "size": 2000},
        {"volid": "local:vztmpl/other.tar.zst", "size": 5}]}
