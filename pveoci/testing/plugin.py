"""pytest plugin (entry point pytest11): run your own code against a recorded Proxmox VE cluster.

    @pytest.mark.pve_cassette("deploy")            # cassettes/deploy.json beside the test file
    def test_deploy(pve_cassette):
        rt = pve_cassette.runtime                   # a pveoci Runtime bound to the cassette
        my_scripts.deploy(rt)                       # or code that calls pveoci.connect(): patched meanwhile

`pytest` replays (offline, strict); `pytest --pve-record PROFILE` records against that profile's live
cluster and writes the cassettes. Marker: pve_cassette(name=None, *, auth="token"): the cassette's file
(default: the test's name; relative to a `cassettes` folder beside the test file), and how the replay
logs in ("ticket" for a cassette with a 401 that a new login answered).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pveoci.testing.recorder import Session

MARKER = "pve_cassette"
FOLDER = "cassettes"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pveoci", "pveoci cassettes")
    group.addoption("--pve-record", metavar="PROFILE", default=None,
                    help="record pve_cassette tests against the live cluster of this pveoci profile "
                         "(config.toml, or PVEOCI_CONFIG) instead of replaying them")


_CALL = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL] = report
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(name=None, *, auth='token'): run the test against a recorded "
                                       "Proxmox VE cluster (pveoci.testing; see the pve_cassette fixture)")


def cassette_path(request: pytest.FixtureRequest, name: str | Path | None) -> Path:
    path = Path(name) if name else Path(request.node.name.replace("/", "_").replace("[", "-").rstrip("]"))
    if path.suffix != ".json":
        path = path.with_name(path.name + ".json")
    return path if path.is_absolute() else Path(request.node.path).parent / FOLDER / path


def _need_responses() -> None:
    try:
        import responses  # noqa: F401
    except ImportError:
        missing = True
    else:
        missing = False
    if missing:
        pytest.fail("pveoci.testing replays cassettes with the 'responses' library, which is not installed: "
                    "pip install 'pveoci[testing]'", pytrace=False)


def _session(request: pytest.FixtureRequest, tmp_path: Path) -> Session:
    from pveoci.testing.recorder import Player, Recorder

    marker = request.node.get_closest_marker(MARKER)
    args: tuple[Any, ...] = marker.args if marker else ()
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    path = cassette_path(request, args[0] if args else kwargs.pop("name", None))
    profile = request.config.getoption("pve_record")
    if profile:
        return Recorder(path, profile, root=tmp_path / "pveoci-cache")
    return Player(path, auth=str(kwargs.get("auth", "token")), root=tmp_path / "pveoci-cache")


@pytest.fixture
def pve_cassette(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A cassette session: `.runtime` (or `.connect(...)`) gives Runtimes bound to it, and `pveoci.connect` is one
    of them while the test runs. Replaying, it fails the test for a request the cassette does not hold, or
    for recorded requests the test did not make."""
    _need_responses()
    import pveoci
    from pveoci.testing.cassette import CassetteError

    try:
        session = _session(request, tmp_path)
    except CassetteError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    session.start()
    monkeypatch.setattr(pveoci, "connect", session.connect)
    try:
        yield session
    finally:
        report = request.node.stash.get(_CALL, None)
        try:  # requests left unused say nothing new about a test that failed already
            session.close(complete=report is None or report.passed)
        except CassetteError as exc:
            problem = str(exc)
    if problem:  # what the replay saw that the recording did not (or the other way round): one clear failure
        pytest.fail(problem, pytrace=False)


@pytest.fixture(autouse=True)
def _pve_cassette_marker(request: pytest.FixtureRequest) -> None:
    """A test marked pve_cassette gets the cassette even when it does not name the fixture."""
    if request.node.get_closest_marker(MARKER) is not None and "pve_cassette" not in request.fixturenames:
        request.getfixturevalue("pve_cassette")
