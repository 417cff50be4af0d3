"""Recording on the bed: again and again the same cassettes, never a secret in them, and the worked example of
docs/testing.md recorded with `pytest --pve-record` and replayed offline."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from pathlib import Path

import pytest

from pveoci.testing import Player
from tests.cassettes.bundle import make_cassette_bundle
from tests.cassettes.recording import record
from tests.cassettes.scenarios import BY_NAME, SCENARIOS, NoFaults
from tests.conftest import need
from tests.testbed import Testbed, parts
from tests.testbed.bundle import make_busybox_bundle

pytestmark = pytest.mark.bed

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def key_texts(public_key: Path) -> list[str]:
    """A public key's blob and fingerprints as ssh-keygen and paramiko show them."""
    blob = public_key.read_text().split()[1]
    raw = base64.b64decode(blob)
    md5 = hashlib.md5(raw).hexdigest()  # noqa: S324 - how paramiko shows a key
    return [blob, base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("="), md5,
            ":".join(md5[i:i + 2] for i in range(0, 32, 2))]


def bed_secrets(bed: Testbed, auth: str) -> list[str]:
    """What the recording profile and the bed hold that is secret: token, password, SSH keys and fingerprints."""
    private = bed.client_key.read_text().splitlines()[1:-1]
    password = bed.pve.password if auth == "ticket" else ""  # else fakepve's own default, "secret"
    out = [bed.token_secret, password, *private, *key_texts(bed.client_key.with_suffix(".pub"))]
    for sshd in bed.sshds.values():
        out += key_texts(sshd.host_key.with_suffix(".pub"))
    return [s for s in out if s]


@dataclasses.dataclass
class Recorded:
    path: Path
    secrets: list[str]
    auth: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recorded]:
    """Every scenario recorded again on fresh beds, with what each bed would have had to keep secret."""
    need(parts.missing_for_ssh() + parts.missing_for_lxc() + parts.missing_for_busybox())
    out_dir = tmp_path_factory.mktemp("cassettes")
    found: dict[str, Recorded] = {}
    for scenario in SCENARIOS:
        secrets: list[str] = []

        def watch(bed: Testbed, secrets: list[str] = secrets, auth: str = scenario.auth) -> None:
            secrets.extend(bed_secrets(bed, auth))
            original = bed.pve.issue_ticket

            def issue_ticket(user: str) -> tuple[str, str]:  # every ticket and CSRF token a login returns
                ticket, csrf = original(user)
                secrets.extend([ticket, csrf, ticket.rsplit("::", 1)[-1], csrf.split(":", 1)[-1]])
                return ticket, csrf

            bed.pve.issue_ticket = issue_ticket

        found[scenario.name] = Recorded(record(scenario, out_dir, on_bed=watch), secrets, scenario.auth)
    return found


def test_recording_again_gives_the_committed_cassettes(recorded: dict[str, Recorded]) -> None:
    changed = [name for name, r in recorded.items()
               if r.path.read_text() != BY_NAME[name].cassette.read_text()]
    assert changed == [], (f"re-recorded cassettes differ from fixtures/cassettes: {changed}; if pveoci's traffic "
                           "changed on purpose, record them again: sudo .venv/bin/python -m tests.cassettes")


def test_no_secret_of_the_recording_profile_is_in_any_cassette(recorded: dict[str, Recorded]) -> None:
    assert {r.auth for r in recorded.values()} == {"token", "ticket"}  # both kinds of login were recorded
    for name, r in recorded.items():
        text = r.path.read_text()
        assert len(r.secrets) > 8, name
        leaked = [i for i, secret in enumerate(r.secrets) if secret in text]
        assert leaked == [], f"{name}: secret(s) number {leaked} of the recording are in the cassette"
        assert "PVEAPIToken" not in text
        assert "PVE:root@pam:" not in text  # no ticket, in any form
    assert '"password": "********"' in recorded["doctor"].path.read_text()  # its login was recorded, masked


def test_a_cassette_recorded_with_a_password_replays_with_a_token(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    need(parts.missing_for_ssh() + parts.missing_for_busybox())
    scenario = dataclasses.replace(BY_NAME["nextid_race"], auth="ticket")  # creates, uploads, a race, a delete
    path = record(scenario, tmp_path / "out")
    assert '"auth": "ticket"' in path.read_text()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    with Player(path, auth="token", root=tmp_path / "cache") as play:
        assert play.runtime.settings.profile.auth_method == "token"
        scenario.run(play.runtime, make_cassette_bundle(tmp_path / "bundle"), NoFaults())


def doc_files(markdown: str) -> dict[str, str]:
    """The code blocks of a document that start with a `# <file name>` comment, by file name."""
    out = {}
    for block in re.findall(r"```python\n(.*?)```", markdown, re.S):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:].strip()] = block
    return out


def test_the_worked_example_records_and_replays(lxc_bed: Testbed, pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    need(parts.missing_for_busybox())
    files = doc_files(DOCS.read_text())
    assert set(files) == {"jobs.py", "tests/test_jobs.py"}
    for name, code in files.items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(code)
    make_busybox_bundle(pytester.path / "bundles" / "job", args=["sh", "-c", "echo working; sleep 1"])
    monkeypatch.setenv("PVEOCI_CONFIG", str(lxc_bed.config_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(pytester.path / "xdg-cache"))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))

    recording = pytester.runpytest_subprocess("tests/test_jobs.py", "-p", "no:cacheprovider", "--pve-record", "bed")
    recording.assert_outcomes(passed=2)
    cassettes = pytester.path / "tests" / "cassettes"
    assert sorted(p.name for p in cassettes.iterdir()) == ["no_leftovers.json", "run_job.json"]

    monkeypatch.delenv("PVEOCI_CONFIG")  # a replay needs no profile
    replaying = pytester.runpytest_subprocess("tests/test_jobs.py", "-p", "no:cacheprovider")
    replaying.assert_outcomes(passed=2)
    # The code changes what it asks: the replay says what.
    jobs = pytester.path / "jobs.py"
    jobs.write_text(jobs.read_text().replace("rt.run(job_id, bundle)", "rt.run(job_id, bundle, node='pve2')"))
    changed = pytester.runpytest_subprocess("tests/test_jobs.py", "-p", "no:cacheprovider")
    changed.assert_outcomes(failed=2, errors=2)
    changed.stdout.fnmatch_lines(["*run_job.json: unexpected HTTP GET /cluster/resources?type=vm*",
                                  "*it was recorded 1 time(s) and has been used up: the code asks it more often now*"])
